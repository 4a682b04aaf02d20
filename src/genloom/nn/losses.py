"""Token-level losses shared by every family that predicts tokens, and the record a model's ``loss`` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch.nn.functional as F
from torch import Tensor


@dataclass
class LossOutput:
    """What a model's ``loss(batch, carry)`` returns to the training loop.

    ``loss`` is the scalar to minimise (mean over ``n_tokens``); ``carry`` goes
    back into the next ``loss`` call; ``stats`` are extra figures summed over the
    batch (for example a KL term), averaged per token when logged. A loss that adds
    auxiliary terms to the token NLL reports the NLL alone as ``stats["nll"]`` (and
    each term under its own name): perplexity is exp of the NLL, never of the sum.
    """

    loss: Tensor
    n_tokens: int
    carry: Any = None
    stats: dict[str, float] = field(default_factory=dict)


def masked_cross_entropy(logits: Tensor, targets: Tensor, mask: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy over the positions where ``mask`` is True.

    Args:
        logits: (B, T, V) scores, any float dtype (the loss is computed in fp32).
        targets: (B, T) token ids.
        mask: (B, T) True at real target positions.
        label_smoothing: mass spread uniformly over the vocabulary (Szegedy et al. 2016).

    Returns:
        A scalar: summed NLL of the real positions over their count.
    """
    ignored = targets.masked_fill(~mask, -100)  # (B, T); -100 is cross_entropy's ignore_index
    total = F.cross_entropy(logits.flatten(0, 1).float(), ignored.flatten(), ignore_index=-100, reduction="sum",
                            label_smoothing=label_smoothing)
    return total / mask.sum().clamp(min=1)
