"""Small helpers shared by encoder and decoder: building cells and handling their states."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

# An RNN/GRU state is one tensor ``(layers, B, H)``; an LSTM state is a pair ``(h, c)``.
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]

_CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class DropoutRates(NamedTuple):
    """Where dropout applies (Zaremba et al. 2014 drop non-recurrent connections only):
    ``embedding`` on token embeddings, ``rnn`` between stacked RNN layers, ``output`` on the
    encoder's outputs (the attention memory) and on the decoder's vectors before the output
    layer."""

    embedding: float
    rnn: float
    output: float


def make_rnn(
    cell: str, input_size: int, hidden_size: int, layers: int, dropout: float,
    bidirectional: bool = False,
) -> nn.RNNBase:
    kwargs = {"nonlinearity": "tanh"} if cell == "rnn" else {}
    return _CELLS[cell](
        input_size, hidden_size, num_layers=layers, batch_first=True,
        dropout=dropout if layers > 1 else 0.0, bidirectional=bidirectional, **kwargs,
    )


def map_state(state: State, fn) -> State:
    """Apply ``fn`` to each tensor of a state (both h and c for an LSTM)."""
    if isinstance(state, tuple):
        return tuple(fn(s) for s in state)  # type: ignore[return-value]
    return fn(state)


def top_hidden(state: State) -> torch.Tensor:
    """The last layer's hidden vector ``(B, H)``."""
    h = state[0] if isinstance(state, tuple) else state
    return h[-1]
