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


def nltk_texygen_bleu(hypotheses, references, n):
    """Texygen's Bleu.get_bleu, written as it is: NLTK's sentence_bleu of each hypothesis against every reference."""
    import warnings

    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    words = [h.split() for h in hypotheses]
    refs = [r.split() for r in references]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NLTK warns about zero counts, which method1 smooths
        scores = [sentence_bleu(refs, w, tuple(1.0 / n for _ in range(n)),
                                smoothing_function=SmoothingFunction().method1) for w in words]
    return sum(scores) / len(scores)


def test_reference_bleu_is_nltks_sentence_bleu_as_texygen_calls_it():
    """Regression: sacrebleu's effective order gave "a dog" at n = 4 a BLEU of 0.135 where Texygen gives 0.043;
    empty lines were dropped where Texygen scores them 0."""
    import random

    rng = random.Random(1)
    words = "a the man dog cat sits runs on in park table red big .".split()
    references = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 9))) for _ in range(30)]
    hypotheses = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 7))) for _ in range(40)]
    hypotheses += ["a dog", "", "zebra", references[0]]
    for n in (1, 2, 3, 4, 5):
        expected = nltk_texygen_bleu(hypotheses, references, n)
        assert reference_bleu(hypotheses, references, n, tokens="whitespace") == pytest.approx(expected, rel=1e-12)
    short = reference_bleu(["a dog"], ["a dog runs in the park", "a cat"], 4, tokens="whitespace")
    assert short == pytest.approx(nltk_texygen_bleu(["a dog"], ["a dog runs in the park", "a cat"], 4), rel=1e-12)
    assert reference_bleu(["a man rides a horse ."], ["a man rides a horse ."], n=4) == pytest.approx(1.0)
    with pytest.raises(UserError, match="at least one hypothesis"):
        reference_bleu([], references)


def test_self_bleu_is_nltks_sentence_bleu_against_all_other_texts():
    import random

    rng = random.Random(0)
    words = "a the man dog cat sits runs on in park table red big".split()
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 9))) for _ in range(40)]
    texts += [texts[0], texts[1], "", "a"]  # duplicates: each copy is the other's reference
    for n in (2, 4):
        expected = sum(nltk_texygen_bleu([t], texts[:i] + texts[i + 1 :], n) for i, t in enumerate(texts)) / len(texts)
        assert self_bleu(texts, n, max_hypotheses=None, tokens="whitespace") == pytest.approx(expected, rel=1e-12)


def test_texygen_bleu_splits_punctuation_as_nltk_word_tokenize_does():
    hypotheses, references = ["a dog on a table."], ["a dog on a table .", "two cats ."]
    assert reference_bleu(hypotheses, references, n=4) == pytest.approx(1.0)
    assert reference_bleu(hypotheses, references, n=4, tokens="whitespace") < 0.9
    assert self_bleu(["a cat, a dog.", "a cat , a dog ."], n=4) == pytest.approx(1.0)


def test_rouge_equals_rouge_score_on_ascii_text_and_says_how_it_differs_elsewhere():
    """Regression: "_" joined words here where rouge-score splits them, so ASCII text could score differently."""
    import random
    import string

    from rouge_score import rouge_scorer

    from genloom.metrics import rouge_signature

    reference = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    rng = random.Random(0)
    alphabet = string.ascii_letters + string.digits + " .,;:!?_-'\"()"
    for _ in range(300):
        hyp, ref = ("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(2))
        theirs = reference.score(ref, hyp)
        assert rouge([hyp], [ref]) == pytest.approx({k: theirs[k].fmeasure for k in theirs}, abs=1e-12)
    assert rouge(["ο σκύλος τρέχει"], ["ο σκύλος"])["rouge1"] > 0  # rouge-score's default scores this 0
    assert "differs by design" in rouge_signature()
