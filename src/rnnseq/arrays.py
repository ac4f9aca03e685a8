"""The few array operations search needs, for torch tensors and for numpy arrays.

Search (:mod:`rnnseq.inference.search`) and the decoding rules index, slice, compare and
assign with the syntax numpy and torch share (``x[rows]``, ``x[:, i] = v``, ``x.argmax(-1)``,
``x.reshape``, ``x.tolist()``); what the two spell differently is here. A decoder state says
which implementation fits its arrays (``SearchState.arrays``), so one search drives both the
PyTorch models and the exported ONNX graphs (:mod:`rnnseq.runtime`). This module imports
neither library at import time: the torch-free runtime must not pull torch in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Arrays(Protocol):
    """Makes and combines arrays of one library, on one device."""

    def ids(self, values: Sequence[int]) -> Any:
        """A 1-D int64 array."""

    def floats(self, rows: Sequence[Sequence[float]]) -> Any:
        """A 2-D float32 array."""

    def float32(self, x: Any) -> Any:
        """``x`` as float32."""

    def best(self, x: Any) -> tuple[Any, Any]:
        """The largest entry of each row of ``x (n, m)`` and its column (the first of equal
        ones)."""

    def topk(self, x: Any, k: int) -> tuple[Any, Any]:
        """The ``k`` largest entries of each row of ``x (n, m)`` and their columns, largest
        first."""

    def stack(self, xs: Sequence[Any]) -> Any:
        """Arrays of one shape stacked along a new first axis."""

    def concat(self, xs: Sequence[Any], axis: int) -> Any:
        """Arrays joined along ``axis``."""


class NumpyArrays:
    """:class:`Arrays` for numpy (the ONNX runtime's)."""

    def __init__(self) -> None:
        import numpy

        self.np = numpy

    def ids(self, values: Sequence[int]) -> Any:
        return self.np.asarray(values, dtype=self.np.int64).reshape(-1)

    def floats(self, rows: Sequence[Sequence[float]]) -> Any:
        return self.np.asarray(rows, dtype=self.np.float32)

    def float32(self, x: Any) -> Any:
        return x.astype(self.np.float32, copy=False)

    def best(self, x: Any) -> tuple[Any, Any]:
        index = x.argmax(-1)
        return self.np.take_along_axis(x, index[:, None], axis=-1)[:, 0], index

    def topk(self, x: Any, k: int) -> tuple[Any, Any]:
        np = self.np
        if k < x.shape[-1]:
            part = np.argpartition(-x, k - 1, axis=-1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(x.shape[-1]), x.shape)
        values = np.take_along_axis(x, part, axis=-1)
        # largest first; among equal values the lower column first
        order = np.lexsort((part, -values), axis=-1)
        return (np.take_along_axis(values, order, axis=-1),
                np.take_along_axis(part, order, axis=-1))

    def stack(self, xs: Sequence[Any]) -> Any:
        return self.np.stack(xs)

    def concat(self, xs: Sequence[Any], axis: int) -> Any:
        return self.np.concatenate(xs, axis=axis)


class TorchArrays:
    """:class:`Arrays` for torch tensors on ``device``."""

    def __init__(self, device: Any) -> None:
        import torch

        self.torch, self.device = torch, device

    def ids(self, values: Sequence[int]) -> Any:
        return self.torch.tensor(values, dtype=self.torch.long, device=self.device)

    def floats(self, rows: Sequence[Sequence[float]]) -> Any:
        return self.torch.tensor(rows, dtype=self.torch.float, device=self.device)

    def float32(self, x: Any) -> Any:
        return x.float()

    def best(self, x: Any) -> tuple[Any, Any]:
        # one pass for both, and on CPU ~3x faster than argmax, which only finds the column
        values, index = x.max(dim=-1)
        return values, index

    def topk(self, x: Any, k: int) -> tuple[Any, Any]:
        return x.topk(k, dim=-1)

    def stack(self, xs: Sequence[Any]) -> Any:
        return self.torch.stack(list(xs))

    def concat(self, xs: Sequence[Any], axis: int) -> Any:
        return self.torch.cat(list(xs), dim=axis)
