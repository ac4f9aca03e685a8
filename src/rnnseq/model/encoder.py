"""Encoder: embeddings + (bi)directional multi-layer RNN/LSTM/GRU.

Decoding, and training on short sources, run ``nn.LSTM/GRU/RNN`` over packed sequences.
Training on long sources of different lengths steps through the sequence itself
(:func:`masked_recurrence`): PyTorch's CPU backward of a packed RNN whose rows end at different
steps writes a buffer the size of the whole batch at every step, which is quadratic in the
length (a 2×128 bidirectional LSTM, 16 sources of 150–257 tokens: 520 ms forward and backward
packed, 180 ms stepped; at 13 tokens packed is 15 % faster, and with equal lengths packed stays
fast). ``MASKED_FROM`` is where stepping starts to pay; ``benchmarks/long_inputs.py`` measures
both. They compute the same numbers; ``tests/test_model.py`` checks that for every cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .dropout import Dropout, dropout
from .rnn import DropoutRates, State, make_rnn, map_state

# Training steps the encoder itself (masked_recurrence) from this many source tokens, when the
# rows' lengths differ: below it the packed nn.LSTM is as fast or faster.
MASKED_FROM = 40


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
        self.embedding_dropout = Dropout(dropout.embedding)
        self.output_dropout = Dropout(dropout.output)
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
        if (torch.is_grad_enabled() and isinstance(self.rnn, nn.RNNBase)
                and width >= MASKED_FROM and bool((src_lengths < width).any())):
            memory, state = masked_recurrence(self.rnn, emb, src_lengths.to(src.device), mask)
        else:
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


def masked_recurrence(rnn: nn.RNNBase, x: torch.Tensor, lengths: torch.Tensor,
                      mask: torch.Tensor) -> tuple[torch.Tensor, State]:
    """What ``rnn`` (batch_first) computes over packed sequences, stepped here with masks.

    ``x (B, T, E)``, ``lengths (B,)``, ``mask (B, T)`` -> outputs ``(B, T, dirs*H)`` (zero at
    padding) and the final state ``(layers*dirs, B, H)`` (a pair for LSTM), as ``nn.LSTM``
    returns them. Each row of the reverse direction is read backwards within its own length,
    so both directions meet real tokens first and padding last; a state stops changing after
    its row's last token, so the final state is the one after that token. The input
    projections run once per layer for all steps, both directions step together (one batched
    multiply per step), and the steps are taken from ``unbind`` so that the backward pass stays
    linear in the length.
    """
    mode, dirs = rnn.mode, 2 if rnn.bidirectional else 1
    batch, width, _ = x.shape
    steps = torch.arange(width, device=x.device)[None, :]
    back = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
    reverse = lambda y: y.gather(1, back[..., None].expand_as(y))  # noqa: E731
    keep = mask.T[:, None, :, None]  # (T, 1, B, 1)
    finals_h, finals_c = [], []
    for layer in range(rnn.num_layers):
        def w(name: str, layer: int = layer) -> list[torch.Tensor]:
            return [getattr(rnn, f"{name}_l{layer}{s}") for s in ("", "_reverse")[:dirs]]

        b_ih, b_hh = w("bias_ih"), w("bias_hh")
        pre = [F.linear(x, w_ih, b if mode == "GRU" else b + bh)
               for w_ih, b, bh in zip(w("weight_ih"), b_ih, b_hh, strict=True)]
        if dirs == 2:
            pre[1] = reverse(pre[1])
        w_hh = torch.stack(w("weight_hh")).transpose(1, 2)  # (dirs, H, G)
        gru_bias = torch.stack(b_hh)[:, None, :] if mode == "GRU" else None
        h = x.new_zeros(dirs, batch, rnn.hidden_size)
        c = h if mode == "LSTM" else None
        outputs = []
        for t, gi in enumerate(torch.stack(pre).unbind(2)):  # gi (dirs, B, G)
            new_h, new_c = _cell(mode, gi, h, c, w_hh, gru_bias)
            real = keep[t]
            h = torch.where(real, new_h, h)
            if c is not None:
                c = torch.where(real, new_c, c)
            outputs.append(new_h * real)
        out = torch.stack(outputs, dim=2)  # (dirs, B, T, H)
        x = out[0] if dirs == 1 else torch.cat([out[0], reverse(out[1])], dim=-1)
        if rnn.dropout and rnn.training and layer < rnn.num_layers - 1:
            x = dropout(x, rnn.dropout)
        finals_h.append(h)
        if c is not None:
            finals_c.append(c)
    h_n = torch.cat(finals_h)  # (layers*dirs, B, H), layer-major as nn.RNNBase returns it
    return x, ((h_n, torch.cat(finals_c)) if mode == "LSTM" else h_n)


def _cell(mode: str, gi, h, c, w_hh, gru_bias):
    """One update of ``dirs`` stacked cells: input part ``gi (dirs, B, G)`` (biases included,
    except a GRU's recurrent bias ``gru_bias``), state ``h``/``c (dirs, B, H)``."""
    gh = torch.bmm(h, w_hh)
    if mode == "LSTM":
        i, f, g, o = (gi + gh).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    if mode == "GRU":
        i_r, i_z, i_n = gi.chunk(3, dim=-1)
        h_r, h_z, h_n = (gh + gru_bias).chunk(3, dim=-1)
        r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return n + z * (h - n), None
    return torch.tanh(gi + gh), None
