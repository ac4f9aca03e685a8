"""Dynamic int8 quantization for CPU decoding (``rnnseq translate --quantize int8``).

Weights are stored as int8 with one scale per output row; activations are quantized on the fly
at each multiply, and the result comes back in fp32. It covers every ``nn.Linear`` (output
layer, attention, combination, bridge), the encoder RNN (LSTM or GRU; PyTorch has no int8
``nn.RNN``, so a plain RNN encoder stays fp32), and the decoder's stepped RNN, whose per-step
matrices are packed once here. Embeddings stay fp32. The model directory on disk is
not touched: quantization happens after loading, on a copy.

PyTorch marks its quantized-tensor API as deprecated (still present in 2.13); this module is
the only place that uses it.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn


def pack_int8(w: torch.Tensor):
    """Pack a float matrix ``(out, in)`` for ``torch.ops.quantized.linear_dynamic``, with a
    symmetric per-row scale."""
    w = w.detach().float().contiguous()
    scale = (w.abs().amax(dim=1) / 127.0).clamp_min(1e-12).double()
    zero = torch.zeros(w.shape[0], dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.quantize_per_channel(w, scale, zero, 0, torch.qint8)
        return torch.ops.quantized.linear_prepack(q, None)


class Int8Matrix:
    """A step matrix packed as int8 (:func:`pack_int8`); ``m(x)`` is ``x @ W.T`` in fp32, with
    ``x`` quantized on the fly. The model's stepped RNN calls it without knowing its form."""

    def __init__(self, w: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        self.packed = pack_int8(w)
        self.bias = None if bias is None else bias.detach().float()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.quantized.linear_dynamic(x.float(), self.packed, True)
        return y if self.bias is None else y + self.bias


def quantize_int8(model: nn.Module) -> nn.Module:
    """A dynamically int8-quantized copy of a :class:`~rnnseq.model.seq2seq.Seq2Seq` for CPU
    inference (eval mode). Its decoder's step matrices are packed by :func:`int8_stepper`."""
    if "fbgemm" not in torch.backends.quantized.supported_engines and \
            "x86" not in torch.backends.quantized.supported_engines:
        raise RuntimeError("int8 quantization needs PyTorch's x86/fbgemm engine, which this "
                           "build lacks")
    model = copy.deepcopy(model).cpu().eval()
    spec = {name: torch.ao.quantization.default_dynamic_qconfig
            for name, module in model.named_modules()
            if isinstance(module, nn.Linear) or module is model.encoder.rnn}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8)
    return model


def int8_stepper(model: nn.Module):
    """The stepper a :func:`quantize_int8` model decodes with: its RNN step matrices as
    :class:`Int8Matrix` (the other layers are quantized modules already)."""
    return model.decoder.inference_stepper(pack=Int8Matrix)
