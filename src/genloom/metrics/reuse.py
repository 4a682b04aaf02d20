"""Text-reuse measures between a suspect text and a source: word n-gram containment (Clough & Stevenson 2011), the
longest common subsequence of words, and winnowing fingerprints (Schleimer, Wilkerson & Aiken 2003, as MOSS uses
them) that locate the shared passages.

Texts are compared as lowercased word tokens (Unicode letters and digits; punctuation and spacing are ignored, as
a reviser's punctuation changes should not hide a copy). ``Words`` keeps each token's character span, so a passage
found in word positions can be shown in the original text.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

WORD = re.compile(r"\w+(?:['’]\w+)*")


@dataclass(frozen=True)
class Words:
    """A text's lowercased word tokens and each one's [start, end) character span in ``text``."""

    text: str
    tokens: list[str]
    spans: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.tokens)

    def char_span(self, start: int, end: int) -> tuple[int, int]:
        """The character span of words [start, end)."""
        return self.spans[start][0], self.spans[end - 1][1]


def words(text: str) -> Words:
    found = list(WORD.finditer(text))
    return Words(text, [m.group().lower().replace("’", "'") for m in found], [m.span() for m in found])


def ngrams(tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def containment(mine: set, theirs: set) -> float:
    """|mine ∩ theirs| / |mine|, 0.0 for an empty ``mine``: ``ngram_containment`` on n-gram sets already built."""
    return len(mine & theirs) / len(mine) if mine else 0.0


def ngram_containment(suspect: Sequence[str], source: Sequence[str], n: int) -> float:
    """Clough & Stevenson's containment: the share of the suspect's distinct word n-grams that the source holds,
    |S(suspect, n) ∩ S(source, n)| / |S(suspect, n)|; 0.0 when the suspect has fewer than n words."""
    return containment(ngrams(suspect, n), ngrams(source, n))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token sequences, by the bit-parallel algorithm of
    Allison & Dix (1986) in Hyyrö's (2004) form: one big-integer step per token of ``a``, O(|a|·|b|/64)."""
    if not a or not b:
        return 0
    matches: dict[str, int] = defaultdict(int)
    for j, token in enumerate(b):
        matches[token] |= 1 << j
    full = (1 << len(b)) - 1
    v = full  # bit j is 0 where row j of the DP table has gone up by one
    for token in a:
        u = v & matches.get(token, 0)
        v = ((v + u) | (v - u)) & full
    return len(b) - v.bit_count()


def lcs_ratio(suspect: Sequence[str], source: Sequence[str]) -> float:
    """The longest common subsequence of words divided by the suspect's length (Clough & Stevenson normalise by
    the suspect, so a short answer copied out of a long source scores 1.0); 0.0 for an empty suspect."""
    return lcs_length(suspect, source) / len(suspect) if suspect else 0.0


def kgram_hashes(tokens: Sequence[str], k: int) -> list[int]:
    """A 64-bit hash of every word k-gram, stable across runs and machines (BLAKE2b, not Python's salted hash)."""
    return [int.from_bytes(hashlib.blake2b("\x1f".join(tokens[i:i + k]).encode(), digest_size=8).digest(), "big")
            for i in range(len(tokens) - k + 1)]


def winnow(hashes: Sequence[int], window: int) -> list[tuple[int, int]]:
    """Schleimer et al.'s robust winnowing: in every window of ``window`` consecutive k-gram hashes keep the
    smallest (the rightmost on ties), each selected position once. Returns (hash, position) pairs in order.
    Any shared run of at least window + k − 1 words yields at least one shared fingerprint."""
    if not hashes:
        return []
    if len(hashes) <= window:
        best = min(range(len(hashes)), key=lambda i: (hashes[i], -i))
        return [(hashes[best], best)]
    chosen: list[tuple[int, int]] = []
    last = -1
    for start in range(len(hashes) - window + 1):
        best = min(range(start, start + window), key=lambda i: (hashes[i], -i))
        if best != last:
            chosen.append((hashes[best], best))
            last = best
    return chosen


