"""Encoder: embeddings + (bi)directional multi-layer RNN/LSTM/GRU over packed sequences."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .rnn import DropoutRates, State, make_rnn, map_state


@dataclass
class EncoderOutput:
    """``memory (B, S, H)``, ``mask (B, S)`` (True on real tokens) and ``state``.

    ``state`` is the final state with directions merged per layer: ``(layers, B, H)`` (a pair for
    LSTM), where ``H`` is the encoder's output size.
    """

    memory: torch.Tensor
    mask: torch.Tensor
    state: State

    def index_select(self, index: torch.Tensor) -> EncoderOutput:
        return EncoderOutput(
            self.memory.index_select(0, index),
            self.mask.index_select(0, index),
            map_state(self.state, lambda s: s.index_select(1, index)),
        )


class Encoder(nn.Module):
    """Embed and encode a padded source batch.

    Args:
        embedding: token embedding ``(V, E)``; may be shared with the decoder.
        cell: ``rnn``, ``lstm`` or ``gru``.
        hidden_size: output size ``H`` (each direction has ``H/2`` when bidirectional).
    """

    def __init__(
        self, embedding: nn.Embedding, cell: str, hidden_size: int, layers: int,
        dropout: DropoutRates, bidirectional: bool,
    ) -> None:
        super().__init__()
        self.embedding = embedding
        self.bidirectional = bidirectional
        self.layers = layers
        self.output_size = hidden_size
        per_dir = hidden_size // 2 if bidirectional else hidden_size
        self.embedding_dropout = nn.Dropout(dropout.embedding)
        self.output_dropout = nn.Dropout(dropout.output)
        self.rnn = make_rnn(cell, embedding.embedding_dim, per_dir, layers, dropout.rnn,
                            bidirectional)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor) -> EncoderOutput:
        """``src (B, S)`` token ids, ``src_lengths (B,)`` -> :class:`EncoderOutput`.

        Rows of length 0 (empty sentences) are allowed: their memory is all zeros and fully
        masked, and their state is the zero state.
        """
        batch, width = src.shape
        mask = torch.arange(width, device=src.device)[None, :] < src_lengths.to(src.device)[:, None]
        emb = self.embedding_dropout(self.embedding(src))
        lengths = src_lengths.clamp(min=1).cpu()
        packed = pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=width)
        state = map_state(state, self._merge_directions)
        empty = src_lengths.to(src.device) == 0
        if bool(empty.any()):
            memory = memory.masked_fill(empty[:, None, None], 0.0)
            state = map_state(state, lambda s: s.masked_fill(empty[None, :, None], 0.0))
        return EncoderOutput(self.output_dropout(memory), mask, state)

    def _merge_directions(self, s: torch.Tensor) -> torch.Tensor:
        """``(layers*dirs, B, h)`` -> ``(layers, B, dirs*h)``."""
        if not self.bidirectional:
            return s
        layers2, batch, h = s.shape
        return s.view(self.layers, 2, batch, h).transpose(1, 2).reshape(self.layers, batch, 2 * h)
