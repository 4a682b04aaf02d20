"""Text metrics, each through the library the field reports with.

Scales follow each metric's usual convention: BLEU and chrF 0–100 (sacrebleu),
ROUGE F1 0–1 (rouge-score), distinct-n 0–1, self-BLEU 0–1 (Texygen).
"""

from __future__ import annotations

import functools
import math
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

import sacrebleu

from genloom.errors import UserError


def perplexity(total_nll: float, num_tokens: int) -> float:
    """exp(total negative log-likelihood in nats / number of tokens).

    Example:
        >>> round(perplexity(2 * math.log(4), 2), 6)
        4.0
    """
    if num_tokens <= 0:
        raise ValueError("perplexity needs at least one token")
    return math.exp(total_nll / num_tokens)


def _check_pairs(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if not hypotheses:
        raise UserError("there are no hypotheses to score.")
    for i, refs in enumerate(references):
        if len(refs) != len(hypotheses):
            raise UserError(f"reference set {i} has {len(refs)} lines but there are {len(hypotheses)} hypotheses.")


def bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]], tokenize: str = "13a") -> dict:
    """Corpus BLEU of detokenized ``hypotheses`` against one or more reference sets.

    Args:
        hypotheses: N system outputs.
        references: R reference sets, each N lines (``[refs]`` for a single reference).
        tokenize: sacrebleu's tokenizer (``13a`` standard; ``zh``, ``ja-mecab``, ``intl``, ``none``…).

    Returns:
        ``{"bleu": score 0–100, "signature": sacrebleu's signature, ...}``.
    """
    _check_pairs(hypotheses, references)
    metric = sacrebleu.BLEU(tokenize=tokenize)
    score = metric.corpus_score(list(hypotheses), [list(r) for r in references])
    return {"bleu": score.score, "precisions": list(score.precisions), "brevity_penalty": score.bp,
            "signature": str(metric.get_signature())}


def chrf(hypotheses: Sequence[str], references: Sequence[Sequence[str]], word_order: int = 0) -> dict:
    """Corpus chrF (``word_order=2`` gives chrF++), 0–100, with sacrebleu's signature."""
    _check_pairs(hypotheses, references)
    metric = sacrebleu.CHRF(word_order=word_order)
    score = metric.corpus_score(list(hypotheses), [list(r) for r in references])
    return {"chrf": score.score, "signature": str(metric.get_signature())}


# Scripts written without spaces between words; each of their characters counts as a token.
_UNSPACED = re.compile(r"([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u0e00-\u0e7f])")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)  # word characters without "_", which rouge-score splits on


