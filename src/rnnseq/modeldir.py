"""Model directories: ``config.yaml``, vocabularies, tokenizer models and ``model.safetensors``.

Loading reads YAML, JSON, SentencePiece protos and safetensors only; nothing is unpickled. A
directory that holds a pickle file is refused.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Config, ConfigError
from .data.tokenizers import Tokenizer, load_tokenizer
from .data.vocab import Vocab
from .errors import ModelDirError
from .fileio import atomic_write_bytes, atomic_write_text

# torch is imported where weights are read or written: the torch-free runtime
# (rnnseq.runtime) reads the rest of a directory with this module.
if TYPE_CHECKING:
    import torch

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"
META_FILE = "meta.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")


@dataclass
class ModelBundle:
    """A model with everything needed to turn strings into strings."""

    config: Config
    model: torch.nn.Module
    src_vocab: Vocab
    tgt_vocab: Vocab
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer


@contextlib.contextmanager
def skip_weight_init():
    """Build modules without their random initialisation (the weights are loaded next)."""
    from torch.nn import init

    names = ("uniform_", "normal_", "kaiming_uniform_", "zeros_", "ones_")
    saved = {name: getattr(init, name) for name in names}
    for name in names:
        setattr(init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, func in saved.items():
            setattr(init, name, func)


def _shared_aliases(model: torch.nn.Module) -> dict[str, str]:
    """Names of state tensors that are the same parameter as an earlier one (tied weights)."""
    first: dict[int, str] = {}
    aliases = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        key = id(tensor)
        if key in first:
            aliases[name] = first[key]
        else:
            first[key] = name
    return aliases


def save_model_dir(directory: str | Path, bundle: ModelBundle, meta: dict | None = None) -> None:
    """Write a complete model directory; every file is written atomically."""
    from safetensors.torch import save

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(directory / CONFIG_FILE, bundle.config.to_yaml())
    bundle.src_vocab.save(directory / "src_vocab.json")
    bundle.tgt_vocab.save(directory / "tgt_vocab.json")
    bundle.src_tokenizer.save(directory, "src")
    bundle.tgt_tokenizer.save(directory, "tgt")
    aliases = _shared_aliases(bundle.model)
    tensors = {
        name: t.detach().to("cpu").contiguous()
        for name, t in bundle.model.state_dict().items() if name not in aliases
    }
    atomic_write_bytes(directory / WEIGHTS_FILE, save(tensors, metadata={"format": "rnnseq"}))
    info = {"format_version": bundle.config.format_version, **(meta or {})}
    atomic_write_text(directory / META_FILE, json.dumps(info, indent=2) + "\n")


def _is_pickle(path: Path) -> bool:
    try:
        head = path.open("rb").read(4)
    except OSError:
        return False
    return head[:1] == b"\x80" or head[:2] == b"PK"


def check_no_pickles(directory: Path) -> None:
    for path in sorted(directory.iterdir()):
        if path.suffix in PICKLE_SUFFIXES and _is_pickle(path):
            raise ModelDirError(
                f"{path}: looks like a pickle file; rnnseq refuses to load model directories "
                "that hold pickles, since unpickling can run arbitrary code. Remove it or load "
                "a directory written by rnnseq (model.safetensors)."
            )


def load_config(directory: str | Path) -> Config:
    directory = Path(directory)
    path = directory / CONFIG_FILE
    if not directory.is_dir():
        raise ModelDirError(f"{directory}: model directory not found")
    if not path.exists():
        raise ModelDirError(f"{path}: missing; is {directory} an rnnseq model directory?")
    try:
        return Config.load(path)
    except ConfigError as err:
        raise ModelDirError(str(err)) from None


@dataclass
class TextSide:
    """What a directory holds besides weights: the config, vocabularies and tokenizers."""

    config: Config
    src_vocab: Vocab
    tgt_vocab: Vocab
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer


def load_text_side(directory: str | Path) -> TextSide:
    """Config, vocabularies and tokenizers of a model (or exported) directory, after checking
    it holds no pickle."""
    directory = Path(directory)
    config = load_config(directory)
    check_no_pickles(directory)
    d = config.data
    try:
        return TextSide(config, Vocab.load(directory / "src_vocab.json"),
                        Vocab.load(directory / "tgt_vocab.json"),
                        load_tokenizer(d, directory, "src"), load_tokenizer(d, directory, "tgt"))
    except (FileNotFoundError, ValueError) as err:
        raise ModelDirError(str(err)) from None


def load_model_dir(directory: str | Path, device: str | torch.device = "cpu") -> ModelBundle:
    """Load a model directory written by :func:`save_model_dir`, in eval mode."""
    from .model.seq2seq import Seq2Seq

    t = load_text_side(directory)
    with skip_weight_init():  # every weight comes from the file
        model = Seq2Seq(t.config, len(t.src_vocab), len(t.tgt_vocab))
    load_weights(model, directory)
    model.to(device).eval()
    return ModelBundle(t.config, model, t.src_vocab, t.tgt_vocab, t.src_tokenizer,
                       t.tgt_tokenizer)


def load_weights(model: torch.nn.Module, directory: str | Path,
                 missing_ok: Collection[str] = ()) -> None:
    """Load ``model.safetensors`` of ``directory`` into ``model``, checking every tensor's name
    and shape (errors name the file and the tensor). Tensors named in ``missing_ok`` may be
    absent from the file; they keep their values."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = Path(directory) / WEIGHTS_FILE
    if not weights.exists():
        raise ModelDirError(f"{weights}: missing")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelDirError(f"{weights}: not a readable safetensors file ({err})") from None
    aliases = _shared_aliases(model)
    expected = {k: v for k, v in model.state_dict().items() if k not in aliases}
    for name, ref in expected.items():
        if name not in tensors:
            if name in missing_ok:
                continue
            raise ModelDirError(f"{weights}: tensor '{name}' is missing")
        if tuple(tensors[name].shape) != tuple(ref.shape):
            raise ModelDirError(
                f"{weights}: tensor '{name}' has shape {tuple(tensors[name].shape)}, but "
                f"{CONFIG_FILE} and the vocabularies ({model.src_vocab_size} source, "
                f"{model.tgt_vocab_size} target tokens) give {tuple(ref.shape)}"
            )
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        raise ModelDirError(f"{weights}: unexpected tensor '{unexpected[0]}' for this config")
    with torch.no_grad():
        model.load_state_dict(tensors, strict=False)


def read_meta(directory: str | Path) -> dict:
    path = Path(directory) / META_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


__all__ = ["ModelBundle", "ModelDirError", "load_model_dir", "save_model_dir"]
