"""Transformer blocks: multi-head attention with a KV cache, the feed-forward net, the pre-LN layer, positions.

Blocks take flat sizes or injected sub-modules (torchtune's
``TransformerSelfAttentionLayer(attn, mlp, ...)``), never a model config, so the
seq2seq Transformer and a GPT can share them without knowing each other.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genloom.nn.packed import KERNEL, PackedLinear, onerow
from genloom.nn.quantized import Int8Linear, cat_int8

KVCache = dict[str, Tensor]


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention over ``num_heads`` heads, self or cross, with an optional KV cache.

    Args:
        dim: model width C (split into heads of C / num_heads).
        num_heads: number of heads H.
        dropout: attention-weight dropout in training.
        bias: whether the projections have biases.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.head_dim, self.dropout = num_heads, dim // num_heads, dropout
        self.query = nn.Linear(dim, dim, bias=bias)
        self.key_value = nn.Linear(dim, 2 * dim, bias=bias)
        self.out = nn.Linear(dim, dim, bias=bias)

    def _heads(self, x: Tensor) -> Tensor:
        return x.view(x.size(0), x.size(1), self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)

    def forward(self, x: Tensor, memory: Tensor | None = None, mask: Tensor | None = None, causal: bool = False,
                cache: KVCache | None = None, need_weights: bool = False) -> tuple[Tensor, KVCache | None, Tensor | None]:
        """Attend from ``x`` to itself (``memory`` None) or to ``memory``.

        Args:
            x: (B, T, C) queries' inputs.
            memory: (B, S, C) for cross-attention; its keys/values are computed once and cached.
            mask: (B, 1, S_total) or (B, T, S_total) bool, True where attending is allowed.
            causal: each query sees only keys at or before its position (self-attention).
            cache: the previous keys/values ({"k", "v"}: (B, H, S_past, D)), or None.
            need_weights: also return the (B, T, S_total) weights averaged over heads (slower path).

        Returns:
            (B, T, C) output, the updated cache (when one was given), and the weights or None.
        """
        q = self._heads(self.query(x))  # (B, H, T, D)
        new_cache = None
        if memory is not None and cache is not None and "k" in cache:
            k, v = cache["k"], cache["v"]  # cross-attention: the memory never changes
            new_cache = cache
        else:
            k, v = (self._heads(t) for t in self.key_value(x if memory is None else memory).chunk(2, dim=-1))
            if memory is not None and cache is not None:
                new_cache = {"k": k, "v": v}
            elif cache is not None:
                k, v, new_cache = _append(cache, k, v)  # (B, H, S_past+T, D)
        # The fused kernels' own causal path when nothing else is masked; no mask at all for a single
        # new query at the end of the sequence; an explicit mask otherwise.
        fused_causal = causal and mask is None and q.size(2) == k.size(2) and not need_weights
        if causal and mask is None and q.size(2) == 1:
            causal = False
        full_mask = None if fused_causal else _combine(mask, causal, q.size(2), k.size(2), x.device)
        dropout = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, H, T, S)
            if full_mask is not None:
                scores = scores.masked_fill(~full_mask[:, None] if full_mask.dim() == 3 else ~full_mask, float("-inf"))
            probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
            weights = probs.mean(1)  # (B, T, S)
            y = F.dropout(probs, dropout, self.training) @ v  # (B, H, T, D)
        else:
            attn_mask = full_mask[:, None] if full_mask is not None and full_mask.dim() == 3 else full_mask
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout, is_causal=fused_causal)
        y = y.transpose(1, 2).reshape(x.size(0), x.size(1), -1)  # (B, T, C)
        return self.out(y), new_cache, weights


def _reserve(cache: KVCache, shape: tuple[int, int, int, int], like: Tensor) -> tuple[Tensor, Tensor, int]:
    """A self-attention cache's key and value buffers (B, H, capacity, D), with room for ``shape`` (B, H, T, D) more
    positions after the ``used`` ones (grown by doubling), and ``used``."""
    used = cache.get("used", 0)
    keys, values = cache.get("k"), cache.get("v")
    needed = used + shape[2]
    if keys is None or needed > keys.size(2):
        capacity = max(needed, 2 * (keys.size(2) if keys is not None else 0), 32)
        grown_k = like.new_empty(shape[0], shape[1], capacity, shape[3])  # (B, H, capacity, D)
        grown_v = like.new_empty(grown_k.shape)
        if used:
            grown_k[:, :, :used], grown_v[:, :, :used] = keys[:, :, :used], values[:, :, :used]
        keys, values = grown_k, grown_v
    return keys, values, used


def _append(cache: KVCache, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, KVCache]:
    """Append new keys/values to a self-attention cache whose buffers grow by doubling (``_reserve``).

    Concatenating at every step copies the whole past each time (quadratic
    traffic); here the buffers are written in place and reallocated only when
    full. The caller's old state stays valid for the positions it had, but a
    state must not be extended twice (beam search reorders into new buffers).

    Returns:
        keys and values (B, H, S_past+T, D) as views of the buffers, and the new cache.
    """
    keys, values, used = _reserve(cache, tuple(k.shape), k)
    needed = used + k.size(2)
    keys[:, :, used:needed], values[:, :, used:needed] = k, v
    return keys[:, :, :needed], values[:, :, :needed], {"k": keys, "v": values, "used": needed}


def _combine(mask: Tensor | None, causal: bool, queries: int, keys: int, device: torch.device) -> Tensor | None:
    """One bool mask (True = attend) from a padding mask and causality; queries are the last ``queries`` keys."""
    if not causal:
        return mask
    offset = keys - queries
    rows = torch.arange(queries, device=device)[:, None] + offset
    allowed = torch.arange(keys, device=device)[None, :] <= rows  # (T, S)
    return allowed[None] if mask is None else mask & allowed[None]


class FeedForward(nn.Module):
    """Position-wise Linear → activation → dropout → Linear."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0, activation: str = "gelu", bias: bool = True):
        super().__init__()
        self.up = nn.Linear(dim, hidden_dim, bias=bias)
        self.down = nn.Linear(hidden_dim, dim, bias=bias)
        # gelu: GPT-2's tanh approximation; gelu_exact: BERT's erf form.
        self.activation = {"gelu": nn.GELU(approximate="tanh"), "gelu_exact": nn.GELU(), "relu": nn.ReLU()}[activation]
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(self.drop(self.activation(self.up(x))))


