"""The text-reuse measures on hand-computed examples, and winnowing locating a planted passage."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from genloom.metrics.reuse import (coverage, exact_runs, fingerprints, lcs_length, lcs_ratio, ngram_containment,
                                   shared_passages, winnow, words)


def test_containment_counts_the_suspects_distinct_ngrams_found_in_the_source():
    suspect, source = "a b c d".split(), "a b c e a b".split()
    assert ngram_containment(suspect, source, 1) == 3 / 4  # a b c of a b c d
    assert ngram_containment(suspect, source, 2) == 2 / 3  # ab bc of ab bc cd
    assert ngram_containment(suspect, source, 3) == 1 / 2  # abc of abc bcd
    assert ngram_containment(suspect, source, 4) == 0.0
    assert ngram_containment(suspect, source, 5) == 0.0  # fewer than 5 words
    assert ngram_containment("x x x".split(), "x".split(), 1) == 1.0  # distinct n-grams, as Clough & Stevenson


def test_lcs_ratio_is_normalised_by_the_suspect():
    assert lcs_length("a b c d e".split(), "a c e b d".split()) == 3  # a c e (or a b d)
    assert lcs_ratio("a b c d e".split(), "a c e b d".split()) == 3 / 5
    assert lcs_ratio("b c".split(), "a b x c d".split()) == 1.0  # a short suspect copied out of a long source
    assert lcs_ratio([], "a".split()) == 0.0 and lcs_length("a".split(), []) == 0


def dynamic_programming_lcs(a, b):
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from("abcd"), max_size=40), st.lists(st.sampled_from("abcde"), max_size=70))
def test_bit_parallel_lcs_equals_the_dynamic_programme(a, b):
    assert lcs_length(a, b) == dynamic_programming_lcs(a, b)


def test_winnowing_reproduces_schleimer_et_al_figure_2():
    hashes = [77, 72, 42, 17, 98, 50, 17, 98, 8, 88, 67, 39, 77, 72, 42, 17, 98]
    assert winnow(hashes, 4) == [(17, 3), (17, 6), (8, 8), (39, 11), (17, 15)]  # robust winnowing, 0-based


def test_winnowing_locates_a_planted_passage_and_its_position():
    rng = random.Random(0)
    vocabulary = [f"w{i}" for i in range(3000)]
    suspect = [rng.choice(vocabulary) for _ in range(300)]
    source = [rng.choice(vocabulary) for _ in range(400)]
    source[250:310] = suspect[100:160]  # 60 words copied to position 250
    passages = shared_passages(suspect, source, k=5, window=4)
    assert [(p.suspect_start, p.suspect_end, p.source_start, p.source_end) for p in passages] == [(100, 160, 250, 310)]
    assert coverage(passages, len(suspect)) == 60 / 300


def test_a_lightly_revised_passage_is_one_passage():
    rng = random.Random(1)
    text = [f"w{rng.randrange(5000)}" for _ in range(80)]
    revised = list(text)
    for position in (20, 41, 60):
        revised[position] = "changed"
    passages = shared_passages(revised, text, k=5, window=4, gap=10)
    assert len(passages) == 1 and passages[0].length == 80 and passages[0].exact == 77
    assert len(exact_runs(revised, text)) == 4  # the identical runs between the changed words


def test_any_shared_run_of_k_plus_window_minus_one_words_is_fingerprinted():
    rng = random.Random(2)
    for _ in range(50):
        run = [f"r{rng.randrange(10**6)}" for _ in range(8)]  # k + w − 1 = 8 words
        a = [f"a{i}" for i in range(rng.randrange(30))] + run + ["a-end"]
        b = ["b-start"] + run + [f"b{i}" for i in range(rng.randrange(30))]
        assert {h for h, _ in fingerprints(a, 5, 4)} & {h for h, _ in fingerprints(b, 5, 4)}


def test_words_keep_their_character_spans():
    found = words("Don’t STOP, it's 3.5 km.")
    assert found.tokens == ["don't", "stop", "it's", "3", "5", "km"]
    assert found.text[slice(*found.char_span(0, 2))] == "Don’t STOP"
