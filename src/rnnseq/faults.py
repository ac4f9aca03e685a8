"""Named fault points for crash tests.

``RNNSEQ_FAULT=NAME:N`` makes the process kill itself with SIGKILL the N-th time it reaches fault
point NAME (e.g. ``checkpoint:3`` dies inside the third checkpoint write). Without the variable
every call is a no-op costing one dictionary lookup; tests use it to prove that a kill at any
of these moments leaves a loadable, exactly resumable training directory.
"""

from __future__ import annotations

import os
import signal

_counts: dict[str, int] = {}


def fault_point(name: str) -> None:
    spec = os.environ.get("RNNSEQ_FAULT")
    if not spec:
        return
    target, _, count = spec.partition(":")
    if target != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
