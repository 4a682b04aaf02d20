"""Metrics against known values: sacrebleu's documented example, hand-computed ROUGE, and small cases."""

import math

import pytest

from genloom.errors import UserError
from genloom.metrics import bleu, chrf, distinct_n, perplexity, reference_bleu, rouge, self_bleu

# The example of sacrebleu's README, with its published scores.
HYPS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
REFS = [["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
        ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]]


def test_bleu_matches_sacrebleus_documented_example():
    result = bleu(HYPS, REFS)
    assert result["bleu"] == pytest.approx(48.53, abs=0.01)
    assert result["signature"].startswith("nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:")


def test_chrf_matches_sacrebleus_documented_example():
    result = chrf(HYPS, REFS)
    assert result["chrf"] == pytest.approx(59.73, abs=0.01)
    assert "nc:6|nw:0" in result["signature"]


def test_bleu_rejects_misaligned_references():
    with pytest.raises(UserError, match="reference set 0 has 1 lines but there are 3 hypotheses"):
        bleu(HYPS, [["only one"]])


def test_rouge_hand_computed():
    # hyp 5 tokens, ref 6; unigram overlap 5 → P 1, R 5/6; bigram overlap 3 of 4 / 5; LCS 5.
    scores = rouge(["the cat on the mat"], ["the cat sat on the mat"])
    assert scores["rouge1"] == pytest.approx(2 * 1 * (5 / 6) / (1 + 5 / 6))
    assert scores["rouge2"] == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert scores["rougeL"] == pytest.approx(scores["rouge1"])


def test_rouge_keeps_non_latin_text():
    assert rouge(["猫が座った"], ["猫が座った"])["rouge1"] == 1.0
    cyrillic = rouge(["кошка сидела"], ["кошка сидела на"])
    assert cyrillic["rouge1"] == pytest.approx(0.8) and cyrillic["rouge2"] == pytest.approx(2 / 3)
    assert rouge(["кошка"], ["собака"])["rouge1"] == 0.0


def test_distinct_n_and_perplexity():
    assert distinct_n(["a b a b"], 1) == 0.5
    assert distinct_n(["a b c", "a b d"], 2) == pytest.approx(3 / 4)
    assert distinct_n(["a"], 2) == 0.0
    assert perplexity(3 * math.log(10), 3) == pytest.approx(10.0)


def test_self_bleu_is_one_for_copies_and_low_for_unrelated_texts():
    assert self_bleu(["a b c d e", "a b c d e", "a b c d e"]) == pytest.approx(1.0)
    assert self_bleu(["a b c d e", "v w x y z"], n=2) < 0.1
    with pytest.raises(UserError):
        self_bleu(["only one"])


def test_rouge_with_several_references_takes_the_best_per_metric():
    single = rouge(["the cat on the mat"], ["the cat sat on the mat"])
    multi = rouge(["the cat on the mat"], [["a dog", "the cat sat on the mat"]])
    assert multi == single
    with pytest.raises(UserError, match="2 references but 1 hypotheses"):
        rouge(["x"], ["a", "b"])


def test_reference_bleu_scores_each_hypothesis_against_the_whole_reference_set():
    import sacrebleu

    references = ["a man rides a horse .", "two dogs play in the snow .", "a plate of food on a table ."]
    hypotheses = ["a man rides a bike .", "dogs play in the park .", "food on a plate ."]
    got = reference_bleu(hypotheses, references, n=3)
    uncached = sacrebleu.BLEU(tokenize="none", max_ngram_order=3, smooth_method="floor", smooth_value=0.1,
                              effective_order=True)
    expected = sum(uncached.sentence_score(h, references).score for h in hypotheses) / 300
    assert got == pytest.approx(expected)
    assert reference_bleu(references[:1], references, n=4) == pytest.approx(1.0)
    with pytest.raises(UserError, match="at least one hypothesis"):
        reference_bleu([], references)


def test_self_bleu_equals_sacrebleu_against_all_other_texts():
    import random

    import sacrebleu

    rng = random.Random(0)
    words = "a the man dog cat sits runs on in park table red big".split()
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 9))) for _ in range(40)]
    texts += [texts[0], texts[1]]  # duplicates: each copy is the other's reference
    metric = sacrebleu.BLEU(tokenize="none", max_ngram_order=4, smooth_method="floor", smooth_value=0.1,
                            effective_order=True)
    expected = sum(metric.sentence_score(t, texts[:i] + texts[i + 1 :]).score
                   for i, t in enumerate(texts)) / (100 * len(texts))
    assert self_bleu(texts, 4, max_hypotheses=None) == pytest.approx(expected, rel=1e-9)


def test_texygen_bleu_splits_punctuation_as_nltk_word_tokenize_does():
    hypotheses, references = ["a dog on a table."], ["a dog on a table .", "two cats ."]
    assert reference_bleu(hypotheses, references, n=4) == pytest.approx(1.0)
    assert reference_bleu(hypotheses, references, n=4, tokens="whitespace") < 0.9
    assert self_bleu(["a cat, a dog.", "a cat , a dog ."], n=4) == pytest.approx(1.0)
