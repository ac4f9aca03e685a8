"""The encoder-decoder model, built from a :class:`~rnnseq.config.ModelConfig`."""

from __future__ import annotations

import torch
from torch import nn

from ..config import Config
from ..data.vocab import PAD_ID
from .cells import Stepper
from .decoder import Decoder, DecoderState
from .encoder import Encoder, EncoderOutput
from .rnn import DropoutRates


class Seq2Seq(nn.Module):
    def __init__(self, config: Config, src_vocab_size: int, tgt_vocab_size: int) -> None:
        super().__init__()
        m = config.model
        self.src_vocab_size, self.tgt_vocab_size = src_vocab_size, tgt_vocab_size
        src_emb = nn.Embedding(src_vocab_size, m.embedding_size, padding_idx=PAD_ID)
        if m.share_embeddings:
            if src_vocab_size != tgt_vocab_size:
                raise ValueError("share_embeddings needs one shared vocabulary")
            tgt_emb = src_emb
        else:
            tgt_emb = nn.Embedding(tgt_vocab_size, m.embedding_size, padding_idx=PAD_ID)
        dropout = DropoutRates(*(m.dropout_rate(where) for where in DropoutRates._fields))
        self.encoder = Encoder(src_emb, m.cell, m.hidden_size, m.layers, dropout,
                               m.bidirectional)
        self.decoder = Decoder(
            tgt_emb, m.cell, m.hidden_size, m.layers, dropout, m.attention,
            config.input_feeding, self.encoder.output_size, m.bridge, m.tie_embeddings,
            m.copy_attention, m.coverage,
        )
        self.reset_parameters()

    def reset_parameters(self, scale: float = 0.1) -> None:
        """Uniform(-scale, scale) for every weight; zero bias, zero coverage weight (see
        :mod:`rnnseq.model.attention`); zero padding embedding."""
        for name, p in self.named_parameters():
            if name.endswith(("bias", "coverage_weight")):
                nn.init.zeros_(p)
            else:
                nn.init.uniform_(p, -scale, scale)
        with torch.no_grad():
            self.encoder.embedding.weight[PAD_ID].zero_()
            self.decoder.embedding.weight[PAD_ID].zero_()

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> EncoderOutput:
        return self.encoder(src, src_lengths)

    def init_state(self, enc: EncoderOutput, src_map: torch.Tensor | None = None,
                   stepper: Stepper | None = None) -> DecoderState:
        return self.decoder.init_state(enc, src_map, stepper)

    def forward(
        self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor,
        src_map: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``src (B, S)``, ``src_lengths (B,)``, ``tgt_in (B, T)`` (and, with copy attention,
        ``src_map (B, S)``) -> log-probabilities ``(B, T, V)`` (``V``: the extended vocabulary
        with copy attention)."""
        return self.decoder(tgt_in, self.encode(src, src_lengths), src_map)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())
