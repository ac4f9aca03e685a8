"""fp32 matrices packed once for MKL's GEMM, for CPU decoding.

A decoding step multiplies the same few matrices (the RNN's step matrices, the combination
layer, the output layer) by a small batch, step after step. MKL can reorder a matrix once
into the layout its kernels read (``cblas_sgemm_pack``); the multiply then skips that work at
every call. On a 2-core Xeon, ``(64, 512) @ (512, 5928)`` takes 1.23 ms packed against
1.70 ms, ``(30, 512) @ (512, 5928)`` 0.69 against 1.27 ms (``benchmarks/README.md``, "What
each optimisation did", round 2). From a batch of about 30 rows up the results are
bit-identical to ``F.linear``; below, the summation order may differ in the last bits. The
packed copy takes about 1.8 times the matrix's memory; the original stays in place (other
shapes fall back to it).

The model never imports this: :meth:`rnnseq.model.decoder.Decoder.inference_stepper` takes
:class:`MklMatrix` as its ``pack``.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


@functools.cache
def mkl_packing_available() -> bool:
    """Whether this PyTorch build can pack fp32 matrices for MKL (x86 builds with MKL)."""
    if not (torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear")):
        return False
    try:  # present is not the same as working: try a tiny multiply
        w = torch.ones(3, 2)
        got = torch.ops.mkl._mkl_linear(torch.ones(4, 2),
                                        torch.ops.mkl._mkl_reorder_linear_weight(w, 4), w,
                                        None, 4)
        return bool(torch.equal(got, torch.full((4, 3), 2.0)))
    except (RuntimeError, AttributeError):
        return False


class MklMatrix:
    """``m(x)`` is ``x @ W.T (+ b)`` for ``x (B, K)`` in fp32, with ``W (N, K)`` packed once."""

    def __init__(self, w: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        self.w = w.detach().float().contiguous()
        self.bias = None if bias is None else bias.detach().float().contiguous()
        # packed once for all batch sizes (tests: 1 to 100 rows multiply like F.linear)
        self.packed = torch.ops.mkl._mkl_reorder_linear_weight(self.w, 64)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.dtype != torch.float32 or x.device.type != "cpu":
            return F.linear(x, self.w.to(x.dtype), None if self.bias is None
                            else self.bias.to(x.dtype))
        # the last argument is the batch the packed matrix is used with: this one
        return torch.ops.mkl._mkl_linear(x.contiguous(), self.packed, self.w, self.bias,
                                         x.shape[0])
