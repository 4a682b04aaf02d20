"""Hugging Face GPT-2 interoperability, offline: a tiny random GPT-2 saved locally loads with the same logits,
and our GPT exported to that layout loads back into ``transformers`` with the same logits."""

import pytest
import torch

import genloom
from genloom.api import export_huggingface
from genloom.errors import UserError

transformers = pytest.importorskip("transformers", reason="transformers is the optional interop/test dependency")


def tiny_gpt2(tmp_path, **changes):
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders

    torch.manual_seed(0)
    settings = dict(vocab_size=99, n_positions=32, n_embd=16, n_layer=2, n_head=2, bos_token_id=98, eos_token_id=98)
    config = transformers.GPT2Config(**{**settings, **changes})
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
    reference = tiny_gpt2(tmp_path, resid_pdrop=0.2)
    ours = genloom.load(tmp_path, device="cpu")
    tokens = torch.randint(0, 99, (2, 12))
    with torch.no_grad():
        expected = reference(tokens).logits
        got, _ = ours.model(tokens)
    assert (got - expected).abs().max() <= 1e-4
    assert ours.tokenizer.eos_id == 98 and ours.start_id == 98
    assert ours.model.config.dropout == 0.2  # the checkpoint's, for fine-tuning; eval mode has none


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


@pytest.mark.parametrize("key, value", [("scale_attn_by_inverse_layer_idx", True), ("scale_attn_weights", False),
                                        ("add_cross_attention", True)])
def test_gpt2_variants_genloom_does_not_compute_are_refused(tmp_path, key, value):
    """Regression: these loaded without a word and gave wrong logits (argmax agreement 75 % and 38 %)."""
    tiny_gpt2(tmp_path, **{key: value})
    with pytest.raises(UserError, match=f"{key}: {value}.*cannot be loaded exactly"):
        genloom.load(tmp_path, device="cpu")


def test_an_untied_gpt2_loads_its_own_output_layer(tmp_path):
    """Regression: tie_word_embeddings=False dropped lm_head.weight (argmax agreement 0 %)."""
    reference = tiny_gpt2(tmp_path, tie_word_embeddings=False)
    ours = genloom.load(tmp_path, device="cpu")
    tokens = torch.randint(0, 99, (2, 12))
    with torch.no_grad():
        expected = reference(tokens).logits
        got, _ = ours.model(tokens)
    assert not ours.model.config.tie_embeddings and (got - expected).abs().max() <= 1e-4


def peaky_gpt2(tmp_path):
    """A random GPT-2 whose next-token distributions are peaked and often end (EOS), so that beam search's
    choices, its finished hypotheses and the bans all matter."""
    reference = tiny_gpt2(tmp_path, initializer_range=0.6)
    with torch.no_grad():
        reference.transformer.wte.weight[98] *= 1.6  # EOS: often among the best candidates
    reference.save_pretrained(tmp_path, safe_serialization=True)
    return reference, genloom.load(tmp_path, device="cpu")


PROMPTS = [" ".join("abcdefghijklmnopqrstuvwxyz"[(7 * i + 3 * j) % 26] for j in range(1 + i % 9)).replace(" ", "")
           for i in range(22)]


def transformers_nbest(reference, ids, **options):
    out = reference.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             do_sample=False, pad_token_id=98, return_dict_in_generate=True, output_scores=True,
                             **options)
    rows = [seq[len(ids):].tolist() for seq in out.sequences]
    rows = [row[: row.index(98)] if 98 in row else row for row in rows]  # EOS, then padding, end a hypothesis
    scores = out.sequences_scores.tolist() if out.get("sequences_scores") is not None else None
    return rows, scores


def test_generate_on_a_local_gpt2_gives_the_tokens_transformers_gives(tmp_path):
    """Prompts start as GPT-2's tokenizer makes them (no <|endoftext|> forced in front): the text genloom generates
    is the text transformers' generate gives for tokenizer(prompt)."""
    reference, ours = peaky_gpt2(tmp_path)
    for prompt in PROMPTS[:8]:
        ids = ours.tokenizer.hf.encode(prompt).ids
        (expected,), _ = transformers_nbest(reference, ids, max_new_tokens=12)
        assert ours.complete([prompt], max_new_tokens=12)[0][0] == ours.tokenizer.decode(expected)


@pytest.mark.parametrize("options", [
    dict(num_beams=1),
    dict(num_beams=4, num_return_sequences=4, length_penalty=1.0),
    dict(num_beams=4, num_return_sequences=4, length_penalty=0.6),
    dict(num_beams=4, num_return_sequences=4, no_repeat_ngram_size=3),
    dict(num_beams=4, num_return_sequences=4, min_new_tokens=6),
    dict(num_beams=1, no_repeat_ngram_size=3, min_new_tokens=6),
], ids=["greedy", "beam-lp1", "beam-lp0.6", "beam-no-repeat-3", "beam-min-new-6", "greedy-bans"])
def test_whole_nbest_lists_and_scores_equal_transformers_generate(tmp_path, options):
    """Regression: EOS finished a hypothesis from below the top num_beams candidates, and the bans renormalised
    the log-probabilities (min_new_tokens then preferred filler). 22 prompts of 1 to 9 tokens, decoded in one
    batch here, one at a time by transformers; the n-best lists must be identical and the scores within 1e-4."""
    from genloom.decoding.generate import GenerationConfig, beam_search, generate

    reference, ours = peaky_gpt2(tmp_path)
    prompts = [ours.tokenizer.hf.encode(p).ids for p in PROMPTS]
    beams = options.get("num_beams", 1)
    cfg = GenerationConfig(method="beam" if beams > 1 else "greedy", num_beams=max(beams, 1), max_new_tokens=10,
                           length_penalty=options.get("length_penalty", 1.0),
                           num_return_sequences=options.get("num_return_sequences", 1),
                           no_repeat_ngram_size=options.get("no_repeat_ngram_size", 0),
                           min_new_tokens=options.get("min_new_tokens", 0))
    if beams > 1:
        got = beam_search(ours.model, prompts, cfg, 98, start_token=False)
    else:
        steps = list(generate(ours.model, prompts, cfg, 98, start_token=False))
        got = [[[int(s.tokens[row]) for s in steps if s.emitted[row]]] for row in range(len(prompts))]
    ended_early = 0
    for row, ids in enumerate(prompts):
        expected, scores = transformers_nbest(reference, ids, max_new_tokens=10, **options)
        if beams > 1:
            assert [h.tokens for h in got[row]] == expected, PROMPTS[row]
            assert [h.score for h in got[row]] == pytest.approx(scores, abs=1e-4)
        else:
            assert got[row] == expected, PROMPTS[row]
        ended_early += sum(len(tokens) < 10 for tokens in expected)
    assert ended_early > 0  # EOS paths were exercised
