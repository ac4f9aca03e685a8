"""Checkpoints: a model directory plus the trainer's state, saved and restored without pickle.

Layout of a training output directory::

    OUT/checkpoints/step-000500/   config.yaml, vocabularies, tokenizer models,
                                   model.safetensors, trainer_state.safetensors/.json
    OUT/last -> checkpoints/step-000500     (symlinks, switched atomically)
    OUT/best -> checkpoints/step-000300

Tensors (optimizer moments, torch RNG states) go to ``trainer_state.safetensors``; everything
else (counters, schedule and early-stopping state, python/numpy RNG states, the data position)
to ``trainer_state.json``. :func:`check_resume_config` says which config changes a resumed run
accepts.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from ..config import ADDABLE_SETTINGS, Config, ConfigError, model_settings
from ..errors import OutputError
from ..faults import fault_point
from ..fileio import atomic_symlink, atomic_write_bytes, atomic_write_text
from ..modeldir import ModelBundle, ModelDirError, save_model_dir

STATE_TENSORS = "trainer_state.safetensors"
STATE_JSON = "trainer_state.json"


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = optimizer.state_dict()
    tensors, plain = {}, {}
    for pid, values in sd["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                plain[f"{pid}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "plain": plain}


def _unflatten_optimizer(tensors: dict, info: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for key, value in info["plain"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    groups = []
    for group in info["param_groups"]:
        group = dict(group)
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}


def rng_state() -> tuple[dict, dict]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    py = random.getstate()
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    plain = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
    }
    return tensors, plain


def set_rng_state(tensors: dict, plain: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    v, keys, gauss = plain["python"]
    random.setstate((v, tuple(keys), gauss))
    kind, keys, pos, has_gauss, g = plain["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, g))


def save_checkpoint(
    out_dir: Path, bundle: ModelBundle, optimizer: torch.optim.Optimizer, state: dict,
    is_best: bool, keep: int = 1,
) -> Path:
    """Write ``checkpoints/step-N``, switch ``last`` (and ``best``) to it atomically and remove
    checkpoints beyond the ``keep`` newest (``best`` is always kept)."""
    from safetensors.torch import save

    step = state["step"]
    name = f"step-{step:07d}"
    target = out_dir / "checkpoints" / name
    tmp = out_dir / "checkpoints" / f".{name}.partial"
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        save_model_dir(tmp, bundle, {"step": step})
        fault_point("checkpoint")  # a kill here leaves only a .partial directory behind
        opt_tensors, opt_plain = _flatten_optimizer(optimizer)
        rng_tensors, rng_plain = rng_state()
        atomic_write_bytes(tmp / STATE_TENSORS, save({**opt_tensors, **rng_tensors}))
        payload = {**state, "optimizer": opt_plain, "rng": rng_plain}
        atomic_write_text(tmp / STATE_JSON, json.dumps(payload) + "\n")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OutputError):
            raise
        raise OutputError(f"cannot write checkpoint {target}: {err.strerror or err}") from err
    fault_point("checkpoint-switch")  # complete directory, symlinks not yet switched
    atomic_symlink(f"checkpoints/{name}", out_dir / "last")
    if is_best:
        atomic_symlink(f"checkpoints/{name}", out_dir / "best")
    prune(out_dir, keep)
    return target


def checkpoint_dirs(out_dir: Path) -> list[Path]:
    """The complete checkpoints of a training output directory, oldest first."""
    folder = out_dir / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_dir() and p.name.startswith("step-") and not p.name.startswith("."))


def prune(out_dir: Path, keep: int = 1) -> None:
    """Remove checkpoint directories other than the ``keep`` newest and those ``last`` and
    ``best`` point to."""
    links = {(out_dir / link).resolve() for link in ("last", "best") if (out_dir / link).exists()}
    steps = checkpoint_dirs(out_dir)
    kept = links | {p.resolve() for p in steps[-keep:]}
    for path in steps:
        if path.resolve() not in kept:
            shutil.rmtree(path, ignore_errors=True)


def load_trainer_state(directory: Path) -> tuple[dict, dict]:
    """Return (tensors, json state) of a checkpoint directory."""
    from safetensors.torch import load_file

    tensors_path, json_path = directory / STATE_TENSORS, directory / STATE_JSON
    for path in (tensors_path, json_path):
        if not path.exists():
            raise ModelDirError(f"{path}: missing; cannot resume from {directory}")
    try:
        state = json.loads(json_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ModelDirError(f"{json_path}: not valid JSON ({err})") from None
    return load_file(str(tensors_path)), state


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict, state: dict,
                      added: set[int] | None = None) -> None:
    """Load the saved optimizer state. ``added``: positions (in the optimizer's one parameter
    group) of parameters the checkpoint lacks; the saved ones fill the other positions in
    order, and the added ones start without state."""
    saved = _unflatten_optimizer(tensors, state["optimizer"])
    if added:
        if len(optimizer.param_groups) != 1 or len(saved["param_groups"]) != 1:
            raise ValueError("adding parameters at resume needs one parameter group")
        count = len(optimizer.param_groups[0]["params"])
        kept = [i for i in range(count) if i not in added]
        saved["state"] = {kept[i]: value for i, value in saved["state"].items()}
        saved["param_groups"][0]["params"] = list(range(count))
    optimizer.load_state_dict(saved)


def check_resume_config(saved: Config, new: Config, source: str) -> list[str]:
    """Refuse changes that break a resumed run (:func:`model_settings`: they would change the
    model or its vocabulary), except for switching on one of :data:`ADDABLE_SETTINGS`; return
    the accepted changes (for the log)."""
    changes = []
    defining, new_defining = model_settings(saved), model_settings(new)
    for section in ("data", "model", "train", "decode"):
        old_s, new_s = saved.to_dict()[section], new.to_dict()[section]
        for key, old in old_s.items():
            if new_s[key] == old:
                continue
            dotted = f"{section}.{key}"
            if dotted in ADDABLE_SETTINGS and new_s[key] == ADDABLE_SETTINGS[dotted]:
                changes.append(f"{dotted}: {old!r} -> {new_s[key]!r} (new parameters added)")
                continue
            if dotted in defining and new_defining[dotted] != defining[dotted]:
                raise ConfigError(
                    f"{source}: cannot resume with {dotted} changed ({old!r} -> {new_s[key]!r}): "
                    "it changes the model or its vocabulary. Start a new run in another "
                    "train.out_dir instead."
                )
            changes.append(f"{dotted}: {old!r} -> {new_s[key]!r}")
    return changes
