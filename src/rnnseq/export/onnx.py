"""``rnnseq export``: a model directory as two ONNX graphs, an encoder and one decoder step,
with the tokenizers, vocabularies and config beside them (the layout:
:mod:`rnnseq.runtime.exported`).

Both graphs are traced from the model's own code: the encoder is ``Seq2Seq.encode`` and
``Decoder.begin``; the step is ``Decoder.step`` on a state rebuilt from the graph's inputs. So
every cell, attention, input feeding, bridge, copy attention and coverage exports by the same
path. Three traps of exporting recurrent models are handled here:

* the encoder packs its variable-length rows; the TorchScript exporter turns the packing into
  the ONNX RNN operators' ``sequence_lens``, so each row (and each reverse direction) stops at
  its own length, with any batch size. (The newer ``torch.export`` exporter does not take
  packed sequences.)
* an empty source (length 0) is packed as length 1; its memory and state are zeroed in the
  graph whatever the traced example held, as ``Encoder.forward`` does;
* initial states are graph inputs, batch first (``(B, layers, H)``), so that a runtime selects
  hypotheses by indexing the first axis of every tensor.

The copy-attention step returns ``(B, V + S)`` log-probabilities: the extended vocabulary can
never be larger (a sentence adds at most one id per source position), so its size needs no
value-dependent shape; the runtime keeps the batch's ``ext_size`` first columns.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from ..errors import UsageError
from ..fileio import atomic_write_text
from ..model.decoder import DecoderState
from ..model.encoder import EncoderOutput
from ..model.rnn import map_state
from ..modeldir import CONFIG_FILE, load_model_dir
from ..runtime.exported import (
    ENCODER,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    SOURCE_INPUTS,
    STEP,
)

OPSET = 17  # ScatterElements with reduction="add" (copy attention) needs 16 or later


class EncoderGraph(nn.Module):
    """``src (B, S)``, ``src_lengths (B,)`` -> memory, keys (with attention) and the decoder's
    first state, batch first."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor):
        enc = self.model.encode(src, src_lengths)
        real = (src_lengths > 0).to(enc.memory.dtype)  # zero an empty source, always
        memory = enc.memory * real[:, None, None]
        state = map_state(enc.state, lambda s: s * real[None, :, None])
        hidden, keys = self.model.decoder.begin(EncoderOutput(memory, enc.mask, state))
        hidden = hidden if isinstance(hidden, tuple) else (hidden,)
        first = tuple(s.transpose(0, 1) for s in hidden)
        return (memory, *(() if keys is None else (keys,)), *first)


class StepGraph(nn.Module):
    """One decoder step: ``prev (B,)``, the source side and the state (batch first) ->
    log-probabilities, attention (with attention) and the next state."""

    def __init__(self, model: nn.Module, source: list[str], state: list[str]) -> None:
        super().__init__()
        self.decoder = model.decoder
        self.source, self.state = source, state

    def forward(self, prev: torch.Tensor, *inputs: torch.Tensor):
        d = self.decoder
        x = dict(zip(self.source + self.state, inputs, strict=True))
        hidden = tuple(x[n].transpose(0, 1) for n in ("h", "c") if n in x)
        src_map = x.get("src_map")
        ext_size = d.vocab_size + x["mask"].shape[1] if d.copy else 0
        state = DecoderState(hidden if len(hidden) == 2 else hidden[0], x.get("feed"),
                             x["memory"], x.get("keys"), x["mask"], d.inference_stepper(),
                             src_map, ext_size, x.get("coverage"))
        log_probs, new, attention = d.step(prev, state)
        new_hidden = new.hidden if isinstance(new.hidden, tuple) else (new.hidden,)
        following = {"h": new_hidden[0].transpose(0, 1), "feed": new.feed,
                     "coverage": new.coverage}
        if len(new_hidden) == 2:
            following["c"] = new_hidden[1].transpose(0, 1)
        return (log_probs, *(() if attention is None else (attention,)),
                *(following[n] for n in self.state))


def graph_names(model: nn.Module) -> tuple[list[str], list[str]]:
    """The step graph's source-side and state inputs for this model."""
    d = model.decoder
    source = ["memory", "mask"] + (["keys"] if d.attention is not None else []) + (
        ["src_map"] if d.copy else [])
    state = ["h"] + (["c"] if d.rnn.mode == "LSTM" else []) + (
        ["feed"] if d.input_feeding else []) + (["coverage"] if d.coverage else [])
    return source, state


