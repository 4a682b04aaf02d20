"""GPT: a decoder-only Transformer language model (Radford et al. 2019), nanoGPT-style, from ``nn/transformer.py``.

Pre-LayerNorm blocks, causal attention through ``scaled_dot_product_attention``,
learned positions (GPT-2's layout), the input embedding tied to the output
layer, the embedding table padded to a multiple of 64 rows (faster matmuls; the
padded rows are never predicted), and a KV cache for incremental decoding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genloom.config import require_at_least, require_fraction
from genloom.data.batching import Batch
from genloom.errors import UserError
from genloom.nn.losses import LossOutput, masked_cross_entropy
from genloom.nn.packed import PackedLinear, torch_on_one_thread
from genloom.nn.state import join_caches, key_mask, row_positions, trim_caches
from genloom.nn.transformer import (FeedForward, LayerPlan, MultiHeadAttention, TransformerLayer, fused_linear,
                                    reorder_caches)


@dataclass
class GPTConfig:
    """The GPT's shape. ``vocab_size`` comes from the tokenizer; ``context_length`` is the longest input.

    Attributes:
        vocab_size: set from the tokenizer.
        context_length: the longest input, in tokens.
        dim: the model width.
        num_layers: Transformer blocks.
        num_heads: attention heads per block.
        dropout: dropout on embeddings, attention and residual paths.
        bias: biases in the linear layers and LayerNorms.
        tie_embeddings: share the token embedding with the output layer.
        pad_vocab_multiple: round the embedding table up to a multiple of this (faster matmuls).
    """

    vocab_size: int = 0
    context_length: int = 256
    dim: int = 384
    num_layers: int = 6
    num_heads: int = 6
    dropout: float = 0.0
    bias: bool = True
    tie_embeddings: bool = True
    pad_vocab_multiple: int = 64


class GPT(nn.Module):
    """A causal Transformer LM honouring the decoding step contract."""

    conditional = False

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = c = config
        self.padded_vocab = math.ceil(c.vocab_size / c.pad_vocab_multiple) * c.pad_vocab_multiple
        self.embed = nn.Embedding(self.padded_vocab, c.dim)
        self.positions = nn.Embedding(c.context_length, c.dim)
        self.drop = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(
            TransformerLayer(MultiHeadAttention(c.dim, c.num_heads, c.dropout, c.bias),
                             FeedForward(c.dim, 4 * c.dim, c.dropout, "gelu", c.bias), c.dim, c.dropout)
            for _ in range(c.num_layers)
        )
        self.norm = nn.LayerNorm(c.dim, bias=c.bias)
        self.output = nn.Linear(c.dim, self.padded_vocab, bias=False)
        self.apply(self._init)
        for name, param in self.named_parameters():  # GPT-2: scale residual projections by 1/sqrt(2 L)
            if name.endswith("out.weight") or name.endswith("down.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * c.num_layers))
        if c.tie_embeddings:
            self.output.weight = self.embed.weight
        self._plan: tuple | None = None  # (parameters, _plan_key when built, the decode plan or None)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, tokens: Tensor, caches: list | None = None, offset: int = 0,
                start: Tensor | None = None) -> tuple[Tensor, list | None]:
        """tokens (B, T) after ``offset`` cached slots → logits (B, T, V) and the updated caches.

        ``start`` (B,): in a joined batch (``merge_states``), each row's first real cache slot; its tokens sit at
        positions counted from there, and the slots before it are masked.
        """
        length = offset + tokens.size(1)
        if length > self.config.context_length:
            raise UserError(f"the input is {length} tokens long, longer than the model's context of "
                            f"{self.config.context_length} tokens.")
        mask = None
        if start is None:
            positions = torch.arange(offset, length, device=tokens.device)  # (T,)
        else:
            positions = row_positions(start, offset, tokens.size(1))  # (B, T)
            mask = key_mask(start, length)  # (B, 1, S+T)
        x = self.drop(self.embed(tokens) + self.positions(positions))  # (B, T, C)
        new_caches = []
        for i, layer in enumerate(self.layers):
            x, cache, _ = layer(x, mask=mask, causal=True, cache=caches[i] if caches is not None else None)
            new_caches.append(cache)
        logits = self.output(self.norm(x))[..., : self.config.vocab_size]  # (B, T, V): padded rows dropped
        return logits, new_caches if caches is not None else None

    def loss(self, batch: Batch, carry: Any = None) -> LossOutput:
        """Mean next-token cross-entropy; windows are independent, so ``carry`` is unused."""
        logits, _ = self(batch.inputs)
        return LossOutput(loss=masked_cross_entropy(logits, batch.targets, batch.mask), n_tokens=batch.num_tokens)

    # The decoding step contract.

    def init_state(self, batch_size: int, context: Any = None) -> dict[str, Any]:
        device = self.embed.weight.device
        return {"caches": [{} for _ in self.layers], "offset": 0, "start": None,
                "window": torch.zeros((batch_size, 0), dtype=torch.long, device=device)}

    def step(self, tokens: Tensor, state: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        """(B, T) new tokens → (B, V) logits for the next one, reusing cached keys and values.

        Past the context window generation slides, as nanoGPT's ``generate`` does: the logits come from the
        last ``context_length`` tokens, recomputed without the cache (whose positions no longer fit).
        """
        context = self.config.context_length
        window = torch.cat([state["window"], tokens], dim=1)[:, -context:]  # (B, ≤ context)
        if state["offset"] + tokens.size(1) <= context:
            plan = None
            if (tokens.size(1) == 1 and state["offset"] > 0 and state["start"] is None and not self.training
                    and not torch.is_grad_enabled()):
                plan = self.decode_plan(tokens.size(0))
            if plan is not None:
                last, caches = self._decode_one(plan, tokens[:, 0], state["caches"], state["offset"])
            else:
                logits, caches = self(tokens, state["caches"], state["offset"], state["start"])
                last = logits[:, -1]
            return last, dict(state, caches=caches, offset=state["offset"] + tokens.size(1), window=window)
        if state["start"] is not None:
            raise UserError(f"a row of a joined batch would pass the model's context of {context} tokens; "
                            "joined batches do not slide (keep prompt + new tokens within the context).")
        logits, caches = self(window, [{} for _ in self.layers], 0)
        return logits[:, -1], {"caches": caches, "offset": window.size(1), "window": window, "start": None}

    def decode_plan(self, rows: int = 1) -> tuple[list[LayerPlan], Callable[[Tensor], Tensor], bool] | None:
        """The blocks and the output layer prepared for one-token steps (``LayerPlan``), built on first use and
        again whenever a parameter has changed (an optimizer step, ``load_state_dict``, a move to another device), or
        the batch changes between one row and several, or the thread count changes (matrices are packed for these,
        ``nn.packed``).
        None when a weight is a tensor subclass (torchao's int8 and such): the modules run their own kernels."""
        if self._plan is not None:
            parameters, built, plan = self._plan
            if built == self._plan_key(parameters, rows):  # each step: a walk over modules would cost 1 ms
                return plan
        parameters = list(self.parameters())
        plan = None
        if all(type(p.detach()) is Tensor for p in parameters):  # not a tensor subclass (torchao's int8 and such)
            output = fused_linear([self.output], rows)
            kernel = isinstance(output, PackedLinear) and output.kind == "kernel"  # and its threads: see the step
            plan = [LayerPlan(layer, rows) for layer in self.layers], output, kernel
        self._plan = (parameters, self._plan_key(parameters, rows), plan)
        return plan

    def _plan_key(self, parameters: list[nn.Parameter], rows: int) -> tuple:
        """What a ``decode_plan`` was built from: the weights' storage and versions, one row or several, the threads,
        and whether the output layer is float or int8."""
        return (self.embed.weight.data_ptr(), sum(p._version for p in parameters), rows == 1,
                torch.get_num_threads(), type(self.output))  # packings differ by rows and threads (nn.packed)

    def _decode_one(self, plan: tuple, tokens: Tensor, caches: list, offset: int) -> tuple[Tensor, list]:
        """tokens (B,) at position ``offset`` after filled caches → (B, V) logits and the caches: what ``forward``
        computes for one new token, through the ``decode_plan``. With the one-row kernel, torch's own operations
        run on one thread (``torch_on_one_thread``): the kernel's workers have the other cores."""
        layers, output, kernel = plan
        with torch_on_one_thread() if kernel else nullcontext():
            x = self.embed.weight[tokens] + self.positions.weight[offset]  # (B, C)
            new_caches = []
            for layer, cache in zip(layers, caches):
                x, self_cache = layer(x, cache["self"])
                new_caches.append({"self": self_cache, "cross": None})
            norm = self.norm
            x = F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
            return output(x)[:, : self.config.vocab_size], new_caches  # (B, V)

    def reorder_state(self, state: dict[str, Any], index: Tensor) -> dict[str, Any]:
        """Keep rows ``index``; in a joined batch, drop the cache slots no kept row uses."""
        start = state["start"].index_select(0, index) if state["start"] is not None else None
        caches, start, trim = trim_caches(reorder_caches(state["caches"], index), start)
        return {"caches": caches, "offset": state["offset"] - trim, "start": start,
                "window": state["window"].index_select(0, index)[:, trim:]}

    def merge_states(self, states: list[dict[str, Any]]) -> dict[str, Any]:
        """Several batches' states (each after at least one step) as one batch, rows in order."""
        caches, start = join_caches([s["caches"] for s in states], [s["start"] for s in states])
        offset = max(s["offset"] for s in states)
        window = torch.cat([torch.nn.functional.pad(s["window"], (offset - s["window"].size(1), 0))
                            for s in states])  # (ΣB, offset), right-aligned like the caches
        return {"caches": caches, "offset": offset, "start": start, "window": window}

    @property
    def max_context(self) -> int:
        return self.config.context_length


def flops_per_token(config: GPTConfig, position: int, source_length: int = 0) -> int:
    """Forward FLOPs of one new token at ``position`` (it attends to ``position`` + 1 keys, itself included; no
    source).

    2 per multiply-add of every matrix the token passes through: per block 24 C² (query, key and value 6 C²,
    output 2 C², feed-forward 16 C²) plus 4 C per key (q·k and the weighted sum of the values), then the output
    layer over the padded vocabulary, 2 C V. Biases, norms and activations are left out, as
    ``torch.utils.flop_counter`` leaves them out (tests/models/test_gpt.py checks the two agree).
    """
    padded = math.ceil(config.vocab_size / config.pad_vocab_multiple) * config.pad_vocab_multiple
    dim = config.dim
    return config.num_layers * (24 * dim * dim + 4 * (position + 1) * dim) + 2 * dim * padded


def check_config(config: GPTConfig) -> None:
    require_at_least(config, ("context_length", "dim", "num_layers", "num_heads", "pad_vocab_multiple"))
    require_fraction(config, ("dropout",))
    if config.dim % config.num_heads:
        raise UserError(f"model.dim ({config.dim}) must be divisible by model.num_heads ({config.num_heads}).")


def build(config: GPTConfig) -> GPT:
    check_config(config)
    if config.vocab_size < 1:
        raise UserError("the GPT needs model.vocab_size ≥ 1; it is normally taken from the tokenizer.")
    return GPT(config)


CONFIG = GPTConfig
BATCHING = None  # trains on any data.batching
MASK_TOKEN = False
