"""How to decode: the settings every search function, the API, the CLI and the server share. No torch here, so
that the command line can show these defaults without importing it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from genloom.errors import UserError


@dataclass
class GenerationConfig:
    """How to decode. Invalid values raise ``UserError`` when the config is made.

    ``no_unk`` forbids the unknown-word token ``<unk>`` in the output (where the tokenizer has one): a reader
    wants the likeliest real word there, not a placeholder. ``ban_words``: words or phrases never generated
    (each as the tokenizer writes it, and with a leading space); ``bias``: phrase → a number added to the score
    of its last token wherever the rest has just been generated (positive favours the phrase). ``redact``:
    personal data (``genloom.safety.redact``) in prompts is replaced before the model reads them, and in
    outputs before they are shown, by ``placeholder`` (``<EMAIL>``) or ``mask`` (``***@*******.***``).
    ``safety``: the offensive-language screen (``genloom.safety.screen``) on outputs: ``flag`` keeps the text and
    reports what it found, ``mask`` hides each match, ``block`` replaces an output that has one.
    """

    method: Literal["greedy", "sample", "beam"] = "greedy"
    max_new_tokens: int = 50
    min_new_tokens: int = 0
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    num_beams: int = 4
    length_penalty: float = 1.0
    coverage_penalty: float = 0.0
    num_return_sequences: int = 1
    stop_strings: list[str] = field(default_factory=list)
    seed: int | None = None
    no_unk: bool = True
    ban_words: list[str] = field(default_factory=list)
    bias: dict[str, float] = field(default_factory=dict)
    redact: Literal["placeholder", "mask"] | None = None
    safety: Literal["flag", "mask", "block"] | None = None

    def __post_init__(self) -> None:
        if self.method not in ("greedy", "sample", "beam"):
            raise UserError(f"decoding method must be greedy, sample or beam, got '{self.method}'.")
        checks = [
            (self.max_new_tokens >= 1, f"max_new_tokens must be at least 1, got {self.max_new_tokens}"),
            (0 <= self.min_new_tokens <= self.max_new_tokens,
             f"min_new_tokens must lie in [0, max_new_tokens={self.max_new_tokens}], got {self.min_new_tokens}"),
            (self.temperature > 0, f"temperature must be positive, got {self.temperature}; use greedy for 0"),
            (self.top_k >= 0, f"top_k must be ≥ 0, got {self.top_k}"),
            (0 < self.top_p <= 1, f"top_p must lie in (0, 1], got {self.top_p}"),
            (self.repetition_penalty > 0, f"repetition_penalty must be positive, got {self.repetition_penalty}"),
            (self.no_repeat_ngram_size >= 0, f"no_repeat_ngram_size must be ≥ 0, got {self.no_repeat_ngram_size}"),
            (self.num_beams >= 1, f"num_beams must be at least 1, got {self.num_beams}"),
            (self.coverage_penalty >= 0, f"coverage_penalty must be ≥ 0, got {self.coverage_penalty}"),
            (1 <= self.num_return_sequences <= max(1, self.num_beams if self.method == "beam" else 1),
             f"num_return_sequences must lie in [1, num_beams] for beam search and be 1 otherwise, "
             f"got {self.num_return_sequences}"),
        ]
        checks += [(bool(phrase.strip()), "ban_words holds an empty phrase") for phrase in self.ban_words]
        checks += [(bool(phrase.strip()) and math.isfinite(value),
                    f"bias needs a non-empty phrase and a finite number, got {phrase!r}={value}")
                   for phrase, value in self.bias.items()]
        checks.append((self.redact in (None, "placeholder", "mask"),
                       f"redact must be placeholder or mask, got {self.redact!r}"))
        checks.append((self.safety in (None, "flag", "mask", "block"),
                       f"safety must be flag, mask or block, got {self.safety!r}"))
        for ok, message in checks:
            if not ok:
                raise UserError(message + ".")
