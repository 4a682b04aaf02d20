"""BERT: a bidirectional Transformer encoder trained as a masked language model (Devlin et al. 2019).

Post-LayerNorm layers from ``nn/transformer.py``, learned positions and token
types, an MLM head (dense → GELU → LayerNorm → the tied embedding matrix). In
training, 15% of the non-special tokens are chosen; of those 80% become
``<mask>``, 10% a random token and 10% stay, and the loss is the cross-entropy
at the chosen positions. ``fill_mask`` and ``pseudo_log_likelihood`` (Salazar
et al. 2020) are the uses; Hugging Face BERT folders load offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genloom.config import require_at_least, require_fraction
from genloom.data.batching import Batch
from genloom.errors import UserError
from genloom.nn.losses import LossOutput
from genloom.nn.transformer import FeedForward, MultiHeadAttention, TransformerLayer


@dataclass
class BertConfig:
    """BERT's shape; ``vocab_size`` and ``mask_id`` come from the tokenizer.

    Attributes:
        vocab_size: set from the tokenizer.
        mask_id: set from the tokenizer (the <mask> token's id).
        context_length: the longest input, in tokens.
        dim: the model width.
        num_layers: Transformer blocks.
        num_heads: attention heads per block.
        ff_dim: the feed-forward layer's inner width.
        dropout: dropout on embeddings, attention and residual paths.
        type_vocab_size: token-type (segment) embeddings.
        norm_eps: LayerNorm's epsilon.
        mask_probability: the fraction of tokens chosen for masked-LM prediction (80/10/10 mask/random/keep).
        mlm_head: whether the model has its masked-LM head; a sentence encoder (e.g. all-MiniLM-L6-v2) has none and
            only encodes.
        pooling: how ``embed_sentences`` turns token states into one sentence vector: ``mean`` over the tokens ([CLS] and
            [SEP] included, as sentence-transformers pools) or the ``cls`` token's state.
    """

    vocab_size: int = 0
    mask_id: int = 4
    context_length: int = 512
    dim: int = 256
    num_layers: int = 4
    num_heads: int = 4
    ff_dim: int = 1024
    dropout: float = 0.1
    type_vocab_size: int = 2
    norm_eps: float = 1e-12
    mask_probability: float = 0.15
    mlm_head: bool = True
    pooling: str = "mean"


POOLINGS = ("mean", "cls")


class Bert(nn.Module):
    """A masked language model; not a generator (it has no step contract)."""

    conditional = False
    masked = True

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size, c.dim)
        self.positions = nn.Embedding(c.context_length, c.dim)
        self.token_types = nn.Embedding(c.type_vocab_size, c.dim)
        self.embed_norm = nn.LayerNorm(c.dim, eps=c.norm_eps)
        self.drop = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(
            TransformerLayer(MultiHeadAttention(c.dim, c.num_heads, c.dropout),
                             FeedForward(c.dim, c.ff_dim, 0.0, "gelu_exact"), c.dim, c.dropout,
                             norm_first=False, norm_eps=c.norm_eps)
            for _ in range(c.num_layers)
        )
        if c.mlm_head:
            self.head_dense = nn.Linear(c.dim, c.dim)
            self.head_norm = nn.LayerNorm(c.dim, eps=c.norm_eps)
            self.output_bias = nn.Parameter(torch.zeros(c.vocab_size))
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        """tokens (B, T), mask (B, T) True at real tokens → MLM logits (B, T, V)."""
        if not self.config.mlm_head:
            raise UserError("this BERT is a sentence encoder without a masked-LM head: it embeds text but cannot "
                            "fill masks, score or be trained as a masked LM.")
        h = self.head_norm(F.gelu(self.head_dense(self.encode(tokens, mask))))
        return h @ self.embed.weight.t() + self.output_bias  # (B, T, V), tied to the input embedding

    def encode(self, tokens: Tensor, mask: Tensor | None = None, segments: Tensor | None = None) -> Tensor:
        """tokens (B, T), mask (B, T) True at real tokens, segments (B, T) token types (0 for the first text of a
        pair, 1 for the second; default all 0) → the last layer's hidden states (B, T, C)."""
        if tokens.size(1) > self.config.context_length:
            raise UserError(f"the input is {tokens.size(1)} tokens long, longer than the model's context of "
                            f"{self.config.context_length} tokens.")
        positions = torch.arange(tokens.size(1), device=tokens.device)
        types = segments if segments is not None else torch.zeros_like(tokens)
        x = self.embed(tokens) + self.positions(positions) + self.token_types(types)
        x = self.drop(self.embed_norm(x))  # (B, T, C)
        key_mask = mask[:, None, :] if mask is not None else None  # (B, 1, T)
        for layer in self.layers:
            x, _, _ = layer(x, mask=key_mask)
        return x

    def embed_sentences(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """tokens (B, T), mask (B, T) True at real tokens → (B, C) sentence vectors of length 1, pooled as
        ``config.pooling`` says."""
        states = self.encode(tokens, mask).float()  # (B, T, C)
        if self.config.pooling == "cls":
            pooled = states[:, 0]
        else:
            pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)  # (B, C)
        return F.normalize(pooled, dim=-1)

    def choose_masked(self, tokens: Tensor, maskable: Tensor,
                      generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """BERT's corruption: returns the corrupted (B, T) inputs and the (B, T) chosen positions."""
        draw = dict(device=tokens.device, generator=generator)
        chosen = (torch.rand(tokens.shape, **draw) < self.config.mask_probability) & maskable
        roll = torch.rand(tokens.shape, **draw)
        random_tokens = torch.randint(0, self.config.vocab_size, tokens.shape, **draw)
        corrupted = torch.where(chosen & (roll < 0.8), torch.full_like(tokens, self.config.mask_id), tokens)
        corrupted = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), random_tokens, corrupted)
        return corrupted, chosen

    def loss(self, batch: Batch, carry: Any = None) -> LossOutput:
        """MLM cross-entropy at the chosen positions of ``<bos> text <eos>`` rebuilt from an LM batch."""
        tokens = torch.cat([batch.inputs[:, :1], batch.targets], 1)  # (B, T+1): <bos> x <eos>
        real = torch.cat([batch.mask[:, :1], batch.mask], 1)
        maskable = real.clone()
        maskable[:, 0] = False  # never <bos>
        maskable[torch.arange(tokens.size(0)), real.sum(1) - 1] = False  # nor the final <eos>
        # Evaluation masks the same positions every time and leaves the training RNG alone.
        generator = None if self.training else torch.Generator(tokens.device).manual_seed(0)
        corrupted, chosen = self.choose_masked(tokens, maskable, generator)
        logits = self(corrupted, real)
        n = int(chosen.sum())
        if n == 0:
            return LossOutput(loss=logits.sum() * 0.0, n_tokens=0)
        loss = F.cross_entropy(logits[chosen].float(), tokens[chosen])
        return LossOutput(loss=loss, n_tokens=n)

    @torch.no_grad()
    def fill_mask(self, tokens: Tensor, top_k: int = 5) -> list[list[tuple[int, float]]]:
        """For each ``mask_id`` position of one (T,) sequence, the ``top_k`` (token, probability) fillers."""
        probs = torch.softmax(self(tokens[None])[0].float(), -1)  # (T, V)
        positions = (tokens == self.config.mask_id).nonzero().flatten().tolist()
        return [[(int(i), float(p)) for p, i in zip(*torch.topk(probs[pos], top_k))] for pos in positions]

    @torch.no_grad()
    def pseudo_log_likelihood(self, tokens: Tensor, positions: list[int]) -> float:
        """Σ over ``positions`` of log P(token | the sequence with that one token masked), in nats."""
        copies = tokens[None].repeat(len(positions), 1)  # (P, T): one masked position per row
        rows = torch.arange(len(positions))
        copies[rows, positions] = self.config.mask_id
        log_probs = torch.log_softmax(self(copies).float(), -1)  # (P, T, V)
        return float(log_probs[rows, positions, tokens[positions]].sum())


def check_config(config: BertConfig) -> None:
    require_at_least(config, ("context_length", "dim", "num_layers", "num_heads", "ff_dim", "type_vocab_size"))
    require_fraction(config, ("dropout",))
    if not 0.0 < config.mask_probability < 1.0:
        raise UserError(f"model.mask_probability must lie in (0, 1), got {config.mask_probability}.")
    if config.pooling not in POOLINGS:
        raise UserError(f"model.pooling must be one of {', '.join(POOLINGS)}, got {config.pooling!r}.")
    if config.dim % config.num_heads:
        raise UserError(f"model.dim ({config.dim}) must be divisible by model.num_heads ({config.num_heads}).")


def build(config: BertConfig) -> Bert:
    check_config(config)
    if config.vocab_size < 1:
        raise UserError("BERT needs model.vocab_size ≥ 1; it is normally taken from the tokenizer.")
    return Bert(config)


CONFIG = BertConfig
MASK_TOKEN = True  # the recipe's tokenizer gets a <mask> token
BATCHING = "sentences"  # the loss reads <bos> text <eos> from whole-text batches
