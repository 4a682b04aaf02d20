"""Attention over an encoder's states, for recurrent decoders (Bahdanau; Luong dot and general).

Each module maps a (B, Q) query and (B, S, K) keys (which are also the values)
to a (B, K) context and (B, S) weights; padded source positions get weight 0.
They take flat sizes, never a model config.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over the last dim of (B, S) ``scores`` where ``mask`` (B, S) is True; masked weights are exactly 0."""
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores.float(), dim=-1).to(scores.dtype)


class AdditiveAttention(nn.Module):
    """Bahdanau et al. 2015: score(q, k) = vᵀ tanh(W_q q + W_k k [+ w_c · coverage]).

    With ``coverage`` (See et al. 2017), the sum of past attention weights at each
    source position enters the score, so the decoder can learn not to attend to
    the same words again.
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int, coverage: bool = False):
        super().__init__()
        self.query = nn.Linear(query_dim, hidden_dim, bias=True)
        self.key = nn.Linear(key_dim, hidden_dim, bias=False)
        self.coverage = nn.Linear(1, hidden_dim, bias=False) if coverage else None
        self.v = nn.Linear(hidden_dim, 1, bias=False)

    def precompute(self, keys: Tensor) -> Tensor:
        """(B, S, K) → (B, S, H): the key projection, computed once per source."""
        return self.key(keys)

    def forward(self, query: Tensor, keys: Tensor, mask: Tensor, projected: Tensor | None = None,
                coverage: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Args: query (B, Q); keys (B, S, K); mask (B, S); projected (B, S, H) from ``precompute``;
        coverage (B, S). Returns context (B, K) and weights (B, S)."""
        projected = self.precompute(keys) if projected is None else projected
        energy = projected + self.query(query)[:, None, :]  # (B, S, H)
        if self.coverage is not None and coverage is not None:
            energy = energy + self.coverage(coverage[..., None])
        weights = masked_softmax(self.v(torch.tanh(energy)).squeeze(-1), mask)  # (B, S)
        context = torch.bmm(weights[:, None, :], keys).squeeze(1)  # (B, K)
        return context, weights


class MultiplicativeAttention(nn.Module):
    """Luong et al. 2015: ``dot`` score qᵀk (needs Q = K) or ``general`` score qᵀ W k."""

    def __init__(self, query_dim: int, key_dim: int, general: bool = True):
        super().__init__()
        if not general and query_dim != key_dim:
            raise ValueError(f"dot attention needs equal query and key sizes, got {query_dim} and {key_dim}")
        self.key = nn.Linear(key_dim, query_dim, bias=False) if general else nn.Identity()

    def precompute(self, keys: Tensor) -> Tensor:
        return self.key(keys)  # (B, S, Q)

    def forward(self, query: Tensor, keys: Tensor, mask: Tensor, projected: Tensor | None = None,
                coverage: Tensor | None = None) -> tuple[Tensor, Tensor]:
        projected = self.precompute(keys) if projected is None else projected
        scores = torch.bmm(projected, query[:, :, None]).squeeze(-1)  # (B, S)
        weights = masked_softmax(scores, mask)
        context = torch.bmm(weights[:, None, :], keys).squeeze(1)  # (B, K)
        return context, weights


def make_attention(kind: str, query_dim: int, key_dim: int, hidden_dim: int, coverage: bool = False) -> nn.Module | None:
    """``additive``, ``dot``, ``general``, or None for ``none`` (the decoder then sees the final encoder state only)."""
    if kind == "none":
        return None
    if kind == "additive":
        return AdditiveAttention(query_dim, key_dim, hidden_dim, coverage)
    if kind in ("dot", "general"):
        return MultiplicativeAttention(query_dim, key_dim, general=kind == "general")
    raise ValueError(f"unknown attention '{kind}'; expected none, additive, dot or general")
