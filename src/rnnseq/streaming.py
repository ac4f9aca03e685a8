"""Read standard input in batches without waiting for more input than has arrived.

Interactive use (a person or a program sending one line and waiting for its answer) gets each
answer at once; piped bulk input is translated in batches, which is many times faster than one
line at a time.
"""

from __future__ import annotations

import io
import os
import select
from collections.abc import Iterator
from typing import TextIO

from .errors import DataError


def line_batches(stream: TextIO, max_lines: int = 64) -> Iterator[list[str]]:
    """Yield lists of at most ``max_lines`` lines (without line endings) as they arrive."""
    try:
        fd = stream.fileno()
    except (OSError, io.UnsupportedOperation, AttributeError):
        fd = None
    if fd is None:  # an in-memory stream: everything has arrived already
        batch: list[str] = []
        for line in stream:
            batch.append(line.rstrip("\r\n"))
            if len(batch) == max_lines:
                yield batch
                batch = []
        if batch:
            yield batch
        return
    pending, number, eof = b"", 0, False
    while not eof:
        chunk = os.read(fd, 1 << 16)  # blocks until something arrives
        eof = not chunk
        pending += chunk
        while not eof and pending.count(b"\n") < max_lines and select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 1 << 16)
            eof = not chunk
            pending += chunk
        parts = pending.split(b"\n")
        pending = parts.pop()
        if eof and pending:
            parts.append(pending)
            pending = b""
        lines = []
        for raw in parts:
            number += 1
            try:
                lines.append(raw.decode("utf-8").rstrip("\r"))
            except UnicodeDecodeError as err:
                raise DataError(f"<stdin>:{number}: invalid UTF-8 ({err.reason})") from None
        for start in range(0, len(lines), max_lines):
            yield lines[start : start + max_lines]
