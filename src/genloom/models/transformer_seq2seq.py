"""The Transformer encoder–decoder (Vaswani et al. 2017), built from the shared blocks in ``nn/transformer.py``.

Pre-LayerNorm layers, sinusoidal positions, shared source/target embeddings
tied to the output layer, label smoothing. Decoding runs incrementally with a
KV cache per layer; the last layer's cross-attention (averaged over heads) is
what ``attention_weights`` reports for plots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from genloom.config import require_at_least, require_fraction
from genloom.data.batching import Batch
from genloom.errors import UserError
from genloom.nn.losses import LossOutput, masked_cross_entropy
from genloom.nn.state import cat_padded, join_caches, key_mask, row_positions, trim_caches
from genloom.nn.transformer import FeedForward, MultiHeadAttention, TransformerLayer, reorder_caches, sinusoidal_positions


@dataclass
class TransformerSeq2SeqConfig:
    """The Transformer's shape; ``vocab_size`` comes from the (joint) tokenizer.

    Attributes:
        vocab_size: set from the (joint) tokenizer.
        dim: the model width.
        num_heads: attention heads per layer.
        encoder_layers: encoder layers.
        decoder_layers: decoder layers.
        ff_dim: the feed-forward layer's inner width.
        dropout: dropout on embeddings, attention and residual paths.
        max_positions: the longest source or target, in tokens.
        label_smoothing: probability mass spread over the vocabulary in the training loss.
        tie_embeddings: share the embeddings with the output layer.
    """

    vocab_size: int = 0
    dim: int = 256
    num_heads: int = 4
    encoder_layers: int = 3
    decoder_layers: int = 3
    ff_dim: int = 1024
    dropout: float = 0.1
    max_positions: int = 512
    label_smoothing: float = 0.1
    tie_embeddings: bool = True


def _layer(c: TransformerSeq2SeqConfig, cross: bool) -> TransformerLayer:
    return TransformerLayer(
        MultiHeadAttention(c.dim, c.num_heads, c.dropout), FeedForward(c.dim, c.ff_dim, c.dropout, "relu"), c.dim,
        c.dropout, MultiHeadAttention(c.dim, c.num_heads, c.dropout) if cross else None,
    )


class TransformerSeq2Seq(nn.Module):
    """Encoder–decoder Transformer honouring the decoding step contract."""

    conditional = True

    def __init__(self, config: TransformerSeq2SeqConfig):
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size, c.dim)
        self.register_buffer("positions", sinusoidal_positions(c.max_positions, c.dim), persistent=False)
        self.drop = nn.Dropout(c.dropout)
        self.encoder = nn.ModuleList(_layer(c, cross=False) for _ in range(c.encoder_layers))
        self.decoder = nn.ModuleList(_layer(c, cross=True) for _ in range(c.decoder_layers))
        self.encoder_norm, self.decoder_norm = nn.LayerNorm(c.dim), nn.LayerNorm(c.dim)
        self.output = nn.Linear(c.dim, c.vocab_size, bias=False)
        nn.init.normal_(self.embed.weight, std=c.dim ** -0.5)
        if c.tie_embeddings:
            self.output.weight = self.embed.weight

    def _embed(self, tokens: Tensor, offset: int = 0, start: Tensor | None = None) -> Tensor:
        """tokens (B, T) after ``offset`` earlier ones (in a joined batch, per row: ``start``, see ``merge_states``)
        → (B, T, C)."""
        length = tokens.size(1)
        if offset + length > self.config.max_positions:
            raise UserError(f"a sequence of {offset + length} tokens exceeds the model's "
                            f"{self.config.max_positions} positions.")
        if start is None:
            positions = self.positions[offset : offset + length]  # (T, C)
        else:
            positions = self.positions[row_positions(start, offset, length)]  # (B, T, C)
        return self.drop(self.embed(tokens) * math.sqrt(self.config.dim) + positions)  # (B, T, C)

    def encode(self, source: Tensor, source_mask: Tensor) -> tuple[Tensor, Tensor]:
        """source (B, S) → memory (B, S, C) and the (B, 1, S) key mask."""
        mask = source_mask[:, None, :]
        x = self._embed(source)
        for layer in self.encoder:
            x, _, _ = layer(x, mask=mask)
        return self.encoder_norm(x), mask

    def _decode(self, tokens: Tensor, memory: Tensor, memory_mask: Tensor, caches: list | None, offset: int,
                need_weights: bool, start: Tensor | None = None) -> tuple[Tensor, list | None, Tensor | None]:
        x = self._embed(tokens, offset, start)
        mask = key_mask(start, offset + tokens.size(1)) if start is not None else None  # (B, 1, S+T)
        new_caches, weights = [], None
        for i, layer in enumerate(self.decoder):
            last = i == len(self.decoder) - 1
            x, cache, w = layer(x, mask=mask, causal=True, memory=memory, memory_mask=memory_mask,
                                cache=caches[i] if caches is not None else None, need_weights=need_weights and last)
            new_caches.append(cache)
            weights = w if last else weights
        return self.output(self.decoder_norm(x)), new_caches if caches is not None else None, weights

    def forward(self, batch: Batch, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced logits (B, T, V) and, when asked, cross-attention (B, T, S)."""
        memory, memory_mask = self.encode(batch.source, batch.source_mask)
        logits, _, weights = self._decode(batch.inputs, memory, memory_mask, None, 0, need_weights)
        return logits, weights

    def loss(self, batch: Batch, carry: Any = None) -> LossOutput:
        logits, _ = self(batch)
        smoothing = self.config.label_smoothing if self.training else 0.0
        loss = masked_cross_entropy(logits, batch.targets, batch.mask, label_smoothing=smoothing)
        return LossOutput(loss=loss, n_tokens=batch.num_tokens)

    # The decoding step contract.

    def init_state(self, batch_size: int, context: Any = None) -> dict[str, Any]:
        if context is None:
            raise UserError("a seq2seq model needs a source to decode from.")
        memory, memory_mask = self.encode(context["source"], context["source_mask"])
        return {"memory": memory, "memory_mask": memory_mask, "caches": [{} for _ in self.decoder],
                "offset": 0, "start": None, "attention": None}

    def step(self, tokens: Tensor, state: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        """(B, T) new tokens → (B, V) logits for the next one; keys and values of the past come from the cache."""
        logits, caches, weights = self._decode(tokens, state["memory"], state["memory_mask"], state["caches"],
                                               state["offset"], need_weights=True, start=state["start"])
        return logits[:, -1], dict(state, caches=caches, offset=state["offset"] + tokens.size(1),
                                   attention=weights[:, -1])

    def reorder_state(self, state: dict[str, Any], index: Tensor) -> dict[str, Any]:
        """Keep rows ``index``; in a joined batch, drop the self-attention slots no kept row uses."""
        start = state["start"].index_select(0, index) if state["start"] is not None else None
        caches, start, trim = trim_caches(reorder_caches(state["caches"], index), start)
        attention = state["attention"].index_select(0, index) if state["attention"] is not None else None
        return dict(state, memory=state["memory"].index_select(0, index), start=start, offset=state["offset"] - trim,
                    memory_mask=state["memory_mask"].index_select(0, index), caches=caches, attention=attention)

    def merge_states(self, states: list[dict[str, Any]]) -> dict[str, Any]:
        """Several batches' states (each after at least one step) as one batch, rows in order: memories
        right-padded to the longest source (masked), decoder caches right-aligned (``nn.state.join_caches``)."""
        caches, start = join_caches([s["caches"] for s in states], [s["start"] for s in states])
        return {"memory": cat_padded([s["memory"] for s in states]), "caches": caches, "start": start,
                "memory_mask": cat_padded([s["memory_mask"] for s in states], dim=2, value=False),
                "offset": max(s["offset"] for s in states), "attention": cat_padded([s["attention"] for s in states])}

    def attention_weights(self, state: dict[str, Any]) -> Tensor | None:
        return state["attention"]

    @property
    def max_context(self) -> int | None:
        return self.config.max_positions


def flops_per_token(config: TransformerSeq2SeqConfig, position: int, source_length: int = 1) -> int:
    """Forward FLOPs of one new target token at ``position`` over a source of ``source_length`` tokens, the
    encoder's output and its cross-attention keys and values already cached (computed once a sentence).

    2 per multiply-add: per decoder layer 8 C² (self-attention projections), 4 C per target key, 4 C² (the
    cross-attention's query and output), 4 C per source key, 4 C F (feed-forward); then the output layer, 2 C V.
    Biases, norms and activations are left out, as ``torch.utils.flop_counter`` leaves them out.
    """
    dim = config.dim
    layer = 12 * dim * dim + 4 * (position + 1) * dim + 4 * source_length * dim + 4 * dim * config.ff_dim
    return config.decoder_layers * layer + 2 * dim * config.vocab_size


def check_config(config: TransformerSeq2SeqConfig) -> None:
    require_at_least(config, ("dim", "num_heads", "encoder_layers", "decoder_layers", "ff_dim", "max_positions"))
    require_fraction(config, ("dropout", "label_smoothing"))
    if config.dim % config.num_heads:
        raise UserError(f"model.dim ({config.dim}) must be divisible by model.num_heads ({config.num_heads}).")


def build(config: TransformerSeq2SeqConfig) -> TransformerSeq2Seq:
    check_config(config)
    if config.vocab_size < 1:
        raise UserError("the Transformer needs model.vocab_size ≥ 1; it is normally taken from the tokenizer.")
    return TransformerSeq2Seq(config)


CONFIG = TransformerSeq2SeqConfig
BATCHING = None  # trains on any data.batching
MASK_TOKEN = False