def fingerprints(tokens: Sequence[str], k: int = 5, window: int = 4) -> list[tuple[int, int]]:
    """The winnowed fingerprints (hash, word position) of a token sequence: k-grams of ``k`` words, windows of
    ``window`` k-grams (a guaranteed catch for any shared run of ``k + window − 1`` words)."""
    return winnow(kgram_hashes(tokens, k), window)


@dataclass(frozen=True)
class Passage:
    """A passage the suspect shares with a source: words [suspect_start, suspect_end) of the suspect and
    [source_start, source_end) of the source; ``exact`` words of it are identical runs of at least k words."""

    suspect_start: int
    suspect_end: int
    source_start: int
    source_end: int
    exact: int

    @property
    def length(self) -> int:
        return self.suspect_end - self.suspect_start


def exact_runs(suspect: Sequence[str], source: Sequence[str], k: int = 5, window: int = 4,
               suspect_prints: Sequence[tuple[int, int]] | None = None,
               source_prints: Sequence[tuple[int, int]] | None = None, max_repeats: int = 8) -> list[Passage]:
    """The maximal identical runs of at least ``k`` words that winnowing seeds: each shared fingerprint is
    checked word by word and extended left and right as far as the two texts agree (``*_prints``: the texts'
    ``fingerprints``, when already computed)."""
    where: dict[int, list[int]] = defaultdict(list)
    for h, j in source_prints if source_prints is not None else fingerprints(source, k, window):
        if len(where[h]) < max_repeats:  # a boilerplate k-gram repeated many times adds nothing but work
            where[h].append(j)
    runs: set[tuple[int, int, int, int]] = set()
    reached: dict[int, int] = {}  # diagonal i − j → the suspect position its last run reached
    for h, i in suspect_prints if suspect_prints is not None else fingerprints(suspect, k, window):
        for j in where.get(h, ()):
            if reached.get(i - j, -1) >= i + k:
                continue  # inside a run already found (fingerprints come in suspect order)
            if list(suspect[i:i + k]) != list(source[j:j + k]):
                continue  # a hash collision
            a, b = i, j
            while a > 0 and b > 0 and suspect[a - 1] == source[b - 1]:
                a, b = a - 1, b - 1
            c, d = i + k, j + k
            while c < len(suspect) and d < len(source) and suspect[c] == source[d]:
                c, d = c + 1, d + 1
            runs.add((a, c, b, d))
            reached[i - j] = c
    return [Passage(a, c, b, d, c - a) for a, c, b, d in sorted(runs)]


def shared_passages(suspect: Sequence[str], source: Sequence[str], k: int = 5, window: int = 4,
                    suspect_prints: Sequence[tuple[int, int]] | None = None,
                    source_prints: Sequence[tuple[int, int]] | None = None, gap: int = 10) -> list[Passage]:
    """The passages the suspect reuses from the source, in suspect order, none overlapping in the suspect.

    Identical runs (``exact_runs``) that follow each other in both texts with at most ``gap`` words between
    them join into one passage, so a lightly revised passage (a word changed here and there) shows as one.
    Where two passages overlap in the suspect, the one with more identical words is kept.
    """
    runs = sorted(exact_runs(suspect, source, k, window, suspect_prints, source_prints), key=lambda p: (p.suspect_start, p.source_start))
    merged: list[Passage] = []
    for run in runs:
        last = merged[-1] if merged else None
        if (last is not None and 0 <= run.suspect_start - last.suspect_end <= gap
                and 0 <= run.source_start - last.source_end <= gap):
            merged[-1] = Passage(last.suspect_start, run.suspect_end, last.source_start, run.source_end,
                                 last.exact + run.exact)
        else:
            merged.append(run)
    kept: list[Passage] = []
    for passage in sorted(merged, key=lambda p: (-p.exact, p.suspect_start)):
        if all(passage.suspect_end <= other.suspect_start or passage.suspect_start >= other.suspect_end
               for other in kept):
            kept.append(passage)
    return sorted(kept, key=lambda p: p.suspect_start)


def coverage(passages: Sequence[Passage], end: int, start: int = 0) -> float:
    """The share of the suspect's words [start, end) (by default its first ``end`` words: all of them) that lie
    inside the passages."""
    inside = sum(max(0, min(end, p.suspect_end) - max(start, p.suspect_start)) for p in passages)
    return inside / (end - start) if end > start else 0.0
