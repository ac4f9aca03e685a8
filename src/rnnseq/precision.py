"""Mixed precision as one switch: ``fp32``, ``bf16`` (CPU or GPU) or ``fp16`` (GPU)."""

from __future__ import annotations

import contextlib

import torch

from .config import PRECISIONS  # noqa: F401 - the names precision switches accept


def precision_dtype(precision: str) -> torch.dtype | None:
    """The dtype ``precision`` computes in under autocast; None for fp32 (no autocast)."""
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device: torch.device, precision: str):
    """Autocast context for ``precision``; a no-op for fp32."""
    dtype = precision_dtype(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast computes in right now on ``device_type``; None outside autocast."""
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
