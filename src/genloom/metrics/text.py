"""Text metrics, each through the library the field reports with.

Scales follow each metric's usual convention: BLEU and chrF 0–100 (sacrebleu),
ROUGE F1 0–1 (rouge-score), distinct-n 0–1, self-BLEU 0–1 (Texygen).
"""

from __future__ import annotations

import math
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Literal

import sacrebleu
from nltk.tokenize import NLTKWordTokenizer
from rouge_score import rouge_scorer
from sacrebleu.metrics.helpers import extract_all_word_ngrams

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
_WORD = re.compile(r"\w+", re.UNICODE)


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


def rouge(hypotheses: Sequence[str], references: Sequence[str | Sequence[str]], stem: bool = False) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 (0–1) over hypotheses, with a Unicode-aware tokenizer.

    Each reference entry is one string or a list of strings; with several, each
    metric takes its best score over them (SciTLDR's multi-target protocol).
    """
    if not hypotheses:
        raise UserError("there are no hypotheses to score.")
    if len(references) != len(hypotheses):
        raise UserError(f"there are {len(references)} references but {len(hypotheses)} hypotheses.")
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
_NLTK_WORDS = NLTKWordTokenizer()


def _tokens(texts: Sequence[str], tokens: Tokens) -> list[str]:
    """Non-empty texts as space-joined tokens: Texygen's ``nltk.word_tokenize`` words (its Treebank-style word
    tokenizer, without the sentence splitter, whose model NLTK would download) or the text's own words."""
    texts = [t for t in texts if t.strip()]
    if tokens == "whitespace":
        return texts
    return [" ".join(_NLTK_WORDS.tokenize(t)) for t in texts]


def reference_bleu(hypotheses: Sequence[str], references: Sequence[str], n: int = 4, tokens: Tokens = "nltk") -> float:
    """Texygen's BLEU of generated text (0–1): the mean over hypotheses of each one's sentence BLEU against
    the whole reference set (every test sentence is a reference of every hypothesis). ``tokens``: ``nltk``
    (Texygen's: "table." is two tokens) or ``whitespace``.

    Example:
        >>> round(reference_bleu(["a cat sat ."], ["a cat sat .", "a dog ran ."], n=2), 3)
        1.0
    """
    hypotheses, references = _tokens(hypotheses, tokens), _tokens(references, tokens)
    if not hypotheses or not references:
        raise UserError("BLEU needs at least one hypothesis and one reference.")
    # Texygen's sentence BLEU: uniform weights, zero counts floored at 0.1 (NLTK's method1);
    # the whole reference set is cached once as the reference set of every hypothesis.
    metric = sacrebleu.BLEU(tokenize="none", max_ngram_order=n, smooth_method="floor", smooth_value=0.1,
                            effective_order=True, references=[[r] for r in references])
    return sum(metric.corpus_score([h], None).score for h in hypotheses) / (100.0 * len(hypotheses))


def self_bleu(texts: Sequence[str], n: int = 4, max_hypotheses: int | None = 1000, seed: int = 0,
              tokens: Tokens = "nltk") -> float:
    """Self-BLEU (Zhu et al. 2018, Texygen), 0–1: each text scored against all *other* texts as references.

    Protocol: ``tokens`` as in ``reference_bleu``, uniform weights up to order ``n``, floor
    smoothing of zero counts with 0.1 (as NLTK's method1 that Texygen uses), a
    text is never its own reference, and at most ``max_hypotheses`` texts (a
    seeded sample) are scored, each against all the others. Higher means less
    diverse. The n-grams of all texts are counted once, keeping for each n-gram
    its two highest counts, so leaving one text out is free; sacrebleu computes
    the score from those statistics (the same figure as its ``sentence_score``
    against the other texts).
    """
    texts = _tokens(texts, tokens)
    if len(texts) < 2:
        raise UserError("self-BLEU needs at least two texts.")
    grams = [extract_all_word_ngrams(t, 1, n) for t in texts]  # (counter, length) per text
    top: dict[tuple[str, ...], tuple[int, int, int]] = {}  # n-gram → (highest count, its text, second count)
    for index, (counter, _) in enumerate(grams):
        for gram, count in counter.items():
            first, holder, second = top.get(gram, (0, -1, 0))
            if count > first:
                top[gram] = (count, index, first)
            elif count > second:
                top[gram] = (first, holder, count)
    lengths = Counter(length for _, length in grams)
    indices = list(range(len(texts)))
    if max_hypotheses is not None and len(indices) > max_hypotheses:
        indices = random.Random(seed).sample(indices, max_hypotheses)
    total_score = 0.0
    for i in indices:
        counter, hyp_len = grams[i]
        correct, total = [0] * n, [0] * n
        for gram, count in counter.items():
            first, holder, second = top[gram]
            total[len(gram) - 1] += count
            correct[len(gram) - 1] += min(count, second if holder == i else first)
        others = [length for length, m in lengths.items() if length != hyp_len or m > 1]
        ref_len = min(others, key=lambda length: (abs(length - hyp_len), length))  # sacrebleu's closest length
        total_score += sacrebleu.BLEU.compute_bleu(correct, total, hyp_len, ref_len, smooth_method="floor",
                                                   smooth_value=0.1, effective_order=True,
                                                   max_ngram_order=n).score / 100.0
    return total_score / len(indices)
