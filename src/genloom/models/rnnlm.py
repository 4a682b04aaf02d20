"""The recurrent language model: embeddings → LSTM/GRU layers → softmax over the vocabulary.

Zaremba et al. 2014 ("Recurrent Neural Network Regularization") is the reference
recipe; ``configs/rnnlm_ptb_small.yaml`` is its small model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor, nn

from genloom.config import require_at_least, require_fraction
from genloom.data.batching import Batch
from genloom.errors import UserError
from genloom.nn.losses import LossOutput, masked_cross_entropy
from genloom.nn.rnn import RNNState, init_and_tie, make_rnn, output_head, reorder_state, run_rnn
from genloom.nn.state import join_rnn_states


@dataclass
class RNNLMConfig:
    """The RNN LM's shape. ``vocab_size`` is filled in from the tokenizer.

    ``tie_embeddings`` shares the input embedding with the output layer (Press &
    Wolf 2017); when ``hidden_dim`` differs from ``embed_dim`` a projection maps
    the hidden state to the embedding size first. ``init_range`` > 0 initialises
    every weight uniformly in [-init_range, init_range] (Zaremba et al.).
    ``dropout`` applies to the embeddings, between layers and to the top layer's
    outputs; ``weight_drop`` is DropConnect on the hidden-to-hidden weights in
    training (Merity et al. 2018), one mask per batch shared by every time step.

    Attributes:
        vocab_size: set from the tokenizer.
        cell: the recurrent cell: lstm or gru.
        embed_dim: the token embedding's size.
        hidden_dim: the recurrent state's size.
        num_layers: stacked recurrent layers.
        dropout: dropout on embeddings, between layers and on the top layer's outputs.
        weight_drop: DropConnect on the hidden-to-hidden weights in training (0: off).
        tie_embeddings: share the input embedding with the output layer.
        init_range: initialise every weight uniformly in ±init_range (0: PyTorch's defaults).
    """

    vocab_size: int = 0
    cell: Literal["lstm", "gru"] = "lstm"
    embed_dim: int = 200
    hidden_dim: int = 200
    num_layers: int = 2
    dropout: float = 0.0
    weight_drop: float = 0.0
    tie_embeddings: bool = False
    init_range: float = 0.1


class RNNLM(nn.Module):
    """An LSTM/GRU language model that honours the decoding step contract."""

    conditional = False

    def __init__(self, config: RNNLMConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim)
        self.drop = nn.Dropout(config.dropout)
        self.rnn = make_rnn(config.cell, config.embed_dim, config.hidden_dim, config.num_layers, config.dropout)
        self.project, self.output = output_head(config.hidden_dim, config.embed_dim, config.vocab_size,
                                                config.tie_embeddings)
        init_and_tie(self, config.init_range, self.embed, self.output, config.tie_embeddings)

    def forward(self, tokens: Tensor, state: RNNState | None = None) -> tuple[Tensor, RNNState]:
        """Logits for every position.

        Args:
            tokens: (B, T) token ids.
            state: the recurrent state to start from; None starts from zeros.

        Returns:
            logits (B, T, V) and the state after the last position.
        """
        x = self.drop(self.embed(tokens))  # (B, T, E)
        hidden, state = run_rnn(self.rnn, x, state, self.config.weight_drop)  # (B, T, H)
        logits = self.output(self.project(self.drop(hidden)))  # (B, T, V)
        return logits, state

    def loss(self, batch: Batch, carry: RNNState | None = None) -> LossOutput:
        """Mean token cross-entropy of ``batch``; ``carry`` is the state from the previous window."""
        logits, state = self(batch.inputs, carry if batch.continues else None)
        return LossOutput(loss=masked_cross_entropy(logits, batch.targets, batch.mask), n_tokens=batch.num_tokens,
                          carry=state)

    # The decoding step contract (see genloom.decoding.generate.StepModel).

    def init_state(self, batch_size: int, context: Any = None) -> RNNState | None:
        return None

    def step(self, tokens: Tensor, state: RNNState | None) -> tuple[Tensor, RNNState]:
        """(B, T) new tokens → logits (B, V) at the last one, and the advanced state."""
        logits, state = self(tokens, state)
        return logits[:, -1], state

    def reorder_state(self, state: RNNState | None, index: Tensor) -> RNNState | None:
        return reorder_state(state, index)

    def merge_states(self, states: list[RNNState]) -> RNNState:
        return join_rnn_states(states)

    @property
    def max_context(self) -> int | None:
        return None


def check_config(config: RNNLMConfig) -> None:
    """Invariants with messages that say what was expected and what was given."""
    require_at_least(config, ("embed_dim", "hidden_dim", "num_layers"))
    require_fraction(config, ("dropout", "weight_drop"))
    require_at_least(config, ("init_range",), minimum=0)


def flops_per_token(config: RNNLMConfig, position: int = 0, source_length: int = 0) -> int:
    """Forward FLOPs of one token (any ``position``: a recurrent step costs the same everywhere; no source).

    2 per multiply-add: each layer's gates, G · H · (input + H) multiply-adds with G = 4 (LSTM) or 3 (GRU); the
    projection to the embedding width when a tied output layer needs one; the output layer. Biases and the gates'
    elementwise products are left out, as ``torch.utils.flop_counter`` leaves them out.
    """
    gates = 4 if config.cell == "lstm" else 3
    hidden, embed = config.hidden_dim, config.embed_dim
    recurrent = sum(gates * hidden * ((embed if layer == 0 else hidden) + hidden) for layer in range(config.num_layers))
    tied_width = embed if config.tie_embeddings else hidden
    projection = hidden * embed if config.tie_embeddings and hidden != embed else 0
    return 2 * (recurrent + projection + tied_width * config.vocab_size)


def build(config: RNNLMConfig) -> RNNLM:
    check_config(config)
    if config.vocab_size < 1:
        raise UserError("the RNN LM needs model.vocab_size ≥ 1; it is normally taken from the tokenizer.")
    return RNNLM(config)


CONFIG = RNNLMConfig
BATCHING = None  # trains on any data.batching
MASK_TOKEN = False
