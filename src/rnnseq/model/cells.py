"""Step-by-step execution of an ``nn.RNN/LSTM/GRU`` with its own weights, for decoders that must
step (input feeding, Bahdanau attention).

Calling ``nn.LSTM`` once per time step wastes work: the embedding part of the first layer's input
projection can be computed for all time steps in one large matrix multiply, and each step then
needs only one multiply per layer for the rest (``[extra; h] @ [W_extra; W_hh]^T``). This module
does that with the module's own parameters, so checkpoints, the batched path and this stepped
path share one set of weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .rnn import State


class SteppedRNN:
    """Runs ``rnn`` (batch_first, unidirectional) one step at a time.

    Args:
        rnn: the module that owns the weights.
        lead_size: how many leading input features are known for all steps up front (the
            embeddings); the remaining input features (``extra``) arrive step by step.
    """

    def __init__(self, rnn: nn.RNNBase, lead_size: int) -> None:
        self.rnn = rnn
        self.mode = rnn.mode  # 'LSTM', 'GRU', 'RNN_TANH'
        self.lead = lead_size
        self.layers = rnn.num_layers

    def _w(self, name: str, layer: int) -> torch.Tensor:
        return getattr(self.rnn, f"{name}_l{layer}")

    def precompute(self, lead: torch.Tensor) -> torch.Tensor:
        """``lead (B, T, lead_size)`` -> first-layer input projection ``(B, T, G)`` incl. bias."""
        w = self._w("weight_ih", 0)[:, : self.lead]
        bias = self._w("bias_ih", 0)
        if self.mode != "GRU":  # GRU keeps b_hh apart (it is gated by r)
            bias = bias + self._w("bias_hh", 0)
        return F.linear(lead, w, bias)

    def weights(self, dtype: torch.dtype | None = None, int8: bool = False) -> list[tuple]:
        """Per layer: (W over [extra; h] or [x; h], b_hh for GRU, W_hh for GRU) built once per
        forward pass, so each step does one multiply per layer.

        ``dtype`` casts the matrices once (for autocast decoding, which would otherwise cast
        them at every step); ``int8`` packs them for dynamic int8 multiplies (CPU decoding).
        """
        out = []
        for layer in range(self.layers):
            w_ih = self._w("weight_ih", layer)
            if layer == 0:
                w_ih = w_ih[:, self.lead :]
            w_hh = self._w("weight_hh", layer)
            if self.mode == "GRU":
                out.append((_prepare(w_ih, dtype, int8), self._w("bias_hh", layer),
                            _prepare(w_hh, dtype, int8)))
            else:
                out.append((_prepare(torch.cat([w_ih, w_hh], dim=1), dtype, int8), None, None))
        return out

    def step(
        self, pre: torch.Tensor, extra: torch.Tensor | None, state: State, weights, training: bool,
    ) -> tuple[torch.Tensor, State]:
        """One step: ``pre (B, G)`` (from :meth:`precompute`) and ``extra (B, X)`` -> the top
        layer's output ``(B, H)`` and the new state."""
        if self.mode == "LSTM":
            h_all, c_all = state
        else:
            h_all, c_all = state, None
        new_h, new_c = [], []
        x = extra
        for layer, (w, b_hh, w_hh) in enumerate(weights):
            h = h_all[layer]
            if layer == 0:
                base = pre
            else:
                bias = self._w("bias_ih", layer)
                base = bias if self.mode == "GRU" else bias + self._w("bias_hh", layer)
            if self.mode == "GRU":
                gi = base if x is None else base + _matmul(x, w)
                gh = _matmul(h, w_hh) + b_hh
                i_r, i_z, i_n = gi.chunk(3, dim=-1)
                h_r, h_z, h_n = gh.chunk(3, dim=-1)
                r = torch.sigmoid(i_r + h_r)
                z = torch.sigmoid(i_z + h_z)
                n = torch.tanh(i_n + r * h_n)
                out = n + z * (h - n)
            else:
                inp = h if x is None else torch.cat([x, h], dim=-1)
                gates = (torch.addmm(base, inp, w.t()) if isinstance(w, torch.Tensor)
                         else base + _matmul(inp, w))
                if self.mode == "LSTM":
                    i, f, g, o = gates.chunk(4, dim=-1)
                    c = torch.sigmoid(f) * c_all[layer] + torch.sigmoid(i) * torch.tanh(g)
                    out = torch.sigmoid(o) * torch.tanh(c)
                    new_c.append(c)
                else:
                    out = torch.tanh(gates)
            new_h.append(out)
            x = out
            if training and self.rnn.dropout and layer < self.layers - 1:
                x = F.dropout(x, self.rnn.dropout, training=True)
        h_stack = torch.stack(new_h)
        if self.mode == "LSTM":
            return new_h[-1], (h_stack, torch.stack(new_c))
        return new_h[-1], h_stack


def _prepare(w: torch.Tensor, dtype: torch.dtype | None, int8: bool):
    """A step matrix as the step will use it: as is, cast once, or packed as int8."""
    if int8:
        from ..inference.quantize import pack_int8

        return pack_int8(w)
    return w.to(dtype) if dtype is not None else w


def _matmul(x: torch.Tensor, w) -> torch.Tensor:
    """``x @ w.T`` for a float matrix or an int8-packed one."""
    if isinstance(w, torch.Tensor):
        return F.linear(x, w)
    return torch.ops.quantized.linear_dynamic(x.float(), w, True)
