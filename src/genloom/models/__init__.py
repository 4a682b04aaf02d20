"""Model families. ``FAMILIES`` maps a config's ``family`` to its module; grep the name to find the code.

Every family module honours ``Family``: a config dataclass, the data layout its loss reads, whether its
tokenizer needs a mask token, a ``check_config`` that raises ``UserError`` on a bad setting, and a
``build`` that makes the model. The model it builds offers ``loss(batch, carry) -> LossOutput`` (see
``nn/losses.py``) for the training loop and, when it generates, the step contract of
``decoding.generate.StepModel``.
"""

from __future__ import annotations

from typing import Any, Protocol

from torch import nn

from genloom.models import bert, gan, gpt, rnnlm, seq2seq, transformer_seq2seq, vae


class Family(Protocol):
    """What a family module defines, at module level."""

    CONFIG: type  # the model's config dataclass (the recipe's ``model`` section)
    BATCHING: str | None  # the ``data.batching`` its loss needs ("sentences", …), or None for any
    MASK_TOKEN: bool  # the tokenizer trained for it gets a mask token (masked LMs)

    def check_config(self, config: Any) -> None:
        """Raise ``UserError`` with one sentence when a setting is out of range."""

    def build(self, config: Any) -> nn.Module:
        """The model for ``config`` (``vocab_size`` filled in from the tokenizer)."""


FAMILIES: dict[str, Family] = {
    "rnnlm": rnnlm,
    "gpt": gpt,
    "bert": bert,
    "seq2seq": seq2seq,
    "transformer_seq2seq": transformer_seq2seq,
    "vae": vae,
    "gan": gan,
}
