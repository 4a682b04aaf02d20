"""What the text filters share: a found span (``Finding``) and ``StreamFilter``, which applies a filter to text
that arrives in pieces without ever letting out part of a match."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """A span a filter found: its kind (``EMAIL``, ``OFFENSIVE``, …) and where it lies (``text[start:end]``)."""

    kind: str
    start: int
    end: int


def replace_spans(text: str, findings: list[Finding], replace: Callable[[Finding, str], str], start: int = 0) -> str:
    """``text[start:]`` with each finding (in order, not overlapping, all ending within ``text``) replaced by
    ``replace(finding, the text it covers)``; a finding that begins before ``start`` is replaced from there."""
    out, at = [], start
    for finding in findings:
        out += [text[at:max(finding.start, start)], replace(finding, text[finding.start:finding.end])]
        at = finding.end
    out.append(text[at:])
    return "".join(out)


class StreamFilter:
    """Applies ``find`` and ``replace`` to a stream: ``feed`` returns what is safe to show, holding back the last
    ``hold`` characters (the longest match expected), the word in the making, and any match that reaches into
    them; ``finish`` returns the rest. Concatenated, the outputs equal the filter applied to the whole text.

    Args:
        find: text → its non-overlapping findings, in order.
        replace: (finding, the text it covers) → what to show instead.
        hold: characters held back until more text (or the end) comes.
    """

    def __init__(self, find: Callable[[str], list[Finding]], replace: Callable[[Finding, str], str], hold: int = 96):
        self.find, self.replace, self.hold = find, replace, hold
        self.shown = ""  # raw text already let out: context for what follows (a date of birth's "born on")
        self.pending = ""

    def feed(self, piece: str) -> str:
        self.pending += piece
        return self._release(final=False)

    def finish(self) -> str:
        return self._release(final=True)

    def _release(self, final: bool) -> str:
        context = self.shown[-48:]
        text = context + self.pending
        findings = [f for f in self.find(text) if f.end > len(context)]
        cut = len(text) if final else max(len(context), len(text) - self.hold)
        if not final:
            while cut > len(context) and not text[cut - 1].isspace():
                cut -= 1  # a word in the making may still become part of a match
        for finding in findings:  # never cut through a match
            if finding.start < cut < finding.end:
                cut = max(len(context), finding.start)
        shown = replace_spans(text[:cut], [f for f in findings if f.end <= cut], self.replace, start=len(context))
        self.shown += text[len(context):cut]
        self.pending = text[cut:]
        return shown