class TransformerLayer(nn.Module):
    """Residual layer: self-attention, optional cross-attention, feed-forward; pre-LayerNorm (GPT-2) by
    default, post-LayerNorm (BERT, no cross-attention) with ``norm_first=False``.

    Args:
        self_attention: a ``MultiHeadAttention`` over the layer's own inputs.
        feed_forward: the position-wise network.
        dim: model width, for the LayerNorms.
        dropout: residual dropout.
        cross_attention: a ``MultiHeadAttention`` over an encoder's memory, or None.
    """

    def __init__(self, self_attention: nn.Module, feed_forward: nn.Module, dim: int, dropout: float = 0.0,
                 cross_attention: nn.Module | None = None, norm_first: bool = True, norm_eps: float = 1e-5):
        super().__init__()
        self.self_attention, self.feed_forward, self.cross_attention = self_attention, feed_forward, cross_attention
        self.norm_self = nn.LayerNorm(dim, eps=norm_eps)
        self.norm_cross = nn.LayerNorm(dim, eps=norm_eps) if cross_attention is not None else None
        self.norm_ff = nn.LayerNorm(dim, eps=norm_eps)
        self.drop = nn.Dropout(dropout)
        self.norm_first = norm_first  # False: BERT's post-LayerNorm, x = LN(x + sublayer(x))

    def forward(self, x: Tensor, mask: Tensor | None = None, causal: bool = False, memory: Tensor | None = None,
                memory_mask: Tensor | None = None, cache: dict[str, Any] | None = None,
                need_weights: bool = False) -> tuple[Tensor, dict[str, Any] | None, Tensor | None]:
        """x (B, T, C) → (B, T, C), the updated cache ({"self": …, "cross": …}) and cross-attention weights."""
        self_cache = cache.get("self", {}) if cache is not None else None
        if not self.norm_first:
            h, self_cache, _ = self.self_attention(x, mask=mask, causal=causal, cache=self_cache)
            x = self.norm_self(x + self.drop(h))
            x = self.norm_ff(x + self.drop(self.feed_forward(x)))
            return x, ({"self": self_cache} if cache is not None else None), None
        h, self_cache, _ = self.self_attention(self.norm_self(x), mask=mask, causal=causal, cache=self_cache)
        x = x + self.drop(h)
        weights, cross_cache = None, None
        if self.cross_attention is not None:
            cross_cache = cache.get("cross", {}) if cache is not None else None
            h, cross_cache, weights = self.cross_attention(self.norm_cross(x), memory=memory, mask=memory_mask,
                                                           cache=cross_cache, need_weights=need_weights)
            x = x + self.drop(h)
        x = x + self.drop(self.feed_forward(self.norm_ff(x)))
        new_cache = {"self": self_cache, "cross": cross_cache} if cache is not None else None
        return x, new_cache, weights


