"""Recurrent layers and what every recurrent family shares: the packed encoder, state reorder."""

from __future__ import annotations

from typing import Union

import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

# nn.LSTM state is (h, c), each (layers * directions, B, H); nn.GRU state is h alone.
RNNState = Union[Tensor, tuple[Tensor, Tensor]]

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


def make_rnn(cell: str, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
             bidirectional: bool = False) -> nn.RNNBase:
    """A batch-first LSTM or GRU; ``dropout`` applies between layers (PyTorch's convention)."""
    if cell not in CELLS:
        raise ValueError(f"unknown RNN cell '{cell}'; expected one of {', '.join(CELLS)}")
    return CELLS[cell](input_size, hidden_size, num_layers=num_layers, batch_first=True,
                       dropout=dropout if num_layers > 1 else 0.0, bidirectional=bidirectional)


def run_rnn(rnn: nn.RNNBase, x: Tensor, state: RNNState | None, weight_drop: float = 0.0) -> tuple[Tensor, RNNState]:
    """``rnn(x, state)``, with DropConnect on its hidden-to-hidden weights while training when ``weight_drop`` > 0
    (Wan et al. 2013; the weight drop of Merity et al.'s AWD-LSTM): one mask per batch, the same at every time
    step, so the recurrence itself is regularised, which dropout on the inputs and outputs leaves alone."""
    if weight_drop <= 0 or not rnn.training:
        return rnn(x, state)
    weights = dict(rnn.named_parameters())
    for name in [n for n in weights if n.startswith("weight_hh")]:
        weights[name] = F.dropout(weights[name], weight_drop, training=True)
    return functional_call(rnn, weights, (x, state))


def output_head(hidden_size: int, embed_size: int, vocab_size: int, tie: bool) -> tuple[nn.Module, nn.Linear]:
    """Hidden state → logits: a projection to ``embed_size`` when the output layer is to share an embedding of
    another width (Press & Wolf 2017), else the identity, then the output layer. The caller ties
    ``output.weight`` to its embedding after any re-initialisation (``init_and_tie``)."""
    project = nn.Linear(hidden_size, embed_size) if tie and hidden_size != embed_size else nn.Identity()
    return project, nn.Linear(embed_size if tie else hidden_size, vocab_size)


def init_and_tie(model: nn.Module, init_range: float, embed: nn.Embedding, output: nn.Linear, tie: bool) -> None:
    """Initialise every parameter of ``model`` uniformly in [-init_range, init_range] when ``init_range`` > 0
    (Zaremba et al. 2014; 0 keeps PyTorch's defaults), then, when ``tie``, make ``output`` share ``embed``'s
    weight (Press & Wolf 2017)."""
    if init_range > 0:
        for param in model.parameters():
            nn.init.uniform_(param, -init_range, init_range)
    if tie:
        output.weight = embed.weight


def map_state(state: RNNState | None, fn) -> RNNState | None:
    """Apply ``fn`` to each tensor of an LSTM or GRU state."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(fn(s) for s in state)
    return fn(state)


def reorder_state(state: RNNState | None, index: Tensor) -> RNNState | None:
    """Select batch rows ``index`` (B',) of a state whose batch dimension is 1."""
    return map_state(state, lambda s: s.index_select(1, index))


class RNNEncoder(nn.Module):
    """Embeddings → (bi)RNN over packed sequences; padding is never read."""

    def __init__(self, embed: nn.Embedding, cell: str, hidden_dim: int, layers: int, bidirectional: bool, dropout: float):
        super().__init__()
        self.embed = embed
        self.drop = nn.Dropout(dropout)
        self.rnn = make_rnn(cell, embed.embedding_dim, hidden_dim, layers, dropout, bidirectional)
        self.layers, self.directions = layers, 2 if bidirectional else 1

    def forward(self, source: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """source (B, S), mask (B, S) → states (B, S, D·H), final h (B, D·H), final c (B, D·H) or None."""
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = pack_padded_sequence(self.drop(self.embed(source)), lengths, batch_first=True, enforce_sorted=False)
        out, final = self.rnn(packed)
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=source.size(1))  # (B, S, D·H)
        h, c = final if isinstance(final, tuple) else (final, None)

        def top(x: Tensor) -> Tensor:  # (L·D, B, H) → (B, D·H), the last layer's directions side by side
            return x.view(self.layers, self.directions, x.size(1), x.size(2))[-1].transpose(0, 1).flatten(1)

        return states, top(h), None if c is None else top(c)