def export_model(model_dir: str | Path, out: str | Path, quantize: str | None = None) -> Path:
    """Export ``model_dir`` to the directory ``out`` (created; must not hold a model yet)."""
    model_dir, out = Path(model_dir), Path(out)
    if quantize not in (None, "int8"):
        raise UsageError(f"--quantize must be int8, got {quantize!r}")
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out}: exists and is not empty; give a new directory")
    try:
        import onnx
    except ImportError:
        raise UsageError("exporting needs the onnx package: pip install 'rnnseq[onnx]'") from None
    bundle = load_model_dir(model_dir)
    model = bundle.model.float().eval()
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(model_dir.iterdir()):  # config, vocabularies, tokenizer models
        if path.is_file() and (path.name == CONFIG_FILE or path.suffix in (".json", ".model")
                               ) and path.name != "meta.json":
            shutil.copyfile(path, out / path.name)
    source, state = graph_names(model)
    with torch.no_grad(), _quiet():
        _export_encoder(model, out / ENCODER)
        _export_step(model, source, state, out / STEP)
    if quantize:
        _quantize_int8(out)
    d = model.decoder
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "source": source, "state": state,
        "attention": d.attention is not None, "copy": d.copy,
        "src_vocab_size": len(bundle.src_vocab), "tgt_vocab_size": len(bundle.tgt_vocab),
        "hidden_size": d.hidden_size, "parameters": model.num_parameters(),
        "quantize": quantize, "opset": OPSET,
        "versions": {"rnnseq": _version("rnnseq"), "torch": torch.__version__,
                     "onnx": onnx.__version__},
        "exported_from": str(model_dir),
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return out


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hold back the exporter's notices: Python deprecation warnings, and the C++ shape
    inference warnings it prints straight to stderr about the packing operators (which the
    RNN operators' ``sequence_lens`` replace). They are shown if the export fails."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as held, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _example(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A traced example: 2 sources of different lengths (the graphs take any)."""
    vocab = model.src_vocab_size
    src = torch.randint(4, max(5, vocab), (2, 5))
    return src, torch.tensor([5, 3])


def _export_encoder(model: nn.Module, path: Path) -> None:
    names = ["memory"] + (["keys"] if model.decoder.attention is not None else []) + (
        ["h", "c"] if model.decoder.rnn.mode == "LSTM" else ["h"])
    axes = {"src": {0: "batch", 1: "source"}, "src_lengths": {0: "batch"},
            "memory": {0: "batch", 1: "source"}, "keys": {0: "batch", 1: "source"},
            "h": {0: "batch"}, "c": {0: "batch"}}
    torch.onnx.export(EncoderGraph(model), _example(model), str(path), dynamo=False,
                      input_names=["src", "src_lengths"], output_names=names,
                      dynamic_axes={k: v for k, v in axes.items() if k in names or
                                    k.startswith("src")}, opset_version=OPSET)


def _export_step(model: nn.Module, source: list[str], state: list[str], path: Path) -> None:
    src, lengths = _example(model)
    enc = model.encode(src, lengths)
    hidden, keys = model.decoder.begin(enc)
    hidden = hidden if isinstance(hidden, tuple) else (hidden,)
    batch, width, d = src.shape[0], src.shape[1], model.decoder
    values = {"memory": enc.memory, "keys": keys, "mask": enc.mask,
              "src_map": src.clamp(max=d.vocab_size - 1), "h": hidden[0].transpose(0, 1),
              "feed": torch.zeros(batch, d.hidden_size), "coverage": torch.zeros(batch, width)}
    if len(hidden) == 2:
        values["c"] = hidden[1].transpose(0, 1)
    args = (torch.tensor([1, 5 % d.vocab_size]), *(values[n] for n in source + state))
    outputs = ["log_probs"] + (["attention"] if d.attention is not None else []) + [
        f"next_{n}" for n in state]
    per_row = {0: "batch"}
    with_source = {0: "batch", 1: "source"}
    axes = {"prev": per_row, "log_probs": {0: "batch", 1: "vocabulary"},
            "attention": with_source}
    for name in source + state:
        axes[name] = with_source if name in (*SOURCE_INPUTS, "coverage") else per_row
        if name in state:
            axes[f"next_{name}"] = axes[name]
    torch.onnx.export(StepGraph(model, source, state), args, str(path), dynamo=False,
                      input_names=["prev", *source, *state], output_names=outputs,
                      dynamic_axes=axes, opset_version=OPSET)


def _quantize_int8(out: Path) -> None:
    """Both graphs in int8 (:mod:`rnnseq.export.int8`), in place of the fp32 ones."""
    from .int8 import quantize_graph

    for name in (ENCODER, STEP):
        path = out / name
        fp32 = path.with_suffix(".fp32.onnx")
        path.rename(fp32)
        try:
            quantize_graph(fp32, path)
        finally:
            fp32.unlink(missing_ok=True)
