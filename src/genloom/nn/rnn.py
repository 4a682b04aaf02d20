"""Recurrent layers and the helpers every recurrent family shares (state reorder, detach)."""

from __future__ import annotations

from typing import Union

from torch import Tensor, nn

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
