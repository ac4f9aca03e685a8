"""Step-by-step execution of an ``nn.RNN/LSTM/GRU`` with its own weights, for decoders that must
step (input feeding, Bahdanau attention).

Calling ``nn.LSTM`` once per time step wastes work: the embedding part of the first layer's input
projection can be computed for all time steps in one large matrix multiply, and each step then
needs only one multiply per layer for the rest (``[extra; h] @ [W_extra; W_hh]^T``). This module
does that with the module's own parameters, so checkpoints, the batched path and this stepped
path share one set of weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..precision import autocast_dtype
from .dropout import dropout
from .rnn import State


@dataclass(frozen=True)
class Stepper:
    """What decoding steps with (``DecoderState.stepper``; the same for every row): the
    :class:`SteppedRNN`, the first layer's input bias (its embedding part is a step input, so
    only the bias is precomputed), the per-layer step matrices from :meth:`SteppedRNN.weights`
    and, when inference prepared them, the combination and output layers as callables
    (``x (B, *) -> x @ W.T (+ b)``; None: the decoder's own modules)."""

    rnn: SteppedRNN
    bias: torch.Tensor
    weights: list
    combine: Callable[[torch.Tensor], torch.Tensor] | None = None
    out: Callable[[torch.Tensor], torch.Tensor] | None = None

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One decoding step on the full input ``x (B, X)``."""
        return self.rnn.step(self.bias, x, state, self.weights, training=False)


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

    def weights(self, dtype: torch.dtype | None = None,
                pack: Callable[[torch.Tensor], Any] | None = None,
                defer_grad: bool = False) -> list[tuple]:
        """Per layer: (W over [extra; h] or [x; h], b_hh for GRU, W_hh for GRU) built once per
        forward pass, so each step does one multiply per layer.

        ``dtype`` casts the matrices once (for autocast decoding, which would otherwise cast
        them at every step); ``pack`` turns each into another form, called as ``w(x)`` for
        ``x @ W.T`` (decoding: the torch backend passes ``rnnseq.inference.packed.MklMatrix`` or
        ``rnnseq.inference.quantize.Int8Matrix``; the model never imports them).
        ``defer_grad`` (training) wraps each matrix in a :class:`StepWeight`: cast once per
        forward pass under autocast, and its gradient computed in one multiply over all steps.
        """
        def prepare(w: torch.Tensor):
            if defer_grad:
                return StepWeight(w)
            if pack is not None:
                return pack(w)
            return w.to(dtype) if dtype is not None else w

        out = []
        for layer in range(self.layers):
            w_ih = self._w("weight_ih", layer)
            if layer == 0:
                w_ih = w_ih[:, self.lead :]
            w_hh = self._w("weight_hh", layer)
            if self.mode == "GRU":
                out.append((prepare(w_ih), self._w("bias_hh", layer), prepare(w_hh)))
            else:
                out.append((prepare(torch.cat([w_ih, w_hh], dim=1)), None, None))
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
                x = dropout(x, self.rnn.dropout)
        h_stack = torch.stack(new_h)
        if self.mode == "LSTM":
            return new_h[-1], (h_stack, torch.stack(new_c))
        return new_h[-1], h_stack


def _matmul(x: torch.Tensor, w) -> torch.Tensor:
    """``x @ w.T`` for a float matrix, or for a matrix in another form that multiplies itself
    when called (a :class:`StepWeight`, or what a ``pack`` function of :meth:`SteppedRNN.weights`
    made, such as inference's int8 matrices)."""
    if isinstance(w, torch.Tensor):
        return F.linear(x, w)
    return w(x)


class StepWeight:
    """A step matrix ``W (G, K)`` used once per time step of a training forward pass.

    Autograd would compute ``dW`` at every step (a ``(G, B) @ (B, K)`` multiply with a short
    inner dimension) and add it into a ``(G, K)`` buffer. Here each step's backward only keeps
    its input and output gradient, and the backward of the first step, which autograd runs
    last because every later step depends on it, computes ``dW`` for all steps in one
    ``(G, T*B) @ (T*B, K)`` multiply. Under autocast the matrix is cast once per forward pass
    instead of at every step.
    """

    def __init__(self, w: torch.Tensor) -> None:
        self.w = w
        self.cast: torch.Tensor | None = None
        self.saved: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        first = self.cast is None
        if first:
            dtype = autocast_dtype(x.device.type) or self.w.dtype
            self.cast = self.w.detach().to(dtype)
        return _DeferredMatmul.apply(x, self.w, self, first)


class _DeferredMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, holder: StepWeight, first: bool):
        xc = x.to(holder.cast.dtype)
        ctx.holder, ctx.first, ctx.x_dtype = holder, first, x.dtype
        ctx.save_for_backward(xc)
        return xc @ holder.cast.t()

    @staticmethod
    def backward(ctx, grad):
        (xc,) = ctx.saved_tensors
        holder = ctx.holder
        grad = grad.to(holder.cast.dtype)
        grad_x = (grad @ holder.cast).to(ctx.x_dtype) if ctx.needs_input_grad[0] else None
        grad_w = None
        if ctx.needs_input_grad[1]:
            holder.saved.append((xc, grad))
            if ctx.first:  # the last step backward runs: every step's gradient is in
                xs = torch.cat([s[0] for s in holder.saved])
                grads = torch.cat([s[1] for s in holder.saved])
                holder.saved.clear()
                grad_w = (grads.t() @ xs).to(holder.w.dtype)
        return grad_x, grad_w, None, None
