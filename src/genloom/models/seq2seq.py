"""The recurrent encoder–decoder with attention, for translation and summarization.

Encoder: embeddings → (bi)LSTM/GRU over packed sequences. Decoder: LSTM/GRU
whose top state attends over the encoder states (Bahdanau additive, Luong dot or
general, or none: then the final encoder state is the one context vector), with
Luong's attentional layer and input feeding, optional pointer-generator copying
with coverage (See et al. 2017), and scheduled sampling (Bengio et al. 2015).

Teacher-forced training and incremental decoding run the same ``_decode_step``,
so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genloom.config import require_at_least, require_fraction
from genloom.data.batching import Batch
from genloom.data.tokenizers import UNK_ID
from genloom.errors import UserError
from genloom.nn.attention import make_attention
from genloom.nn.losses import LossOutput, masked_cross_entropy
from genloom.nn.rnn import RNNEncoder, make_rnn, map_state
from genloom.nn.state import cat_padded, join_rnn_states

EPS = 1e-12


@dataclass
class Seq2SeqConfig:
    """The encoder–decoder's shape. ``vocab_size`` comes from the (joint) tokenizer.

    ``tie_embeddings`` ties the target embedding to the output layer;
    ``share_embeddings`` uses one embedding for source and target (the tokenizer is
    joint). ``scheduled_sampling`` is the probability, per target position in
    training, of feeding the model's own previous prediction instead of the
    reference. ``copy`` adds the pointer-generator; ``coverage`` adds the coverage
    vector to additive attention and ``coverage_weight`` × the coverage loss.

    Attributes:
        vocab_size: set from the (joint) tokenizer.
        cell: the recurrent cell: lstm or gru.
        embed_dim: the token embedding's size.
        hidden_dim: the recurrent state's size.
        encoder_layers: stacked encoder layers.
        decoder_layers: stacked decoder layers.
        bidirectional: a bidirectional encoder.
        attention: none, additive (Bahdanau), dot or general (Luong).
        attention_dim: additive attention's hidden size.
        input_feeding: feed the previous attentional vector into the next decoder step (Luong).
        dropout: dropout on embeddings and between layers.
        tie_embeddings: share the target embedding with the output layer.
        share_embeddings: one embedding for source and target.
        scheduled_sampling: in training, the probability of feeding the model's own previous prediction.
        copy: the pointer-generator: copy source words, out-of-vocabulary ones included (word tokenizer).
        coverage: the coverage vector in additive attention, and its loss.
        coverage_weight: the coverage loss's weight in the training objective.
    """

    vocab_size: int = 0
    cell: Literal["lstm", "gru"] = "lstm"
    embed_dim: int = 256
    hidden_dim: int = 256
    encoder_layers: int = 1
    decoder_layers: int = 1
    bidirectional: bool = True
    attention: Literal["none", "additive", "dot", "general"] = "additive"
    attention_dim: int = 256
    input_feeding: bool = True
    dropout: float = 0.2
    tie_embeddings: bool = True
    share_embeddings: bool = True
    scheduled_sampling: float = 0.0
    copy: bool = False
    coverage: bool = False
    coverage_weight: float = 1.0


class Seq2Seq(nn.Module):
    """The attention encoder–decoder; it honours the decoding step contract."""

    conditional = True  # decoding needs a source (``init_state`` context)

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.config = c = config
        target_embed = nn.Embedding(c.vocab_size, c.embed_dim)
        source_embed = target_embed if c.share_embeddings else nn.Embedding(c.vocab_size, c.embed_dim)
        self.encoder = RNNEncoder(source_embed, c.cell, c.hidden_dim, c.encoder_layers, c.bidirectional, c.dropout)
        self.embed = target_embed
        enc_dim = c.hidden_dim * (2 if c.bidirectional else 1)
        self.bridge_h = nn.Linear(enc_dim, c.hidden_dim)
        self.bridge_c = nn.Linear(enc_dim, c.hidden_dim) if c.cell == "lstm" else None
        feed_dim = c.hidden_dim if c.input_feeding else 0
        self.decoder = make_rnn(c.cell, c.embed_dim + feed_dim, c.hidden_dim, c.decoder_layers, c.dropout)
        self.attention = make_attention(c.attention, c.hidden_dim, enc_dim, c.attention_dim, c.coverage)
        self.combine = nn.Linear(c.hidden_dim + enc_dim, c.hidden_dim)  # Luong's attentional layer
        self.drop = nn.Dropout(c.dropout)
        self.pre_output = nn.Linear(c.hidden_dim, c.embed_dim) if c.tie_embeddings else nn.Identity()
        self.output = nn.Linear(c.embed_dim if c.tie_embeddings else c.hidden_dim, c.vocab_size)
        if c.tie_embeddings:
            self.output.weight = self.embed.weight
        self.copy_gate = nn.Linear(enc_dim + c.hidden_dim + c.embed_dim, 1) if c.copy else None

    # Encoding and one decoder step, shared by training and decoding.

    def encode(self, source: Tensor, source_mask: Tensor, source_extended: Tensor | None = None) -> dict[str, Any]:
        """Run the encoder and build the decoder's initial state (a dict of (B, …) tensors)."""
        states, h, c = self.encoder(source, source_mask)
        layers = self.config.decoder_layers
        h0 = torch.tanh(self.bridge_h(h))[None].repeat(layers, 1, 1)  # (L, B, H)
        rnn_state: Any = h0
        if self.bridge_c is not None:
            c0 = torch.tanh(self.bridge_c(c if c is not None else h))[None].repeat(layers, 1, 1)
            rnn_state = (h0, c0)
        batch = source.size(0)
        state = {
            "memory": states, "mask": source_mask, "rnn": rnn_state, "summary": h,
            "keys": self.attention.precompute(states) if self.attention is not None else None,
            "feed": states.new_zeros(batch, self.config.hidden_dim),
            "coverage": states.new_zeros(source.shape, dtype=torch.float) if self.config.coverage else None,
            "attention": None, "coverage_loss": None,
            "extended": source_extended if self.config.copy else None,
        }
        return state

    def _decode_step(self, token: Tensor, state: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        """Feed one (B,) token; return (B, V') scores and the new state.

        Scores are logits, or with ``copy`` log-probabilities over the extended
        vocabulary V' = V + source OOVs (log_softmax leaves them unchanged).
        """
        c = self.config
        token = token.masked_fill(token >= c.vocab_size, UNK_ID)  # extended (copied) ids are <unk> as inputs
        emb = self.drop(self.embed(token))  # (B, E)
        x = torch.cat([emb, state["feed"]], -1) if c.input_feeding else emb
        out, rnn_state = self.decoder(x[:, None, :], state["rnn"])
        query = out[:, 0]  # (B, H)
        weights = None
        if self.attention is None:
            context = state["summary"]  # (B, D·H): the one fixed context vector
        else:
            context, weights = self.attention(query, state["memory"], state["mask"], state["keys"], state["coverage"])
        attended = torch.tanh(self.combine(torch.cat([query, context], -1)))  # (B, H)
        logits = self.output(self.pre_output(self.drop(attended)))  # (B, V)
        new = dict(state, rnn=rnn_state, feed=attended, attention=weights)
        if weights is not None and state["coverage"] is not None:
            new["coverage_loss"] = torch.minimum(weights, state["coverage"]).sum(-1)  # (B,)
            new["coverage"] = state["coverage"] + weights
        if self.copy_gate is not None:
            logits = self._copy_distribution(logits, weights, context, query, emb, state["extended"])
        return logits, new

    def _copy_distribution(self, logits: Tensor, weights: Tensor, context: Tensor, query: Tensor, emb: Tensor,
                           extended: Tensor) -> Tensor:
        """Pointer-generator: log(p_gen · P_vocab + (1 − p_gen) · Σ attention on each source word)."""
        p_gen = torch.sigmoid(self.copy_gate(torch.cat([context, query, emb], -1)))  # (B, 1)
        vocab = torch.softmax(logits.float(), -1) * p_gen  # (B, V)
        extra = int(extended.max()) + 1 - logits.size(-1) if extended.numel() else 0
        if extra > 0:
            vocab = torch.cat([vocab, vocab.new_zeros(vocab.size(0), extra)], -1)  # (B, V + OOVs)
        copied = vocab.scatter_add(1, extended, weights.float() * (1 - p_gen))
        return torch.log(copied + EPS)

    # Training.

    def forward(self, batch: Batch) -> tuple[Tensor, Tensor | None, Tensor]:
        """Teacher-forced scores (B, T, V'), summed coverage loss per row (B,) or None, and attention (B, T, S)."""
        state = self.encode(batch.source, batch.source_mask, batch.source_extended)
        steps, coverage, attention = [], [], []
        token = batch.inputs[:, 0]
        for t in range(batch.inputs.size(1)):
            if t > 0:
                token = batch.inputs[:, t]
                if self.training and self.config.scheduled_sampling > 0:
                    own = steps[-1].detach().argmax(-1)  # (B,)
                    use_own = torch.rand(token.shape, device=token.device) < self.config.scheduled_sampling
                    token = torch.where(use_own, own, token)
            scores, state = self._decode_step(token, state)
            steps.append(scores)
            if state["coverage_loss"] is not None:
                coverage.append(state["coverage_loss"])
            if state["attention"] is not None:
                attention.append(state["attention"])
        cov = (torch.stack(coverage, 1) * batch.mask).sum(1) if coverage else None  # (B,)
        attn = torch.stack(attention, 1) if attention else None
        return torch.stack(steps, 1), cov, attn

    def loss(self, batch: Batch, carry: Any = None) -> LossOutput:
        """Mean target-token NLL (+ coverage_weight × mean coverage loss per token)."""
        scores, coverage, _ = self(batch)
        n_tokens = batch.num_tokens
        if self.config.copy:
            targets = batch.targets_extended if batch.targets_extended is not None else batch.targets
            nll = F.nll_loss(scores.flatten(0, 1), targets.masked_fill(~batch.mask, -100).flatten(),
                             ignore_index=-100, reduction="sum") / max(n_tokens, 1)
        else:
            nll = masked_cross_entropy(scores, batch.targets, batch.mask)
        stats = {}
        loss = nll
        if coverage is not None:
            coverage_mean = coverage.sum() / max(n_tokens, 1)
            loss = nll + self.config.coverage_weight * coverage_mean
            stats["coverage_loss"] = float(coverage.detach().sum())
            stats["nll"] = float(nll.detach()) * n_tokens
        return LossOutput(loss=loss, n_tokens=n_tokens, stats=stats)

    # The decoding step contract.

    def init_state(self, batch_size: int, context: Any = None) -> dict[str, Any]:
        """``context``: a dict with ``source`` (B, S), ``source_mask`` (B, S), optional ``source_extended``."""
        if context is None:
            raise UserError("a seq2seq model needs a source to decode from.")
        return self.encode(context["source"], context["source_mask"], context.get("source_extended"))

    def step(self, tokens: Tensor, state: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        """(B, T) new tokens → (B, V') scores for the next one."""
        scores = None
        for t in range(tokens.size(1)):
            scores, state = self._decode_step(tokens[:, t], state)
        return scores, state

    def reorder_state(self, state: dict[str, Any], index: Tensor) -> dict[str, Any]:
        def select(key: str, value: Any) -> Any:
            if key == "rnn":
                return map_state(value, lambda s: s.index_select(1, index))
            return value.index_select(0, index) if isinstance(value, Tensor) else value

        return {key: select(key, value) for key, value in state.items()}

    def merge_states(self, states: list[dict[str, Any]]) -> dict[str, Any]:
        """Several batches' states as one batch, rows in order: per-source tensors right-padded to the longest
        source (masked there, so attention, coverage and copying never reach the padding)."""
        def join(key: str) -> Any:
            values = [s[key] for s in states]
            if values[0] is None:
                return None
            if key == "rnn":
                return join_rnn_states(values)
            return cat_padded(values, dim=1) if key in PER_SOURCE else torch.cat(values)

        return {key: join(key) for key in states[0]}

    def attention_weights(self, state: dict[str, Any]) -> Tensor | None:
        """(B, S) attention of the step that produced the latest scores, for plots and the caller."""
        return state["attention"]

    @property
    def max_context(self) -> int | None:
        return None


# The decoder state's entries that run along the source (B, S, …): padded when batches join.
PER_SOURCE = ("memory", "mask", "keys", "coverage", "attention", "extended")


def check_config(config: Seq2SeqConfig) -> None:
    require_at_least(config, ("embed_dim", "hidden_dim", "encoder_layers", "decoder_layers", "attention_dim"))
    require_fraction(config, ("dropout",))
    if not 0.0 <= config.scheduled_sampling <= 1.0:
        raise UserError(f"config key 'model.scheduled_sampling' must lie in [0, 1], got {config.scheduled_sampling}.")
    enc_dim = config.hidden_dim * (2 if config.bidirectional else 1)
    if config.attention == "dot" and enc_dim != config.hidden_dim:
        raise UserError(f"dot attention needs encoder states ({enc_dim}) as wide as the decoder ({config.hidden_dim}); "
                        "use attention: general, or bidirectional: false.")
    if (config.copy or config.coverage) and config.attention == "none":
        raise UserError("copy and coverage need attention; set model.attention to additive, dot or general.")
    if config.coverage and config.attention != "additive":
        raise UserError("coverage is defined for additive attention; set model.attention: additive.")


def build(config: Seq2SeqConfig) -> Seq2Seq:
    check_config(config)
    if config.vocab_size < 1:
        raise UserError("the seq2seq model needs model.vocab_size ≥ 1; it is normally taken from the tokenizer.")
    return Seq2Seq(config)


CONFIG = Seq2SeqConfig
BATCHING = None  # trains on any data.batching
MASK_TOKEN = False
