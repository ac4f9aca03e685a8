"""An exported directory (``rnnseq export``): what it holds and how it is checked.

::

    config.yaml  src_vocab.json  tgt_vocab.json  spm.{src,tgt}.model   as in a model directory
    encoder.onnx   src (B, S), src_lengths (B,) -> memory (B, S, Hm), keys (B, S, K), the
                   decoder's first state (h, c: (B, layers, H), batch first)
    step.onnx      one decoder step: prev (B,), the source side (memory, keys, mask, src_map)
                   and the state (h, c, feed, coverage) -> log_probs (B, V) (copy attention:
                   (B, V + S), the extended vocabulary's ids), attention (B, S), next_<state>
    export.json    this manifest: format, the graphs' input and output names, opset, versions

Every graph tensor is batch first, so selecting rows is the same for all of them. The step
graph is the model's own ``Decoder.step`` traced once (:mod:`rnnseq.export.onnx`), so the
graphs compute what the PyTorch model computes. Loading checks the manifest against the
graphs and the vocabularies, so a tampered directory fails with a message, not a wrong result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelDirError
from ..modeldir import TextSide, load_text_side

MANIFEST = "export.json"
FORMAT = "rnnseq-onnx"
FORMAT_VERSION = 1
ENCODER, STEP = "encoder.onnx", "step.onnx"
SOURCE_INPUTS = ("memory", "keys", "mask", "src_map")  # per sentence, never change
STATE_INPUTS = ("h", "c", "feed", "coverage")  # per hypothesis, replaced at every step


def is_exported(path: str | Path) -> bool:
    """Whether ``path`` is a directory written by ``rnnseq export``."""
    return (Path(path) / MANIFEST).is_file()


@dataclass
class Manifest:
    """What ``export.json`` records (see the module docstring)."""

    source: list[str]  # the step graph's source-side inputs, of SOURCE_INPUTS
    state: list[str]  # the decoder state, of STATE_INPUTS
    attention: bool
    copy: bool
    src_vocab_size: int
    tgt_vocab_size: int
    hidden_size: int
    parameters: int
    quantize: str | None
    opset: int
    versions: dict[str, str]


@dataclass
class ExportedBundle(TextSide):
    """An exported directory: its text side (config, vocabularies, tokenizers) and manifest."""

    manifest: Manifest
    directory: Path


def load_exported(directory: str | Path) -> ExportedBundle:
    """Read and check an exported directory (errors name the file and what is wrong)."""
    directory = Path(directory)
    text = load_text_side(directory)
    path = directory / MANIFEST
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ModelDirError(f"{path}: not a readable manifest ({err})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ModelDirError(f"{path}: not an rnnseq export manifest (format "
                            f"{raw.get('format') if isinstance(raw, dict) else None!r})")
    if raw.get("format_version") != FORMAT_VERSION:
        raise ModelDirError(f"{path}: format_version {raw.get('format_version')!r}; this "
                            f"rnnseq reads version {FORMAT_VERSION}: export the model again")
    try:
        manifest = Manifest(**{key: raw[key] for key in Manifest.__dataclass_fields__})
    except KeyError as err:
        raise ModelDirError(f"{path}: the manifest lacks {err.args[0]!r}") from None
    for side, vocab in (("src", text.src_vocab), ("tgt", text.tgt_vocab)):
        expected = getattr(manifest, f"{side}_vocab_size")
        if len(vocab) != expected:
            raise ModelDirError(f"{directory / f'{side}_vocab.json'}: {len(vocab)} entries, "
                                f"but the graphs were exported for {expected}")
    unknown = [n for n in manifest.source if n not in SOURCE_INPUTS] + [
        n for n in manifest.state if n not in STATE_INPUTS]
    if unknown:
        raise ModelDirError(f"{path}: unknown graph input {unknown[0]!r}")
    for graph in (ENCODER, STEP):
        if not (directory / graph).is_file():
            raise ModelDirError(f"{directory / graph}: missing; export the model again "
                                "(rnnseq export MODEL_DIR -o OUT)")
    return ExportedBundle(text.config, text.src_vocab, text.tgt_vocab, text.src_tokenizer,
                          text.tgt_tokenizer, manifest, directory)
