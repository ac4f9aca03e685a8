"""Decoder: an RNN/LSTM/GRU language model over the target, conditioned on the encoder.

One step, for Luong attention (``luong_*``)::

    x_t = [emb(y_{t-1}); o_{t-1} if input feeding]
    h_t = RNN(x_t, h_{t-1});  c_t = attend(h_t);  o_t = tanh(W [h_t; c_t])

for Bahdanau attention the context is computed from the previous state and fed to the RNN::

    c_t = attend(h_{t-1});  h_t = RNN([emb(y_{t-1}); c_t], h_{t-1});  o_t = tanh(W [h_t; c_t])

and without attention (``none``, the fixed-vector model) ``o_t = h_t``: the encoder's final
state, passed through the bridge, is all the decoder knows of the source.
Logits are ``W_out · dropout(o_t)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..precision import autocast_dtype
from .attention import make_attention
from .cells import SteppedRNN
from .encoder import EncoderOutput
from .rnn import DropoutRates, State, make_rnn, map_state, top_hidden


@dataclass
class DecoderState:
    """Everything a decoding step needs; rows are sentences (or beam hypotheses).

    ``hidden``: RNN state ``(layers, B, H)`` (a pair for LSTM); ``feed``: previous attentional
    vector ``(B, H)`` when input feeding; ``memory (B, S, Hm)``, ``keys (B, S, *)`` (attention
    keys, projected once per source) and ``mask (B, S)``.
    """

    hidden: State
    feed: torch.Tensor | None
    memory: torch.Tensor
    keys: torch.Tensor | None
    mask: torch.Tensor
    stepper: tuple | None = None  # inference only: (SteppedRNN, bias, weights), not per row

    def index_select(self, index: torch.Tensor) -> DecoderState:
        """Reorder/select rows, e.g. to follow beam back-pointers or drop finished sentences."""
        pick = lambda t: None if t is None else t.index_select(0, index)  # noqa: E731
        return DecoderState(
            map_state(self.hidden, lambda s: s.index_select(1, index)),
            pick(self.feed), pick(self.memory), pick(self.keys), pick(self.mask), self.stepper,
        )

    def reorder(self, index: torch.Tensor) -> DecoderState:
        """Like :meth:`index_select` for an ``index`` that maps every row to a row of the same
        source (beam back-pointers within each sentence): the source-side tensors (memory, keys,
        mask) stay as they are, and only the per-hypothesis state moves."""
        return DecoderState(
            map_state(self.hidden, lambda s: s.index_select(1, index)),
            None if self.feed is None else self.feed.index_select(0, index),
            self.memory, self.keys, self.mask, self.stepper,
        )


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
        tie_embeddings: bool = False,
    ) -> None:
        super().__init__()
        self.embedding = embedding
        self.hidden_size = hidden_size
        self.attention_kind = attention
        self.bahdanau = attention == "bahdanau"
        self.input_feeding = input_feeding
        emb = embedding.embedding_dim
        rnn_in = emb + (hidden_size if input_feeding else 0) + (memory_size if self.bahdanau else 0)
        self.rnn = make_rnn(cell, rnn_in, hidden_size, layers, dropout.rnn)
        self.attention = make_attention(attention, hidden_size, memory_size)
        self.combine = (
            nn.Linear(hidden_size + memory_size, hidden_size, bias=False)
            if self.attention is not None else None
        )
        self.bridge = Bridge(bridge, memory_size, hidden_size, cell == "lstm")
        self.embedding_dropout = nn.Dropout(dropout.embedding)
        self.output_dropout = nn.Dropout(dropout.output)
        self.out = nn.Linear(hidden_size, embedding.num_embeddings)
        if tie_embeddings:
            self.out.weight = embedding.weight
        # Set by rnnseq.inference.quantize: the stepped RNN's matrices packed as int8.
        self.int8_step_weights: list | None = None

    # -- state ------------------------------------------------------------------------------
    def init_state(self, enc: EncoderOutput) -> DecoderState:
        hidden = self.bridge(enc.state)
        hidden = map_state(hidden, lambda s: s.contiguous())
        keys = self.attention.keys(enc.memory) if self.attention is not None else None
        batch = enc.memory.shape[0]
        feed = enc.memory.new_zeros(batch, self.hidden_size) if self.input_feeding else None
        stepper = None
        if not self.training:
            # Decoding: one multiply per layer and step over [input; h], with the weights
            # concatenated once per batch (oneDNN's fused LSTM is slow for a single step).
            stepped = SteppedRNN(self.rnn, 0)
            weights = self.int8_step_weights
            if weights is None:
                weights = stepped.weights(dtype=autocast_dtype(enc.memory.device.type))
            stepper = (stepped, stepped.precompute(enc.memory.new_zeros(1, 0)), weights)
        return DecoderState(hidden, feed, enc.memory, keys, enc.mask, stepper)

    # -- one step ---------------------------------------------------------------------------
    def _extra_input(self, hidden, feed, state: DecoderState):
        """The step's RNN input beyond the embedding: Bahdanau context and/or the fed vector.

        Returns ``(extra (B, X) | None, context (B, Hm) | None, weights (B, S) | None)``.
        """
        parts, context, weights = [], None, None
        if self.bahdanau:
            query = top_hidden(hidden)[:, None, :]
            context, weights = self.attention(query, state.keys, state.memory, state.mask)
            context, weights = context[:, 0], weights[:, 0]
            parts.append(context)
        if self.input_feeding:
            parts.append(feed)
        extra = torch.cat(parts, dim=-1) if len(parts) > 1 else (parts[0] if parts else None)
        return extra, context, weights

    def _output(self, h, context, weights, state: DecoderState):
        """RNN output ``h (B, H)`` -> attentional vector ``o (B, H)`` and weights ``(B, S)``."""
        if self.attention is None:
            return h, None
        if not self.bahdanau:
            context, weights = self.attention(h[:, None, :], state.keys, state.memory, state.mask)
            context, weights = context[:, 0], weights[:, 0]
        return torch.tanh(self.combine(torch.cat([h, context], dim=-1))), weights

    def step(
        self, prev_tokens: torch.Tensor, state: DecoderState
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor | None]:
        """``prev_tokens (B,)`` -> ``log_probs (B, V)``, new state, attention ``(B, S)``."""
        emb = self.embedding(prev_tokens)
        extra, context, weights = self._extra_input(state.hidden, state.feed, state)
        x = emb if extra is None else torch.cat([emb, extra], dim=-1)
        if state.stepper is not None:
            stepped, bias, layer_weights = state.stepper
            h, hidden = stepped.step(bias, x, state.hidden, layer_weights, training=False)
        else:
            h, hidden = self.rnn(x[:, None, :], state.hidden)
            h = h[:, 0]
        o, weights = self._output(h, context, weights, state)
        new = DecoderState(hidden, o if self.input_feeding else None, state.memory, state.keys,
                           state.mask, state.stepper)
        return torch.log_softmax(self.out(o).float(), dim=-1), new, weights

    # -- teacher forcing --------------------------------------------------------------------
    def features(
        self, tgt_in: torch.Tensor, state: DecoderState
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``tgt_in (B, T)`` -> attentional vectors ``(B, T, H)`` and weights ``(B, T, S)``.

        Without input feeding (and for Luong or no attention) the whole target runs through one
        RNN call and one batched attention. Otherwise the decoder steps, with the embedding part
        of the first layer's input projection computed for all steps in one multiply.
        """
        emb = self.embedding_dropout(self.embedding(tgt_in))
        if not self.input_feeding and not self.bahdanau:
            h, _ = self.rnn(emb, state.hidden)
            if self.attention is None:
                return h, None
            context, weights = self.attention(h, state.keys, state.memory, state.mask)
            return torch.tanh(self.combine(torch.cat([h, context], dim=-1))), weights
        stepped = SteppedRNN(self.rnn, emb.shape[-1])
        pre = stepped.precompute(emb)
        layer_weights = stepped.weights(defer_grad=torch.is_grad_enabled())
        hidden, feed = state.hidden, state.feed
        outputs, all_weights = [], []
        for t in range(tgt_in.shape[1]):
            extra, context, weights = self._extra_input(hidden, feed, state)
            h, hidden = stepped.step(pre[:, t], extra, hidden, layer_weights, self.training)
            o, weights = self._output(h, context, weights, state)
            feed = o
            outputs.append(o)
            all_weights.append(weights)
        weights = torch.stack(all_weights, dim=1) if self.attention is not None else None
        return torch.stack(outputs, dim=1), weights

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Attentional vectors ``(..., H)`` -> logits ``(..., V)``."""
        return self.out(self.output_dropout(features))

    def forward(self, tgt_in: torch.Tensor, enc: EncoderOutput) -> torch.Tensor:
        """Teacher forcing: ``tgt_in (B, T)`` -> logits ``(B, T, V)``."""
        features, _ = self.features(tgt_in, self.init_state(enc))
        return self.project(features)