def fused_linear(layers: list[nn.Module], rows: int) -> Callable[[Tensor], Tensor]:
    """The given linear layers (same input) as one callable x (N, in) → (N, Σ out): float layers packed
    (``PackedLinear``), int8 layers (``nn.quantized``) stacked."""
    if all(isinstance(layer, Int8Linear) for layer in layers):
        return (cat_int8(layers) if len(layers) > 1 else layers[0]).forward  # no module-call machinery per step
    bias = torch.cat([layer.bias for layer in layers]) if layers[0].bias is not None else None
    return PackedLinear(torch.cat([layer.weight for layer in layers]), bias, rows)


ACTIVATIONS = {"relu": 0, "tanh": 1, "none": 2}  # onerow.c's codes: ReLU, GELU (tanh), GELU (erf)


class LayerPlan:
    """A pre-LayerNorm ``TransformerLayer`` without cross-attention (a GPT block) prepared for decoding steps of one
    token a row: its query, key and value projections fused into one matrix and every float matrix packed
    (``PackedLinear``; int8 layers keep their own kernel), so a step is one matrix product less and a few small
    operations fewer than ``forward``, with the same cache. Where the matrices went to genloom's one-row kernel, a
    step of one row is a single call of ``onerow.layer``: the block in C, some twenty torch operations fewer.
    Inference only: built from the weights as they are (see ``GPT.decode_plan``)."""

    def __init__(self, layer: TransformerLayer, rows: int = 1):
        attention, feed_forward = layer.self_attention, layer.feed_forward
        if not layer.norm_first or layer.cross_attention is not None:
            raise ValueError("LayerPlan serves pre-LayerNorm self-attention layers only")
        self.qkv = fused_linear([attention.query, attention.key_value], rows)  # (3C, C): q, k, v rows
        self.out, self.up, self.down = (fused_linear([linear], rows) for linear in
                                        (attention.out, feed_forward.up, feed_forward.down))
        self.norms = [(n.normalized_shape, n.weight, n.bias, n.eps) for n in (layer.norm_self, layer.norm_ff)]
        self.activation = feed_forward.activation
        self.heads, self.head_dim = attention.num_heads, attention.head_dim
        self.native = self._native_arguments()
        self.scratch = torch.empty(0)

    def _native_arguments(self) -> tuple | None:
        """What ``onerow.layer`` takes after the cache (sizes, threads, epsilons, addresses), or None where the block
        is not all float matrices in the one-row kernel's layout with an activation it knows."""
        linears = (self.qkv, self.out, self.up, self.down)
        code = ACTIVATIONS.get(getattr(self.activation, "approximate", "relu"))
        if code is None or not isinstance(self.activation, (nn.GELU, nn.ReLU)):
            return None
        if not all(isinstance(linear, PackedLinear) and linear.kind == "kernel" for linear in linears):
            return None
        (_, weight1, bias1, eps1), (_, weight2, bias2, eps2) = self.norms
        tensors = (weight1, bias1, self.qkv.packed, self.qkv.bias, self.out.packed, self.out.bias,
                   weight2, bias2, self.up.packed, self.up.bias, self.down.packed, self.down.bias)
        return (self.heads, self.head_dim, self.up.packed.size(1), code, self.qkv.threads, eps1, eps2,
                *(t.data_ptr() if t is not None else 0 for t in tensors))  # 0: no bias, no affine

    def __call__(self, x: Tensor, cache: KVCache) -> tuple[Tensor, KVCache]:
        """x (B, C), each row's newest token → (B, C), and the self-attention cache with its key and value added."""
        batch, dim = x.shape
        rows = self._cache_rows(cache, batch, x) if KERNEL else None
        if self.native is not None and batch == 1 and rows is not None:
            return self._native(x, *rows)
        (shape, weight, bias, eps), ff_norm = self.norms
        qkv = self.qkv(F.layer_norm(x, shape, weight, bias, eps))  # (B, 3C)
        if rows is not None and qkv.is_contiguous():
            y, cache = self._attention(qkv, *rows)
        else:
            q, k, v = qkv.view(batch, 3, self.heads, 1, self.head_dim).unbind(1)  # (B, H, 1, D) each
            keys, values, cache = _append(cache, k, v)  # (B, H, S, D)
            y = F.scaled_dot_product_attention(q, keys, values).view(batch, dim)  # one query sees every key
        x = x + self.out(y)
        return x + self.down(self.activation(self.up(F.layer_norm(x, *ff_norm)))), cache

    def _cache_rows(self, cache: KVCache, batch: int, like: Tensor) -> tuple[Tensor, Tensor, int] | None:
        """The cache's buffers with room for one more position and ``used``, when they are what onerow.c reads:
        float32 on the CPU, (B, H, ·, D) with D-float rows (a buffer, or a trimmed view of one, as ``trim_caches``
        leaves it); None otherwise."""
        if like.device.type != "cpu" or like.dtype != torch.float32:
            return None
        keys, values, used = _reserve(cache, (batch, self.heads, 1, self.head_dim), like)
        if keys.stride(3) != 1 or keys.stride(2) != self.head_dim:
            return None
        return keys, values, used

    def _scratch(self, size: int) -> Tensor:
        """A float buffer of at least ``size`` for onerow.c's intermediate vectors, grown by doubling."""
        if self.scratch.numel() < size:
            self.scratch = torch.empty(max(size, 2 * self.scratch.numel()))
        return self.scratch

    def _attention(self, qkv: Tensor, keys: Tensor, values: Tensor, used: int) -> tuple[Tensor, KVCache]:
        """qkv (B, 3C) → (B, C) attention through ``onerow.attention``, which also writes the new keys and values
        into the cache at ``used``. Against SDPA and torch's cache writes: batch 32, one thread, 740-828 tokens/s
        against 611-734 (docs/compute.md)."""
        batch, heads, dim = qkv.size(0), self.heads, self.head_dim
        y = qkv.new_empty(batch, heads * dim)
        onerow.attention(y.data_ptr(), qkv.data_ptr(), keys.data_ptr(), values.data_ptr(), batch, heads, dim, used,
                         keys.stride(0), keys.stride(1), self._scratch(used + 1).data_ptr())
        return y, {"k": keys, "v": values, "used": used + 1}

    def _native(self, x: Tensor, keys: Tensor, values: Tensor, used: int) -> tuple[Tensor, KVCache]:
        """One row through ``onerow.layer``: x (1, C) → (1, C), the key and value written at ``used``."""
        x = x.clone(memory_format=torch.contiguous_format)  # the kernel adds to it in place
        scratch = self._scratch(5 * x.size(1) + self.up.packed.size(1) + used + 1)  # onerow.c: the block's vectors
        onerow.layer(x.data_ptr(), scratch.data_ptr(), keys.data_ptr(), values.data_ptr(), used,
                     keys.stride(1) // self.head_dim, *self.native)
        return x, {"k": keys, "v": values, "used": used + 1}

def reorder_caches(caches: list[dict[str, Any]], index: Tensor) -> list[dict[str, Any]]:
    """Keep batch rows ``index`` of every layer's {"self": {k, v, used}, "cross": {k, v}} cache (beam search)."""
    return [{part: {name: t.index_select(0, index) if isinstance(t, Tensor) else t for name, t in cache.items()}
             if cache else cache for part, cache in layer.items()} for layer in caches]


def sinusoidal_positions(length: int, dim: int) -> Tensor:
    """(length, dim) sine/cosine position encodings of Vaswani et al. 2017."""
    position = torch.arange(length, dtype=torch.float)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table
