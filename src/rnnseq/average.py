"""Checkpoint averaging: a model directory whose weights are the mean of several others'.

Averaging the last few checkpoints of a run smooths out the noise of the final updates and
usually gains a little accuracy at no decoding cost::

    rnnseq average runs/g2p --last 5 -o runs/g2p/averaged       # a training output directory
    rnnseq average runs/g2p/checkpoints/step-0009000 runs/g2p/checkpoints/step-0010000 -o avg

Keep checkpoints for it with ``train.keep_checkpoints``. The inputs must be the same model:
equal model and data settings and identical vocabularies and tokenizer models; the output takes
its config, vocabularies and tokenizers from the newest input.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .config import model_settings
from .errors import ModelDirError, OutputError
from .modeldir import (
    CONFIG_FILE,
    META_FILE,
    WEIGHTS_FILE,
    load_config,
    load_model_dir,
    read_meta,
    save_model_dir,
)
from .training.checkpoint import STATE_JSON, STATE_TENSORS, checkpoint_dirs

# Files that may differ between checkpoints of one run; every other file must be identical.
_PER_CHECKPOINT = {CONFIG_FILE, META_FILE, WEIGHTS_FILE, STATE_JSON, STATE_TENSORS}


def resolve_inputs(paths: list[str | Path], last: int | None = None) -> list[Path]:
    """Model directories to average, oldest first.

    A training output directory (one with ``checkpoints/``) stands for all its kept
    checkpoints; ``last`` keeps only the newest ``last`` of the resulting list.
    """
    dirs: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise ModelDirError(f"{path}: no such directory")
        if (path / "checkpoints").is_dir() and not (path / CONFIG_FILE).exists():
            found = checkpoint_dirs(path)
            if not found:
                raise ModelDirError(f"{path}/checkpoints: holds no complete checkpoint")
            dirs.extend(found)
        else:
            dirs.append(path)
    unique: list[Path] = []
    seen: set[Path] = set()
    for d in dirs:
        if d.resolve() not in seen:
            seen.add(d.resolve())
            unique.append(d)
    if last is not None:
        if last < 1:
            raise ModelDirError(f"--last must be at least 1 (got {last})")
        unique = unique[-last:]
    if len(unique) < 2:
        names = ", ".join(str(d) for d in unique) or "none"
        raise ModelDirError(
            f"averaging needs at least two model directories; found {len(unique)} ({names}). "
            "Keep more checkpoints while training with train.keep_checkpoints."
        )
    return unique


def _check_same_model(reference: Path, other: Path) -> None:
    a, b = model_settings(load_config(reference)), model_settings(load_config(other))
    for key in a:
        if a[key] != b[key]:
            raise ModelDirError(
                f"{other}/{CONFIG_FILE}: {key} is {b[key]!r}, but {reference} has "
                f"{a[key]!r}; only checkpoints of the same model can be averaged"
            )
    names = {p.name for d in (reference, other) for p in d.iterdir() if p.is_file()}
    for name in sorted(names - _PER_CHECKPOINT):
        a, b = reference / name, other / name
        if not a.exists() or not b.exists() or a.read_bytes() != b.read_bytes():
            raise ModelDirError(
                f"{other}/{name}: differs from {reference}/{name} (or one is missing); "
                "checkpoints with different vocabularies or tokenizers cannot be averaged"
            )


def average_model_dirs(dirs: list[Path], out: str | Path) -> Path:
    """Write the element-wise mean of the weights of ``dirs`` (oldest first) to ``out``.

    Floating-point tensors are summed in float64 and divided once; the result is loaded back
    into the newest input's model and saved as a complete model directory.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(f"{out}: already exists and is not empty; choose a new -o directory")
    newest = dirs[-1]
    for other in dirs[:-1]:
        _check_same_model(newest, other)
    bundle = load_model_dir(newest)
    sums = {name: t.to(torch.float64) for name, t in bundle.model.state_dict().items()
            if t.is_floating_point()}
    for other in dirs[:-1]:
        state = load_model_dir(other).model.state_dict()
        for name in sums:
            sums[name] += state[name].to(torch.float64)
    current = bundle.model.state_dict()
    averaged = {name: (total / len(dirs)).to(current[name].dtype) for name, total in sums.items()}
    with torch.no_grad():
        bundle.model.load_state_dict(averaged, strict=False)
    meta = {k: v for k, v in read_meta(newest).items() if k != "format_version"}
    meta["averaged"] = [str(d) for d in dirs]
    try:
        save_model_dir(out, bundle, meta)
    except OSError as err:
        if isinstance(err, OutputError):
            raise
        raise OutputError(f"cannot write {out}: {err.strerror or err}") from err
    return out
