"""Read parallel text (two aligned files or one TSV) with validation that names file and line.

Lines are kept as they are; the tokenizers normalize them (:mod:`rnnseq.data.normalize`), the
same way at training and at translation time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError

log = logging.getLogger(__name__)


def read_lines(path: str | Path) -> list[str]:
    """Read a UTF-8 text file into lines without line terminators.

    A byte-order mark is dropped and CRLF endings are accepted. Raises :class:`DataError` for a
    missing file, invalid UTF-8 (with the line number) or a NUL byte.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a text file") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror}") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(
            f"{path}:{line}: invalid UTF-8 ({err.reason}, byte 0x{data[err.start]:02x})"
        ) from None
    nul = text.find("\x00")
    if nul >= 0:
        raise DataError(f"{path}:{text.count(chr(10), 0, nul) + 1}: contains a NUL byte")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


@dataclass
class ParallelCorpus:
    """Aligned source/target sentences (strings) and where they came from."""

    src: list[str]
    tgt: list[str]
    origin: str
    line_numbers: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.src)


def read_parallel(src_path: str | Path, tgt_path: str | Path) -> ParallelCorpus:
    """Read two aligned files; their line counts must agree."""
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise DataError(
            f"line counts differ: {src_path} has {len(src)} lines, {tgt_path} has {len(tgt)}"
        )
    if not src:
        raise DataError(f"{src_path} and {tgt_path} are empty")
    return ParallelCorpus(
        src,
        tgt,
        f"{src_path} + {tgt_path}",
        list(range(1, len(src) + 1)),
    )


def read_tsv(path: str | Path) -> ParallelCorpus:
    """Read ``source<TAB>target`` lines; every line must hold exactly one tab."""
    lines = read_lines(path)
    if not lines:
        raise DataError(f"{path} is empty")
    src, tgt = [], []
    for number, line in enumerate(lines, 1):
        if line.count("\t") != 1:
            raise DataError(
                f"{path}:{number}: expected exactly one tab (source<TAB>target), "
                f"found {line.count(chr(9))}"
            )
        s, t = line.split("\t")
        src.append(s)
        tgt.append(t)
    return ParallelCorpus(src, tgt, str(path), list(range(1, len(lines) + 1)))


def load_corpus(src: str | None, tgt: str | None, tsv: str | None, what: str) -> ParallelCorpus:
    """Read ``what`` (e.g. 'training data') from either two files or one TSV."""
    if tsv and (src or tgt):
        raise DataError(f"{what}: give either a TSV file or source/target files, not both")
    if tsv:
        return read_tsv(tsv)
    if src and tgt:
        return read_parallel(src, tgt)
    if src or tgt:
        raise DataError(f"{what}: both a source and a target file are needed")
    raise DataError(f"{what}: no files given")


@dataclass
class FilterReport:
    kept: int
    empty: int
    too_long: int
    truncated_src: int = 0
    truncated_tgt: int = 0

    def __str__(self) -> str:
        text = (f"kept {self.kept} pairs, dropped {self.empty} with an empty side "
                f"and {self.too_long} longer than max_len")
        if self.truncated_src or self.truncated_tgt:
            text += (f"; truncated {self.truncated_src} sources to max_src_len and "
                     f"{self.truncated_tgt} targets to max_tgt_len")
        return text


def filter_pairs(
    src_tokens: list[list[str]], tgt_tokens: list[list[str]], max_len: int | None,
    max_src_len: int | None = None, max_tgt_len: int | None = None,
) -> tuple[list[int], FilterReport]:
    """Indices of pairs with both sides non-empty and at most ``max_len`` tokens.

    A side with its own limit (``max_src_len`` / ``max_tgt_len``) is truncated to it instead
    (the caller slices; this counts) and is not held to ``max_len``.
    """
    keep, empty, too_long, cut_src, cut_tgt = [], 0, 0, 0, 0
    for i, (s, t) in enumerate(zip(src_tokens, tgt_tokens, strict=True)):
        if not s or not t:
            empty += 1
            continue
        src_long = max_src_len is None and max_len is not None and len(s) > max_len
        tgt_long = max_tgt_len is None and max_len is not None and len(t) > max_len
        if src_long or tgt_long:
            too_long += 1
            continue
        keep.append(i)
        cut_src += max_src_len is not None and len(s) > max_src_len
        cut_tgt += max_tgt_len is not None and len(t) > max_tgt_len
    return keep, FilterReport(len(keep), empty, too_long, cut_src, cut_tgt)
