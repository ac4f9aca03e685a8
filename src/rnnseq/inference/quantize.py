"""Dynamic int8 quantization for CPU decoding (``rnnseq translate --quantize int8``).

Weights are stored as int8 with one scale per output row; activations are quantized on the fly
at each multiply, and the result comes back in fp32. It covers every ``nn.Linear`` (output
layer, attention, combination, bridge), the encoder RNN (LSTM or GRU; PyTorch has no int8
``nn.RNN``, so a plain RNN encoder stays fp32), and the decoder's stepped RNN, whose per-step
matrices are packed once here. Embeddings stay fp32. The model directory on disk is
not touched: quantization happens after loading, on a copy.

The matrices every decoding step multiplies by (the RNN's, the combination and the output
layer) are :class:`Int8Matrix`: on CPUs with VNNI or AMX int8 instructions they run through
oneDNN's int8 matmul (``onednn::qlinear_pointwise``, the kernel behind PyTorch's x86 int8
inference), with the activations quantized here, one scale per call; elsewhere through
FBGEMM's dynamic linear. On a 2-core Xeon with AMX, oneDNN's multiply is 1.4-2.1x faster than
FBGEMM's (benchmarks/README.md, "What each optimisation did", round 2). Without VNNI, u8 x s8
products may saturate in oneDNN's kernels, which is why those CPUs keep FBGEMM.

The rest uses PyTorch's quantized-tensor API (``quantize_dynamic``), which PyTorch marks as
deprecated (still present in 2.13); this module is the only place that uses it.
"""

from __future__ import annotations

import copy
import functools
import warnings
from pathlib import Path

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


def _cpu_has_int8_dot_product() -> bool:
    """Whether this CPU has VNNI or AMX int8 instructions (Linux: /proc/cpuinfo flags)."""
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    flags = set(info.split())
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


@functools.cache
def onednn_int8_available() -> bool:
    """Whether :class:`Int8Matrix` can use oneDNN's int8 matmul here (a CPU with VNNI or AMX
    and a PyTorch build whose op multiplies a tiny case right)."""
    if not _cpu_has_int8_dot_product() or not hasattr(torch.ops.onednn, "qlinear_pointwise"):
        return False
    try:
        w = torch.tensor([[1.0, -2.0], [0.5, 0.25]])
        got = _OnednnInt8(w, torch.tensor([1.0, 0.0]))(torch.tensor([[2.0, 1.0]]))
        return bool(torch.allclose(got, torch.tensor([[1.0, 1.25]]), atol=0.05))
    except (RuntimeError, AttributeError):
        return False


class _OnednnInt8:
    """``x @ W.T (+ b)`` through oneDNN: W int8 with one scale per row, packed once; x
    quantized per call to uint8 with zero point 128 and scale ``max|x| / 127``."""

    def __init__(self, w: torch.Tensor, bias: torch.Tensor | None) -> None:
        w = w.detach().float()
        self.scale = (w.abs().amax(dim=1) / 127.0).clamp_min(1e-12)
        q = torch.round(w / self.scale[:, None]).clamp_(-127, 127).to(torch.int8)
        self.packed = torch.ops.onednn.qlinear_prepack(q, None)
        self.zero = torch.zeros(w.shape[0], dtype=torch.long)
        self.bias = None if bias is None else bias.detach().float().contiguous()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        top = float(x.abs().amax()) if x.numel() else 0.0
        inv = 127.0 / top if top > 0.0 else 1.0
        # |x * inv| <= 127, so + 128.5 lies in [1.5, 255.5] and truncation rounds to uint8
        qx = (x * inv).add_(128.5).to(torch.uint8)
        return torch.ops.onednn.qlinear_pointwise(
            qx, 1.0 / inv, 128, self.packed, self.scale, self.zero, self.bias, 1.0, 0,
            torch.float32, "none", [], "")


class _FbgemmInt8:
    """``x @ W.T (+ b)`` through FBGEMM's dynamic int8 linear (:func:`pack_int8`)."""

    def __init__(self, w: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.packed = pack_int8(w)
        self.bias = None if bias is None else bias.detach().float()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.quantized.linear_dynamic(x.float(), self.packed, True)
        return y if self.bias is None else y + self.bias


class Int8Matrix:
    """A matrix ``W (N, K)`` packed as int8 with one scale per row; ``m(x)`` is ``x @ W.T
    (+ b)`` in fp32 for ``x (B, K)``, with ``x`` quantized on the fly. The model's decoding
    step calls it without knowing its form."""

    def __init__(self, w: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        kind = _OnednnInt8 if onednn_int8_available() else _FbgemmInt8
        self.impl = kind(w, bias)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            return self.impl(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1)
        return self.impl(x)


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
    """The stepper an int8 copy of ``model`` (the fp32 model, before :func:`quantize_int8`)
    decodes with: the RNN's step matrices, the combination and the output layer as
    :class:`Int8Matrix`."""
    with torch.no_grad():
        return model.decoder.inference_stepper(pack=Int8Matrix)
