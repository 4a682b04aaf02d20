"""A small English-like grammar whose sentences the demo learns, and a checker for what the model writes.

Subjects agree with their verbs in number, noun phrases may take an adjective
and a prepositional phrase. A model that learned the grammar writes sentences
the checker accepts; one that memorised words but not structure does not.
"""

from __future__ import annotations

import random
import re

DET_SINGULAR = ["the", "a", "every", "one"]
DET_PLURAL = ["the", "some", "two", "many"]
ADJECTIVES = ["small", "happy", "old", "red", "quiet", "clever"]
NOUNS = {"cat": "cats", "dog": "dogs", "bird": "birds", "child": "children", "teacher": "teachers", "robot": "robots"}
VERBS = {"sees": "see", "likes": "like", "follows": "follow", "helps": "help", "watches": "watch"}
PREPOSITIONS = ["near", "behind", "with"]


def _noun_phrase(rng: random.Random, plural: bool, depth: int = 0) -> list[str]:
    words = [rng.choice(DET_PLURAL if plural else DET_SINGULAR)]
    if rng.random() < 0.4:
        words.append(rng.choice(ADJECTIVES))
    noun = rng.choice(list(NOUNS))
    words.append(NOUNS[noun] if plural else noun)
    if depth == 0 and rng.random() < 0.25:
        words += [rng.choice(PREPOSITIONS)] + _noun_phrase(rng, rng.random() < 0.5, depth + 1)
    return words


def sentence(rng: random.Random) -> str:
    """One sentence: NP(number) VERB(number) NP [and NP VERB NP] ."""
    clauses = []
    for _ in range(2 if rng.random() < 0.2 else 1):
        plural = rng.random() < 0.5
        verb = rng.choice(list(VERBS))
        clauses.append(" ".join(_noun_phrase(rng, plural) + [VERBS[verb] if plural else verb]
                                + _noun_phrase(rng, rng.random() < 0.5)))
    return " and ".join(clauses) + " ."


def corpus(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [sentence(rng) for _ in range(n)]


def _alternatives(words) -> str:
    return "(?:" + "|".join(sorted(set(words), key=len, reverse=True)) + ")"


def _np(plural: bool, nested: bool) -> str:
    det = _alternatives(DET_PLURAL if plural else DET_SINGULAR)
    noun = _alternatives(NOUNS.values() if plural else NOUNS.keys())
    core = f"{det} (?:{_alternatives(ADJECTIVES)} )?{noun}"
    if not nested:
        return core
    any_np = f"(?:{_np(False, False)}|{_np(True, False)})"
    return f"{core}(?: {_alternatives(PREPOSITIONS)} {any_np})?"


_ANY_NP = f"(?:{_np(False, True)}|{_np(True, True)})"
_CLAUSE = (f"(?:{_np(False, True)} {_alternatives(VERBS.keys())} {_ANY_NP}"
           f"|{_np(True, True)} {_alternatives(VERBS.values())} {_ANY_NP})")
_SENTENCE = re.compile(f"^{_CLAUSE}(?: and {_CLAUSE})? \\.$")


def is_grammatical(text: str) -> bool:
    """Whether ``text`` is a sentence of the grammar (subject–verb agreement included).

    Example:
        >>> is_grammatical("the cats see a dog ."), is_grammatical("the cats sees a dog .")
        (True, False)
    """
    return bool(_SENTENCE.match(" ".join(text.split())))