class UnicodeRougeTokenizer:
    """Lower-cases and splits on Unicode word characters, so non-Latin text is kept.

    rouge-score's default tokenizer replaces everything outside [a-z0-9] with
    spaces, which scores any Chinese, Russian or Greek summary as empty. Here,
    words are Unicode ``\\w+`` runs, and characters of unspaced scripts (Han,
    kana, Thai) are tokens of their own.
    """

    def __init__(self, stem: bool = False):
        self.stemmer = None
        if stem:
            from nltk.stem import porter

            self.stemmer = porter.PorterStemmer()

    def tokenize(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFKC", text).lower()
        tokens = _WORD.findall(_UNSPACED.sub(r" \1 ", text))
        if self.stemmer is not None:
            tokens = [self.stemmer.stem(t) if len(t) > 3 and t.isascii() else t for t in tokens]
        return tokens


def rouge_signature(stem: bool = False) -> str:
    """What ``rouge`` computed, to print beside its figures (as sacrebleu's signature is printed beside BLEU)."""
    from importlib.metadata import version

    return (f"rouge-score {version('rouge-score')} ROUGE-1/2/L F1, stem {'yes' if stem else 'no'}, tokenizer genloom "
            "unicode (NFKC, lower-case, \\w+ words, one token per Han/kana/Thai character): on ASCII text the same as "
            "rouge-score's default; on other text it differs by design (rouge-score's default drops non-ASCII "
            "letters)")


def rouge(hypotheses: Sequence[str], references: Sequence[str | Sequence[str]], stem: bool = False) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 (0–1) over hypotheses, with a Unicode-aware tokenizer (``rouge_signature`` says so).

    On ASCII text the figures equal rouge-score's with its default tokenizer; on other text they differ by
    design, since that tokenizer keeps only [a-z0-9] and scores a Greek or Chinese summary as empty.

    Each reference entry is one string or a list of strings; with several, each
    metric takes its best score over them (SciTLDR's multi-target protocol).
    """
    if not hypotheses:
        raise UserError("there are no hypotheses to score.")
    if len(references) != len(hypotheses):
        raise UserError(f"there are {len(references)} references but {len(hypotheses)} hypotheses.")
    from rouge_score import rouge_scorer  # imported here: it imports all of nltk (2 s), which most commands never use

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=UnicodeRougeTokenizer(stem))
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for hyp, refs in zip(hypotheses, references):
        all_scores = [scorer.score(ref, hyp) for ref in ([refs] if isinstance(refs, str) else refs)]
        for key in totals:
            totals[key] += max(scores[key].fmeasure for scores in all_scores)
    return {key: value / len(hypotheses) for key, value in totals.items()}


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams over all n-grams in whitespace-tokenized ``texts`` (Li et al. 2016), 0–1.

    Example:
        >>> distinct_n(["a b a b"], 2)  # bigrams: ab, ba, ab → 2 distinct of 3
        0.6666666666666666
    """
    grams = [tuple(words[i : i + n]) for words in (t.split() for t in texts) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


Tokens = Literal["nltk", "whitespace"]
Gram = tuple[str, ...]


def _tokens(texts: Sequence[str], tokens: Tokens) -> list[list[str]]:
    """Each text's words: Texygen's ``nltk.word_tokenize`` (its Treebank-style word tokenizer, without the
    sentence splitter, whose model NLTK would download) or the text's own words. An empty text has none."""
    if tokens == "whitespace":
        return [t.split() for t in texts]
    return [_nltk_words().tokenize(t) for t in texts]


@functools.cache
def _nltk_words():
    """NLTK's Treebank word tokenizer, made once on first use (importing nltk takes seconds)."""
    from nltk.tokenize import NLTKWordTokenizer

    return NLTKWordTokenizer()


def _grams(words: list[str], n: int) -> list[Counter]:
    """The counts of each order's n-grams, orders 1 … n."""
    return [Counter(tuple(words[i : i + k]) for i in range(len(words) - k + 1)) for k in range(1, n + 1)]


def _texygen_sentence_bleu(grams: list[Counter], length: int, clip: Callable[[Gram], int], ref_len: int) -> float:
    """NLTK's ``sentence_bleu`` with uniform weights over the ``len(grams)`` orders and ``SmoothingFunction().
    method1``, as Texygen calls it, from the hypothesis' n-gram counts and ``clip`` (an n-gram's highest count
    in any one reference). Every order counts, even one the hypothesis is too short to have (its precision is
    then 0.1 / 1, as NLTK's); no matching unigram at all, or an empty hypothesis, scores 0, as in NLTK.
    ``ref_len`` is the reference length closest to ``length`` (ties: the shorter), NLTK's brevity rule."""
    numerators = [sum(min(count, clip(gram)) for gram, count in counter.items()) for counter in grams]
    if length == 0 or numerators[0] == 0:
        return 0.0
    denominators = [max(1, sum(counter.values())) for counter in grams]
    precisions = [(num + 0.1) / den if num == 0 else num / den for num, den in zip(numerators, denominators)]
    weight = 1.0 / len(grams)
    brevity = 1.0 if length > ref_len else math.exp(1 - ref_len / length)
    return brevity * math.exp(math.fsum(weight * math.log(p) for p in precisions))


def _closest(lengths: Iterable[int], length: int) -> int:
    return min(lengths, key=lambda ref_len: (abs(ref_len - length), ref_len))


def reference_bleu(hypotheses: Sequence[str], references: Sequence[str], n: int = 4, tokens: Tokens = "nltk") -> float:
    """Texygen's BLEU of generated text (0–1): the mean over hypotheses of NLTK's ``sentence_bleu`` (uniform
    weights over orders 1 … n, ``method1`` smoothing) of each one against the whole reference set (every test
    sentence is a reference of every hypothesis). Empty hypotheses score 0 and count in the mean, as Texygen's
    lines do. ``tokens``: ``nltk`` (Texygen's: "table." is two tokens) or ``whitespace``.

    Example:
        >>> round(reference_bleu(["a cat sat ."], ["a cat sat .", "a dog ran ."], n=2), 3)
        1.0
    """
    hyp_words, ref_words = _tokens(hypotheses, tokens), _tokens(references, tokens)
    if not hyp_words or not ref_words:
        raise UserError("BLEU needs at least one hypothesis and one reference.")
    clip: dict[Gram, int] = {}  # the highest count of each n-gram in any one reference, computed once
    for words in ref_words:
        for counter in _grams(words, n):
            for gram, count in counter.items():
                clip[gram] = max(clip.get(gram, 0), count)
    ref_lengths = sorted(set(len(words) for words in ref_words))
    total = 0.0
    for words in hyp_words:
        total += _texygen_sentence_bleu(_grams(words, n), len(words), lambda g: clip.get(g, 0),
                                        _closest(ref_lengths, len(words)))
    return total / len(hyp_words)


def self_bleu(texts: Sequence[str], n: int = 4, max_hypotheses: int | None = 1000, seed: int = 0,
              tokens: Tokens = "nltk") -> float:
    """Self-BLEU (Zhu et al. 2018, Texygen), 0–1: each text's ``reference_bleu`` score against all *other*
    texts as references. Higher means less diverse.

    Protocol: ``tokens`` and the sentence score as in ``reference_bleu`` (NLTK's ``sentence_bleu``, uniform
    weights, ``method1``; empty texts score 0); a text is never its own reference; at most ``max_hypotheses``
    texts (a seeded sample) are scored, each against all the others. The n-grams of all texts are counted once,
    keeping each n-gram's two highest counts, so leaving one text out is free.
    """
    words = _tokens(texts, tokens)
    if len(words) < 2:
        raise UserError("self-BLEU needs at least two texts.")
    grams = [_grams(w, n) for w in words]
    top: dict[Gram, tuple[int, int, int]] = {}  # n-gram → (highest count, its text, second count)
    for index, counters in enumerate(grams):
        for counter in counters:
            for gram, count in counter.items():
                first, holder, second = top.get(gram, (0, -1, 0))
                if count > first:
                    top[gram] = (count, index, first)
                elif count > second:
                    top[gram] = (first, holder, count)
    lengths = Counter(len(w) for w in words)
    indices = list(range(len(words)))
    if max_hypotheses is not None and len(indices) > max_hypotheses:
        indices = random.Random(seed).sample(indices, max_hypotheses)
    total = 0.0
    for i in indices:
        length = len(words[i])
        others = [ref_len for ref_len, m in lengths.items() if ref_len != length or m > 1]

        def clip(gram: Gram, i: int = i) -> int:
            first, holder, second = top[gram]
            return second if holder == i else first

        total += _texygen_sentence_bleu(grams[i], length, clip, _closest(others, length))
    return total / len(indices)
