"""The offensive-language screen: words and phrases of an offline list, found also when obfuscated (leetspeak
such as ``sh1t``, a starred vowel such as ``f*ck``, separators such as ``s.h.i.t``, stretched letters such as
``shiiit``), and flagged, masked or blocked in generated text.

The list is the one the ``better-profanity`` package ships (916 entries, read from its package data; nothing is
downloaded), less the entries that are not offensive on their own (``NOT_OFFENSIVE_ALONE``: identity words such
as "gay", which a word list would otherwise flag in every neutral mention, and ordinary words such as "god",
"fat" or "omg"). What a word list cannot catch: insults and threats made of ordinary words ("you people should
disappear"), slurs and new coinages missing from the list, obfuscations its patterns do not foresee (words split
by other letters, homoglyphs from other scripts), meaning that depends on context or tone (sarcasm, reclaimed
words), and every language but English. It also over-flags innocent uses of a listed word (a "bitch" in a dog
breeder's text). A trained classifier is the tool for those; this screen is a cheap, transparent first line.
"""

from __future__ import annotations

import functools
import importlib.resources
import re

from genloom.errors import UserError
from genloom.safety.stream import Finding, StreamFilter, replace_spans

MODES = ("flag", "mask", "block")
BLOCKED = "[blocked: the output contained offensive language]"
# Identity words (flagging them flags every neutral mention of a group), ordinary words, and "homo" (Homo sapiens).
# Slurs stay screened even where they have innocent senses.
NOT_OFFENSIVE_ALONE = {"gay", "gae", "gai", "gey", "lez", "god", "fat", "hiv", "omg", "xx", "len", "nad", "kkk",
                       "hore", "queer", "homo", "lesbian", "transsexual", "bisexual", "ugly", "stupid", "dumb"}
LEET = {"a": "a4@*", "b": "b8", "e": "e3*", "g": "g9", "i": "i1!|*", "l": "l1|", "o": "o0*", "s": "s5$", "t": "t7+",
        "u": "u*", "z": "z2"}  # a vowel may also be starred out: "f*ck"
SEPARATOR = r"[\s.*_\-]?"  # at most one separator between two letters: "s.h.i.t", "s h i t"


@functools.lru_cache(maxsize=1)
def word_list() -> tuple[str, ...]:
    """The screened words and phrases: better-profanity's list less ``NOT_OFFENSIVE_ALONE``."""
    try:
        text = (importlib.resources.files("better_profanity") / "profanity_wordlist.txt").read_text(encoding="utf-8")
    except ModuleNotFoundError:
        raise UserError("the offensive-language screen needs the better-profanity package (pip install "
                        "better-profanity).") from None
    words = {line.strip().lower() for line in text.splitlines() if line.strip()}
    return tuple(sorted(words - NOT_OFFENSIVE_ALONE, key=lambda w: (-len(w), w)))


def _pattern(entry: str) -> str:
    letters = []
    for char in entry:
        if char == " ":
            letters.append(r"[\s.*_\-]*")
        else:
            letters.append(f"[{re.escape(LEET.get(char, char))}]+" if char.isalpha() else re.escape(char))
    joined = ""
    for index, piece in enumerate(letters):
        joined += piece
        if index + 1 < len(letters) and entry[index] != " " and entry[index + 1] != " ":
            joined += SEPARATOR
    return joined


@functools.lru_cache(maxsize=1)
def _matcher() -> re.Pattern:
    alternatives = "|".join(_pattern(entry) for entry in word_list())
    return re.compile(rf"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])", re.IGNORECASE)


def offensive_spans(text: str) -> list[Finding]:
    """Where ``text`` holds a screened word or phrase, obfuscations included (kind ``OFFENSIVE``).

    Example:
        >>> [("what a sh1t day"[f.start:f.end]) for f in offensive_spans("what a sh1t day")]
        ['sh1t']
    """
    return [Finding("OFFENSIVE", m.start(), m.end()) for m in _matcher().finditer(text)]


def screen(text: str, mode: str) -> tuple[str, list[str]]:
    """``text`` after the screen (``flag``: as it is; ``mask``: each match as ``*``; ``block``: ``BLOCKED`` when
    anything matched) and the matched words."""
    if mode not in MODES:
        raise UserError(f"unknown safety mode '{mode}'; expected {', '.join(MODES)}.")
    spans = offensive_spans(text)
    found = [text[f.start:f.end] for f in spans]
    if mode == "flag" or not spans:
        return text, found
    if mode == "block":
        return BLOCKED, found
    return replace_spans(text, spans, _masked), found


def _masked(finding: Finding, original: str) -> str:
    return "*" * len(original)


class StreamScreen(StreamFilter):
    """The screen on a stream: ``mask`` hides matches without ever showing a part of one; ``block`` holds the
    whole text back and shows it (or ``BLOCKED``) at the end; ``flag`` shows everything and keeps the matches in
    ``found``."""

    def __init__(self, mode: str, hold: int = 64):
        if mode not in MODES:
            raise UserError(f"unknown safety mode '{mode}'; expected {', '.join(MODES)}.")
        self.mode, self.found = mode, []
        super().__init__(offensive_spans, self._replace, hold)

    def _replace(self, finding: Finding, original: str) -> str:
        self.found.append(original)
        return original if self.mode == "flag" else _masked(finding, original)

    def feed(self, piece: str) -> str:
        if self.mode == "block":
            self.pending += piece
            return ""
        return super().feed(piece)

    def finish(self) -> str:
        if self.mode == "block":
            text, self.found = screen(self.pending, "block")
            self.pending = ""
            return text
        return super().finish()
