"""Decoder: an RNN/LSTM/GRU language model over the target, conditioned on the encoder.

One step, for Luong attention (``luong_*``)::

    x_t = [emb(y_{t-1}); o_{t-1} if input feeding]
    h_t = RNN(x_t, h_{t-1});  c_t = attend(h_t);  o_t = tanh(W [h_t; c_t])

for Bahdanau attention the context is computed from the previous state and fed to the RNN::

    c_t = attend(h_{t-1});  h_t = RNN([emb(y_{t-1}); c_t], h_{t-1});  o_t = tanh(W [h_t; c_t])

and without attention (``none``, the fixed-vector model) ``o_t = h_t``: the encoder's final
state, passed through the bridge, is all the decoder knows of the source.
Logits are ``W_out · dropout(o_t)``. With ``copy_attention`` the output distribution mixes them
with the attention (:mod:`rnnseq.model.copy`); with ``coverage`` the attention also sees the
attention paid so far (:mod:`rnnseq.model.attention`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from ..arrays import TorchArrays
from ..data.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from ..precision import autocast_dtype
from .attention import make_attention
from .cells import SteppedRNN, Stepper
from .copy import mixed_log_probs
from .dropout import Dropout
from .encoder import EncoderOutput
from .rnn import DropoutRates, State, make_rnn, map_state, top_hidden


@dataclass
class DecoderState:
    """Everything a decoding step needs; rows are sentences (or beam hypotheses).

    ``hidden``: RNN state ``(layers, B, H)`` (a pair for LSTM); ``feed``: previous attentional
    vector ``(B, H)`` when input feeding; ``memory (B, S, Hm)``, ``keys (B, S, *)`` (attention
    keys, projected once per source) and ``mask (B, S)``. Copy attention adds ``src_map (B, S)``,
    the source positions' ids in the extended vocabulary of ``ext_size`` ids; coverage adds
    ``coverage (B, S)``, the attention each position has received so far (fp32).
    """

    hidden: State
    feed: torch.Tensor | None
    memory: torch.Tensor
    keys: torch.Tensor | None
    mask: torch.Tensor
    stepper: Stepper | None = None  # decoding only; the same for every row
    src_map: torch.Tensor | None = None
    ext_size: int = 0
    coverage: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.mask.shape[0]

    @property
    def arrays(self) -> TorchArrays:
        return TorchArrays(self.mask.device)

    def index_select(self, index: torch.Tensor) -> DecoderState:
        """Reorder/select rows, e.g. to follow beam back-pointers or drop finished sentences."""
        pick = lambda t: None if t is None else t.index_select(0, index)  # noqa: E731
        return DecoderState(
            map_state(self.hidden, lambda s: s.index_select(1, index)),
            pick(self.feed), pick(self.memory), pick(self.keys), pick(self.mask), self.stepper,
            pick(self.src_map), self.ext_size, pick(self.coverage),
        )

    def reorder(self, index: torch.Tensor) -> DecoderState:
        """Like :meth:`index_select` for an ``index`` that maps every row to a row of the same
        source (beam back-pointers within each sentence): the source-side tensors (memory, keys,
        mask, src_map) stay as they are, and only the per-hypothesis state moves."""
        pick = lambda t: None if t is None else t.index_select(0, index)  # noqa: E731
        return DecoderState(
            map_state(self.hidden, lambda s: s.index_select(1, index)), pick(self.feed),
            self.memory, self.keys, self.mask, self.stepper, self.src_map, self.ext_size,
            pick(self.coverage),
        )


class ScheduledInputs(NamedTuple):
    """Scheduled sampling (Bengio et al. 2015, "Scheduled Sampling for Sequence Prediction with
    Recurrent Neural Networks"): ``replace (B, T)`` marks the decoder inputs that are the
    model's own prediction at the previous position instead of the reference token (position
    0, ``<s>``, is never replaced). The prediction is the most probable token, or, with
    ``noise (B, T)`` (uniform draws), a sample from the model's distribution; ``<pad>``, ``<s>``
    and ``</s>`` are never predicted. No gradient flows through the choice."""

    replace: torch.Tensor
    noise: torch.Tensor | None = None


class DecoderOutput(NamedTuple):
    """Teacher-forced decoder output: attentional vectors ``(B, T, H)``, attention weights
    ``(B, T, S)`` (None without attention), the copy gate ``p_gen (B, T)`` (copy attention
    only) and the coverage loss terms ``Σ_i min(a_ti, c_ti)`` ``(B, T)`` (coverage only)."""

    vectors: torch.Tensor
    attention: torch.Tensor | None = None
    p_gen: torch.Tensor | None = None
    coverage_loss: torch.Tensor | None = None


class Bridge(nn.Module):
    """Maps the encoder's final state to the decoder's initial state (``linear|copy|zero``)."""

    def __init__(self, kind: str, enc_size: int, dec_size: int, lstm: bool) -> None:
        super().__init__()
        self.kind = kind
        if kind == "copy" and enc_size != dec_size:
            raise ValueError("bridge 'copy' needs equal encoder and decoder sizes")
        self.dec_size = dec_size
        if kind == "linear":
            self.h = nn.Linear(enc_size, dec_size)
            self.c = nn.Linear(enc_size, dec_size) if lstm else None
        self.lstm = lstm

    def forward(self, state: State) -> State:
        if self.kind == "copy":
            return state
        if self.kind == "zero":
            return map_state(state, lambda s: s.new_zeros(s.shape[:-1] + (self.dec_size,)))
        if isinstance(state, tuple):
            return (torch.tanh(self.h(state[0])), torch.tanh(self.c(state[1])))
        return torch.tanh(self.h(state))


class Decoder(nn.Module):
    def __init__(
        self, embedding: nn.Embedding, cell: str, hidden_size: int, layers: int,
        dropout: DropoutRates,
        attention: str, input_feeding: bool, memory_size: int, bridge: str,
        tie_embeddings: bool = False, copy_attention: bool = False, coverage: bool = False,
    ) -> None:
        super().__init__()
        if (copy_attention or coverage) and attention == "none":
            raise ValueError("copy attention and coverage need an attention type")
        self.embedding = embedding
        self.vocab_size = embedding.num_embeddings
        self.hidden_size = hidden_size
        self.attention_kind = attention
        self.bahdanau = attention == "bahdanau"
        self.input_feeding = input_feeding
        self.copy = copy_attention
        self.coverage = coverage
        emb = embedding.embedding_dim
        rnn_in = emb + (hidden_size if input_feeding else 0) + (memory_size if self.bahdanau else 0)
        self.rnn = make_rnn(cell, rnn_in, hidden_size, layers, dropout.rnn)
        self.attention = make_attention(attention, hidden_size, memory_size, coverage)
        # p_gen = sigmoid(w · [context; h; x] + b) (rnnseq.model.copy)
        self.copy_gate = (nn.Linear(memory_size + hidden_size + emb, 1) if copy_attention
                          else None)
        self.combine = (
            nn.Linear(hidden_size + memory_size, hidden_size, bias=False)
            if self.attention is not None else None
        )
        self.bridge = Bridge(bridge, memory_size, hidden_size, cell == "lstm")
        self.embedding_dropout = Dropout(dropout.embedding)
        self.output_dropout = Dropout(dropout.output)
        self.out = nn.Linear(hidden_size, embedding.num_embeddings)
        if tie_embeddings:
            self.out.weight = embedding.weight

    # -- state ------------------------------------------------------------------------------
    def init_state(self, enc: EncoderOutput, src_map: torch.Tensor | None = None,
                   stepper: Stepper | None = None) -> DecoderState:
        """The state before the first step. A copy-attention decoder needs ``src_map (B, S)``,
        the source tokens' ids in the extended vocabulary (``rnnseq.data.extended``).
        Decoding steps with ``stepper`` (one that inference prepared once for many batches,
        :meth:`inference_stepper`), or one made here for this batch."""
        ext_size = 0
        if self.copy:
            if src_map is None:
                raise ValueError("a copy-attention decoder needs src_map, the source tokens' "
                                 "extended-vocabulary ids")
            src_map = src_map.to(enc.memory.device)
            ext_size = max(self.vocab_size, int(src_map.max()) + 1 if src_map.numel() else 0)
        else:
            src_map = None
        coverage = (enc.memory.new_zeros(enc.mask.shape, dtype=torch.float32) if self.coverage
                    else None)
        hidden, keys = self.begin(enc)
        batch = enc.memory.shape[0]
        feed = enc.memory.new_zeros(batch, self.hidden_size) if self.input_feeding else None
        if self.training:
            stepper = None
        elif stepper is None:
            stepper = self.inference_stepper(autocast_dtype(enc.memory.device.type))
        return DecoderState(hidden, feed, enc.memory, keys, enc.mask, stepper, src_map, ext_size,
                            coverage)

    def begin(self, enc: EncoderOutput) -> tuple[State, torch.Tensor | None]:
        """The first RNN state (the encoder's final state through the bridge) and the
        attention keys ``(B, S, K)``, projected once per source (None without attention)."""
        hidden = map_state(self.bridge(enc.state), lambda s: s.contiguous())
        keys = self.attention.keys(enc.memory) if self.attention is not None else None
        return hidden, keys

    def inference_stepper(self, dtype: torch.dtype | None = None,
                          pack: Callable[..., Any] | None = None) -> Stepper:
        """``DecoderState.stepper`` for decoding: one multiply per layer and step over
        ``[input; h]``, with the weights concatenated once (oneDNN's fused LSTM is slow for one
        step) and cast to ``dtype``. ``pack(W, b=None)`` (from inference, e.g. MKL's packed
        fp32 or int8 matrices) turns each matrix the step multiplies by into a callable
        ``x -> x @ W.T (+ b)``: the RNN's, and the combination and output layers' while they
        are plain ``nn.Linear`` modules."""
        stepped = SteppedRNN(self.rnn, 0)
        weights = stepped.weights(dtype=dtype, pack=pack)
        combine = out = None
        if pack is not None:
            if isinstance(self.combine, nn.Linear):
                combine = pack(self.combine.weight)
            if isinstance(self.out, nn.Linear):
                out = pack(self.out.weight, self.out.bias)
        return Stepper(stepped, stepped.precompute(self.embedding.weight.new_zeros(1, 0)), weights,
                       combine, out)

    # -- one step ---------------------------------------------------------------------------
    def _attend(self, query, state: DecoderState, coverage):
        """``query (B, H)`` -> context ``(B, Hm)`` and weights ``(B, S)``."""
        context, weights = self.attention(query[:, None, :], state.keys, state.memory,
                                          state.mask, coverage)
        return context[:, 0], weights[:, 0]

    def _extra_input(self, hidden, feed, coverage, state: DecoderState):
        """The step's RNN input beyond the embedding: Bahdanau context and/or the fed vector.

        Returns ``(extra (B, X) | None, context (B, Hm) | None, weights (B, S) | None)``.
        """
        parts, context, weights = [], None, None
        if self.bahdanau:
            context, weights = self._attend(top_hidden(hidden), state, coverage)
            parts.append(context)
        if self.input_feeding:
            parts.append(feed)
        extra = torch.cat(parts, dim=-1) if len(parts) > 1 else (parts[0] if parts else None)
        return extra, context, weights

    def _output(self, h, context, weights, coverage, state: DecoderState, combine=None):
        """RNN output ``h (B, H)`` -> attentional vector ``o (B, H)``, weights ``(B, S)`` and
        context ``(B, Hm)``; ``combine`` replaces the combination layer (a prepared one)."""
        if self.attention is None:
            return h, None, None
        if not self.bahdanau:
            context, weights = self._attend(h, state, coverage)
        combine = combine or self.combine
        return torch.tanh(combine(torch.cat([h, context], dim=-1))), weights, context

    def _gate(self, context, h, emb) -> torch.Tensor:
        """``p_gen`` from context, top hidden state and input embedding (``(..., )``)."""
        return torch.sigmoid(self.copy_gate(torch.cat([context, h, emb], dim=-1))).squeeze(-1)

    def step(
        self, prev_tokens: torch.Tensor, state: DecoderState
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor | None]:
        """``prev_tokens (B,)`` -> ``log_probs (B, V)`` (``(B, ext_size)`` with copy attention),
        new state, attention ``(B, S)``."""
        # an id outside the vocabulary (a copied word, also one an ensemble's copy member
        # chose) is read back as <unk>
        prev_tokens = prev_tokens.masked_fill(prev_tokens >= self.vocab_size, UNK_ID)
        emb = self.embedding(prev_tokens)
        extra, context, weights = self._extra_input(state.hidden, state.feed, state.coverage,
                                                    state)
        x = emb if extra is None else torch.cat([emb, extra], dim=-1)
        stepper = state.stepper
        if stepper is not None:
            h, hidden = stepper.step(x, state.hidden)
        else:
            h, hidden = self.rnn(x[:, None, :], state.hidden)
            h = h[:, 0]
        o, weights, context = self._output(h, context, weights, state.coverage, state,
                                           stepper and stepper.combine)
        coverage = None if state.coverage is None else state.coverage + weights.float()
        new = DecoderState(hidden, o if self.input_feeding else None, state.memory, state.keys,
                           state.mask, state.stepper, state.src_map, state.ext_size, coverage)
        out = stepper and stepper.out
        return self._next_log_probs(o, weights, context, h, emb, state, out), new, weights

    def _next_log_probs(self, o, weights, context, h, emb, state: DecoderState,
                        out=None) -> torch.Tensor:
        """A step's output distribution ``(B, V)`` (``(B, ext_size)`` with copy attention) from
        its attentional vector ``o``, attention, context, top hidden state and input
        embedding; ``out`` replaces the output layer (a prepared one)."""
        logits = (out or self.out)(o)
        if self.copy:
            return mixed_log_probs(logits, weights, self._gate(context, h, emb), state.src_map,
                                   state.ext_size, floor=False)
        return torch.log_softmax(logits.float(), dim=-1)

    # -- teacher forcing --------------------------------------------------------------------
    def features(self, tgt_in: torch.Tensor, state: DecoderState,
                 scheduled: ScheduledInputs | None = None) -> DecoderOutput:
        """``tgt_in (B, T)`` -> :class:`DecoderOutput` (attentional vectors ``(B, T, H)``, ...).

        Without input feeding (and for Luong or no attention, without coverage) the whole target
        runs through one RNN call and one batched attention. Otherwise, and always with
        ``scheduled`` inputs, the decoder steps, with the embedding part of the first layer's
        input projection computed for all reference tokens in one multiply (a replaced input's
        is computed at its step, so with nothing replaced the result is teacher forcing's, bit
        for bit).
        """
        emb = self.embedding_dropout(self.embedding(tgt_in))
        if (not self.input_feeding and not self.bahdanau and not self.coverage
                and scheduled is None):
            h, _ = self.rnn(emb, state.hidden)
            if self.attention is None:
                return DecoderOutput(h)
            context, weights = self.attention(h, state.keys, state.memory, state.mask)
            o = torch.tanh(self.combine(torch.cat([h, context], dim=-1)))
            return DecoderOutput(o, weights, self._gate(context, h, emb) if self.copy else None)
        stepped = SteppedRNN(self.rnn, emb.shape[-1])
        pre = stepped.precompute(emb)
        layer_weights = stepped.weights(defer_grad=torch.is_grad_enabled())
        hidden, feed, coverage = state.hidden, state.feed, state.coverage
        outputs, all_weights, gates, cov_losses = [], [], [], []
        previous = None  # step t - 1's (o, weights, context, h, input embedding)
        # unbind, not emb[:, t]: the backward of one unbind stacks all steps' gradients once,
        # where each select's would fill and add a full (B, T, *) buffer
        for t, (emb_t, pre_t) in enumerate(zip(emb.unbind(1), pre.unbind(1), strict=True)):
            if scheduled is not None and t > 0 and bool(scheduled.replace[:, t].any()):
                emb_t, pre_t = self._scheduled_input(scheduled, t, emb_t, pre_t, stepped, state,
                                                     previous)
            extra, context, weights = self._extra_input(hidden, feed, coverage, state)
            h, hidden = stepped.step(pre_t, extra, hidden, layer_weights, self.training)
            o, weights, context = self._output(h, context, weights, coverage, state)
            previous = (o, weights, context, h, emb_t)
            feed = o
            outputs.append(o)
            all_weights.append(weights)
            if self.copy:
                gates.append(self._gate(context, h, emb_t))
            if coverage is not None:  # See et al. eq. 12: sum_i min(a_ti, c_ti)
                cov_losses.append(torch.minimum(weights.float(), coverage).sum(-1))
                coverage = coverage + weights.float()
        stack = lambda xs: torch.stack(xs, dim=1) if xs and xs[0] is not None else None  # noqa: E731
        return DecoderOutput(stack(outputs), stack(all_weights), stack(gates), stack(cov_losses))

    def _scheduled_input(self, scheduled: ScheduledInputs, t: int, emb_t, pre_t, stepped,
                         state: DecoderState, previous):
        """Step ``t``'s input embedding and first-layer projection with the rows that
        ``scheduled.replace[:, t]`` marks taken from the prediction after step ``t - 1``."""
        with torch.no_grad():
            lp = self._next_log_probs(*previous, state)
            lp[:, [PAD_ID, BOS_ID, EOS_ID]] = float("-inf")
            if scheduled.noise is None:
                pred = lp.max(dim=-1).indices  # max: ~3x faster than argmax on CPU
            else:
                cdf = torch.softmax(lp, dim=-1).cumsum(dim=-1)
                u = scheduled.noise[:, t - 1 : t].float() * cdf[:, -1:]
                pred = torch.searchsorted(cdf, u, right=True).squeeze(1)
                pred = pred.clamp_(max=cdf.shape[-1] - 1)
            pred = pred.masked_fill(pred >= self.vocab_size, UNK_ID)  # a copy reads as <unk>
        rows = scheduled.replace[:, t][:, None]
        emb_pred = self.embedding_dropout(self.embedding(pred))
        pre_pred = stepped.precompute(emb_pred[:, None])[:, 0]
        return torch.where(rows, emb_pred, emb_t), torch.where(rows, pre_pred, pre_t)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Attentional vectors ``(..., H)`` -> logits ``(..., V)``."""
        return self.out(self.output_dropout(features))

    def log_probs(self, out: DecoderOutput, state: DecoderState,
                  positions: torch.Tensor | None = None) -> torch.Tensor:
        """Output log-probabilities ``(..., V)`` (``(..., ext_size)`` with copy attention) of
        ``out``, at the ``positions (B, T)`` that are True (all when None), giving ``(N, ...)``;
        the output layer runs there only. Copy models floor probabilities above 0."""
        pick = (lambda x: x) if positions is None else (lambda x: x[positions])  # noqa: E731
        logits = self.project(pick(out.vectors))
        if not self.copy:
            return torch.log_softmax(logits.float(), dim=-1)
        steps = out.vectors.shape[1]
        src_map = pick(state.src_map[:, None, :].expand(-1, steps, -1))
        return mixed_log_probs(logits, pick(out.attention), pick(out.p_gen), src_map,
                               state.ext_size)

    def forward(self, tgt_in: torch.Tensor, enc: EncoderOutput,
                src_map: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher forcing: ``tgt_in (B, T)`` -> log-probabilities ``(B, T, V)`` (or over the
        extended vocabulary, with copy attention)."""
        state = self.init_state(enc, src_map)
        return self.log_probs(self.features(tgt_in, state), state)
