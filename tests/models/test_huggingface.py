"""Hugging Face GPT-2 interoperability, offline: a tiny random GPT-2 saved locally loads with the same logits,
and our GPT exported to that layout loads back into ``transformers`` with the same logits."""

import pytest
import torch

import genloom
from genloom.api import export_huggingface
from genloom.errors import UserError

transformers = pytest.importorskip("transformers", reason="transformers is the optional interop/test dependency")


def tiny_gpt2(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders

    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=99, n_positions=32, n_embd=16, n_layer=2, n_head=2,
                                     bos_token_id=98, eos_token_id=98)
    reference = transformers.GPT2LMHeadModel(config).eval()
    reference.save_pretrained(tmp_path, safe_serialization=True)
    vocab = {chr(ord("a") + i) if i < 26 else f"t{i}": i for i in range(98)}
    vocab["<|endoftext|>"] = 98
    tokenizer = Tokenizer(models.BPE(vocab, [], unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(["<|endoftext|>"])
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    return reference


def test_a_local_gpt2_loads_with_the_same_logits(tmp_path):
    reference = tiny_gpt2(tmp_path)
    ours = genloom.load(tmp_path, device="cpu")
    tokens = torch.randint(0, 99, (2, 12))
    with torch.no_grad():
        expected = reference(tokens).logits
        got, _ = ours.model(tokens)
    assert (got - expected).abs().max() <= 1e-4
    assert ours.tokenizer.eos_id == 98 and ours.start_id == 98


def test_our_gpt_exports_to_transformers_with_the_same_logits(tmp_path):
    tiny_gpt2(tmp_path / "hf")
    ours = genloom.load(tmp_path / "hf", device="cpu")
    with torch.no_grad():
        for param in ours.model.parameters():  # make it ours: move away from the imported weights
            param.add_(0.01 * torch.randn_like(param))
    export_huggingface(ours, tmp_path / "exported")
    back = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "exported").eval()
    tokens = torch.randint(0, 99, (2, 10))
    with torch.no_grad():
        expected, _ = ours.model(tokens)
        got = back(tokens).logits
    assert (got - expected).abs().max() <= 1e-4
    with pytest.raises(UserError, match="is not empty"):
        export_huggingface(ours, tmp_path / "exported")


def test_pickled_weights_are_refused(tmp_path):
    tiny_gpt2(tmp_path)
    (tmp_path / "model.safetensors").rename(tmp_path / "pytorch_model.bin")
    with pytest.raises(UserError, match="loads only safetensors weights"):
        genloom.load(tmp_path)


def test_fine_tuning_from_a_local_gpt2_folder(tmp_path):
    tiny_gpt2(tmp_path / "hf")
    text = tmp_path / "text.txt"
    text.write_text("abc abd abe " * 200, encoding="utf-8")
    summary = genloom.train({
        "family": "gpt", "out_dir": str(tmp_path / "run"), "init_from": str(tmp_path / "hf"),
        "data": {"train": str(text), "format": "text", "batching": "stream", "valid_fraction": 0.1},
        "train": {"max_steps": 3, "batch_size": 2, "bptt": 16, "eval_every": 3, "lr": 0.001, "device": "cpu"},
    })
    assert summary["steps"] == 3
    tuned = genloom.load(tmp_path / "run", device="cpu")
    assert tuned.tokenizer.eos_id == 98 and tuned.model.config.dim == 16
