"""The Python API: load, stream, complete, evaluate; family checks."""

import pytest
import torch
from tokenizers import Tokenizer as HFTokenizer

import genloom
from genloom import device
from genloom.api import load
from genloom.device import cpu_supports_bf16
from genloom.errors import UserError
from tests.conftest import tiny_recipe


def test_streamed_pieces_join_to_the_batched_greedy_output(trained_run):
    lm = genloom.load(trained_run, device="cpu")
    pieces = list(lm.generate("the cat", max_new_tokens=15))
    assert len(pieces) > 1
    (batched,) = lm.complete(["the cat"], max_new_tokens=15)
    assert "".join(pieces) == batched[0]


def test_beam_n_best_is_sorted_and_distinct(trained_run):
    lm = genloom.load(trained_run, device="cpu")
    (nbest,) = lm.complete(["two"], method="beam", num_beams=4, num_return_sequences=3, max_new_tokens=12)
    assert len(nbest) == 3 and len(set(nbest)) == 3


def test_stop_strings_cut_the_text(trained_run):
    lm = genloom.load(trained_run, device="cpu")
    full = "".join(lm.generate("the", max_new_tokens=20))
    word = full.split()[1]
    cut = "".join(lm.generate("the", max_new_tokens=20, stop_strings=[word]))
    assert word not in cut and full.startswith(cut)


def test_evaluate_texts_and_unknown_options(trained_run):
    lm = genloom.load(trained_run, device="cpu")
    result = lm.evaluate(["the cat sees a dog .", "two dogs see the cats ."])
    assert result["tokens"] == 14 and 1.0 < result["perplexity"] < 100
    with pytest.raises(UserError, match="unknown generation option 'beams'"):
        list(lm.generate("the", beams=3))
    with pytest.raises(UserError, match="no text to evaluate"):
        lm.evaluate(["  "])


def test_a_checkpoint_of_another_family_is_refused(trained_run):
    with pytest.raises(UserError, match="holds a 'rnnlm' checkpoint, but this command needs a 'seq2seq' one"):
        load(trained_run, family="seq2seq")


def test_bf16_on_cpu_trains_where_the_cpu_has_bf16_kernels_and_is_refused_with_the_fix_elsewhere(tmp_path):
    """Regression: on an AVX2-only CPU, precision bf16 ended in oneDNN's "could not create a primitive descriptor
    for the LSTM forward propagation primitive" traceback. Each kind of CPU asserts what it supports."""
    recipe = tiny_recipe(tmp_path, max_steps=3, precision="bf16")
    if cpu_supports_bf16():
        summary = genloom.train(recipe)
        assert summary["steps"] == 3 and summary["best_valid_loss"] < 10
    else:
        with pytest.raises(UserError, match="set train.precision=fp32"):
            genloom.train(recipe)
        assert not (tmp_path / "run").exists()  # refused before anything was written


def test_bf16_refusal_names_the_fix_on_any_cpu(monkeypatch):
    monkeypatch.setattr(device, "cpu_supports_bf16", lambda: False)
    with pytest.raises(UserError, match="no bf16 kernels; set train.precision=fp32"):
        device.check_precision(torch.device("cpu"), "bf16")
    device.check_precision(torch.device("cpu"), "fp32")  # fp32 and auto are always fine on a CPU
    device.check_precision(torch.device("cpu"), "auto")


def test_inference_reads_cased_text_as_the_lowercased_training_data(lowercased_copier):
    """Regression (newcomer report): with data.lowercase the training data was lowercased but summarize/translate
    inputs were not, so cased input became <unk> (328 of 500 DialogSum summaries were only <unk>)."""
    model = genloom.load(lowercased_copier, device="cpu")
    known = [w for w in (f"word{i}" for i in range(20)) if model.tokenizer.hf.token_to_id(w) is not None][:3]
    lowered = " ".join(known) + "."
    cased = lowered.replace("word", "Word")
    assert model.tokenizer.unk_id not in model.tokenizer.encode(model.prepare(cased))
    assert [r.text for r in model.transduce([cased, lowered])] == [model.transduce([lowered])[0].text] * 2
    assert model.transduce([cased])[0].source_tokens == known + ["."]
    assert model.evaluate_pairs([(cased, cased)])["loss"] == model.evaluate_pairs([(lowered, lowered)])["loss"]
    theirs = HFTokenizer.from_file(str(lowercased_copier / "tokenizer.json"))  # on its own, it lowercases too
    assert theirs.encode(cased, add_special_tokens=False).ids == model.tokenizer.encode(lowered)


def test_no_unk_keeps_unk_out_of_the_output_by_default(lowercased_copier):
    model = genloom.load(lowercased_copier, device="cpu")
    sources = [f"Word{i} Word{i + 1} Word{i + 2}." for i in range(12, 17)]  # mostly outside the vocabulary
    allowed = [r.text for r in model.transduce(sources, no_unk=False)]
    assert any("<unk>" in text for text in allowed)
    for options in ({}, {"method": "beam"}, {"method": "sample", "seed": 1}):
        assert not any("<unk>" in r.text for r in model.transduce(sources, **options))


@pytest.mark.parametrize("options", [{}, {"method": "sample", "seed": 3}, {"method": "beam", "num_beams": 4}],
                         ids=["greedy", "sample", "beam"])
def test_a_banned_phrase_the_model_prefers_never_appears(trained_run, options):
    lm = genloom.load(trained_run, device="cpu")
    prompts = ["the cat", "two dogs", "a", "the", "every", "some"] * 2
    greedy = " ".join(row[0] for row in lm.complete(prompts, max_new_tokens=20))
    words = greedy.split()
    phrase = max(sorted({f"{a} {b}" for a, b in zip(words, words[1:])}), key=greedy.count)
    assert greedy.count(phrase) >= 2  # a phrase this model prefers
    banned = [row[0] for row in lm.complete(prompts, max_new_tokens=20, ban_words=[phrase], **options)]
    assert not any(phrase in text for text in banned)
    first = phrase.split()[0]
    biased = [row[0] for row in lm.complete(prompts, max_new_tokens=20, bias={first: -50.0}, **options)]
    assert not any(first in text.split() for text in biased)


def test_ban_words_works_for_a_seq2seq_model_and_refuses_what_the_tokenizer_cannot_write(lowercased_copier):
    model = genloom.load(lowercased_copier, device="cpu")
    known = [w for w in (f"word{i}" for i in range(20)) if model.tokenizer.hf.token_to_id(w) is not None][:3]
    source = " ".join(known) + "."
    chosen = model.transduce([source])[0].text.split()[0]  # the word it writes first
    for method in ("greedy", "beam"):
        output = model.transduce([source], method=method, ban_words=[chosen.upper()])[0].text  # lowercased, as inputs
        assert chosen not in output.split()
    with pytest.raises(UserError, match=r"ban_words: the tokenizer of .* has no token for 'zebra'"):
        model.transduce([source], ban_words=["zebra crossing"])
