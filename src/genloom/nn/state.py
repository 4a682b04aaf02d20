"""Joining the decoding states of several batches into one batch, and trimming them again: what continuous batching
(requests joining and leaving a running decode at step boundaries) asks of the models' states.

Recurrent states concatenate along their batch dimension. Encoder memories of different lengths are right-padded
(the padding is masked, as in any padded batch). A Transformer's self-attention cache is joined *right-aligned*:
every row's newest key sits in the last used slot, rows that have seen fewer tokens are left-padded, and ``start``
(B,) records each row's first real slot, from which its masks and positions follow.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from genloom.nn.rnn import RNNState


def cat_padded(tensors: list[Tensor], dim: int = 1, value: float | bool = 0) -> Tensor:
    """Concatenate along the batch dimension (0), right-padding dimension ``dim`` to the longest with ``value``."""
    size = max(t.size(dim) for t in tensors)
    padded = []
    for t in tensors:
        if t.size(dim) < size:
            shape = list(t.shape)
            shape[dim] = size - t.size(dim)
            t = torch.cat([t, t.new_full(shape, value)], dim=dim)
        padded.append(t)
    return torch.cat(padded, 0)


def join_rnn_states(states: list[RNNState]) -> RNNState:
    """LSTM (h, c) or GRU h states, each (L, B_i, H), as one (L, ΣB_i, H) state."""
    if isinstance(states[0], tuple):
        return tuple(torch.cat(parts, 1) for parts in zip(*states))
    return torch.cat(states, 1)


def join_caches(caches: list[list[dict[str, Any]]], starts: list[Tensor | None]) -> tuple[list[dict[str, Any]], Tensor]:
    """The per-layer caches ({"self": {k, v, used}, "cross": {k, v} or None}) of several batches as one batch.

    Args:
        caches: each batch's list of layer caches, keys (B_i, H, S_i, D).
        starts: each batch's (B_i,) first real self-attention slot per row, or None where every row starts at 0.

    Returns:
        The joined layer caches (self-attention right-aligned at the longest ``used``, cross-attention right-padded
        to the longest memory) and the joined (ΣB_i,) ``start``.
    """
    used = [layers[0]["self"]["used"] for layers in caches]
    longest = max(used)
    start = torch.cat([(s if s is not None else torch.zeros(layers[0]["self"]["k"].size(0), dtype=torch.long,
                                                            device=layers[0]["self"]["k"].device)) + longest - n
                       for layers, s, n in zip(caches, starts, used)])
    joined = []
    for layer in zip(*caches):
        entry: dict[str, Any] = {"self": _join_self([c["self"] for c in layer], longest)}
        if layer[0].get("cross") is not None:
            entry["cross"] = {name: cat_padded([c["cross"][name] for c in layer], dim=2) for name in ("k", "v")}
        elif "cross" in layer[0]:
            entry["cross"] = None
        joined.append(entry)
    return joined, start


def _join_self(caches: list[dict[str, Any]], longest: int) -> dict[str, Any]:
    """Self-attention caches right-aligned in one buffer (ΣB_i, H, capacity, D), zero in the padding."""
    first = caches[0]["k"]
    rows = sum(c["k"].size(0) for c in caches)
    capacity = max(2 * longest, 32)
    keys = first.new_zeros(rows, first.size(1), capacity, first.size(3))
    values = torch.zeros_like(keys)
    row = 0
    for cache in caches:
        n, used = cache["k"].size(0), cache["used"]
        keys[row : row + n, :, longest - used : longest] = cache["k"][:, :, :used]
        values[row : row + n, :, longest - used : longest] = cache["v"][:, :, :used]
        row += n
    return {"k": keys, "v": values, "used": longest}


def trim_caches(caches: list[dict[str, Any]], start: Tensor | None) -> tuple[list[dict[str, Any]], Tensor | None, int]:
    """Drop the self-attention slots that no row uses any more (the left padding common to all rows), after rows
    have left a joined batch.

    Returns:
        The caches, the new ``start`` (None once every row starts at slot 0: the batch is plain again), and how
        many slots were dropped (the caller shortens its offsets by as much).
    """
    if start is None:
        return caches, None, 0
    trim = int(start.min())
    if trim:
        caches = [dict(layer, self={"k": layer["self"]["k"][:, :, trim:], "v": layer["self"]["v"][:, :, trim:],
                                    "used": layer["self"]["used"] - trim}) for layer in caches]
        start = start - trim
    return caches, (start if bool(start.any()) else None), trim


def key_mask(start: Tensor, keys: int) -> Tensor:
    """(B, 1, keys) True at each row's real self-attention slots (from its ``start`` on)."""
    return (torch.arange(keys, device=start.device)[None, :] >= start[:, None])[:, None, :]


def row_positions(start: Tensor, offset: int, length: int) -> Tensor:
    """(B, length) the positions of ``length`` new tokens in each row of a joined batch whose cache holds
    ``offset`` slots: a row's position counts only its real slots."""
    return (offset - start)[:, None] + torch.arange(length, device=start.device)[None, :]


__all__ = ["cat_padded", "join_rnn_states", "join_caches", "trim_caches", "key_mask", "row_positions"]
