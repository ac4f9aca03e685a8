"""Exported models run by onnxruntime: the translator's backend without torch.

:class:`OnnxBackend` encodes a batch with ``encoder.onnx``; :class:`OnnxDecoder` steps it with
``step.onnx``. Both keep the contracts of :mod:`rnnseq.inference.search` (``StepDecoder``,
``SearchState``), so the same greedy and beam search, decoding rules, n-best lists and scores
serve PyTorch and exported models. Only onnxruntime and numpy are imported.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..arrays import NumpyArrays
from ..data.vocab import BOS_ID, EOS_ID, PAD_ID
from ..errors import ModelDirError, UsageError
from .exported import ENCODER, STEP, ExportedBundle, load_exported

ARRAYS = NumpyArrays()


class OnnxState:
    """A decoder state as numpy arrays, batch first: ``source`` (memory, keys, mask,
    src_map: per sentence) and ``rows`` (h, c, feed, coverage: per hypothesis)."""

    def __init__(self, source: dict[str, np.ndarray], rows: dict[str, np.ndarray],
                 ext_size: int) -> None:
        self.source, self.rows, self.ext_size = source, rows, ext_size

    arrays = ARRAYS

    @property
    def batch_size(self) -> int:
        return int(self.source["mask"].shape[0])

    def index_select(self, index: np.ndarray) -> OnnxState:
        return OnnxState({k: v[index] for k, v in self.source.items()},
                         {k: v[index] for k, v in self.rows.items()}, self.ext_size)

    def reorder(self, index: np.ndarray) -> OnnxState:
        return OnnxState(self.source, {k: v[index] for k, v in self.rows.items()},
                         self.ext_size)


class OnnxDecoder:
    """``step.onnx`` as a :class:`~rnnseq.inference.search.StepDecoder`."""

    def __init__(self, session: Any, bundle: ExportedBundle) -> None:
        self.session = session
        self.manifest = bundle.manifest
        self.inputs = {i.name for i in session.get_inputs()}
        self.outputs = [o.name for o in session.get_outputs()]

    def step(self, prev: np.ndarray, state: OnnxState
             ) -> tuple[np.ndarray, OnnxState, np.ndarray | None]:
        feeds = {"prev": prev, **state.source, **state.rows}
        values = dict(zip(self.outputs, self.session.run(
            self.outputs, {k: v for k, v in feeds.items() if k in self.inputs}), strict=True))
        log_probs = values["log_probs"]
        if self.manifest.copy:  # (B, V + S): the extended ids this batch has
            log_probs = log_probs[:, : state.ext_size]
        rows = {name: values[f"next_{name}"] for name in self.manifest.state}
        return log_probs, OnnxState(state.source, rows, state.ext_size), values.get("attention")


class OnnxBackend:
    """The backend of :class:`~rnnseq.inference.translator.Translator` for a directory that
    ``rnnseq export`` wrote. Exported graphs compute in fp32 (or int8, if exported with
    ``--quantize int8``) on the CPU; ``threads`` sets onnxruntime's (default: its own)."""

    def __init__(self, path: str | Path, device: str = "cpu", precision: str = "fp32",
                 quantize: str | None = None, threads: int | None = None) -> None:
        if str(device) != "cpu":
            raise UsageError(f"{path} is an exported model; it runs on the CPU with "
                             f"onnxruntime (drop --device {device})")
        if precision != "fp32":
            raise UsageError(f"{path} is an exported model; it computes in fp32 (drop "
                             f"--precision {precision}; export with --quantize int8 for int8)")
        self.bundle = load_exported(path)
        manifest = self.bundle.manifest
        if quantize is not None and quantize != manifest.quantize:
            raise UsageError(f"{path} is an exported model ({manifest.quantize or 'fp32'}); "
                             f"its quantization is chosen at export (rnnseq export --quantize "
                             f"{quantize}): drop --quantize here")
        self.precision, self.quantize = "fp32", manifest.quantize
        self.copy, self.has_attention = manifest.copy, manifest.attention
        self.encoder = _session(self.bundle.directory / ENCODER, threads)
        self.encoder_outputs = [o.name for o in self.encoder.get_outputs()]
        self.decoder = OnnxDecoder(_session(self.bundle.directory / STEP, threads), self.bundle)

    @property
    def num_parameters(self) -> int:
        return self.bundle.manifest.parameters

    def decoding(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def workers(self, count: int) -> Iterator[Callable[[], None]]:
        """onnxruntime sessions are safe to run from several threads; each call keeps the
        session's own intra-op threads (``threads``), so set those to share the cores."""
        yield lambda: None

    def start(self, tokens: Sequence[Sequence[str]], src_maps: Sequence[Sequence[int]]
              ) -> tuple[OnnxDecoder, OnnxState]:
        vocab, manifest = self.bundle.src_vocab, self.bundle.manifest
        lengths = np.array([len(t) for t in tokens], dtype=np.int64)
        src = _pad([vocab.encode(t) for t in tokens])
        values = dict(zip(self.encoder_outputs, self.encoder.run(
            self.encoder_outputs, {"src": src, "src_lengths": lengths}), strict=True))
        batch, width = src.shape
        source = {"memory": values["memory"], "mask": np.arange(width)[None, :] < lengths[:, None]}
        if "keys" in values:
            source["keys"] = values["keys"]
        ext_size = 0
        if manifest.copy:
            source["src_map"] = _pad(src_maps, width)
            ext_size = max(len(self.bundle.tgt_vocab), int(source["src_map"].max()) + 1)
        rows = {"h": values["h"]}
        if "c" in manifest.state:
            rows["c"] = values["c"]
        if "feed" in manifest.state:
            rows["feed"] = np.zeros((batch, manifest.hidden_size), dtype=np.float32)
        if "coverage" in manifest.state:
            rows["coverage"] = np.zeros((batch, width), dtype=np.float32)
        return self.decoder, OnnxState(source, rows, ext_size)

    def sampler(self, sampling: Any, streams: list[tuple[int, int]]) -> Any:
        raise UsageError("sampling (--sample) runs with PyTorch models; translate with the "
                         "model directory this export came from")

    def score(self, tokens: Sequence[Sequence[str]], src_maps: Sequence[Sequence[int]],
              targets: Sequence[Sequence[int]]) -> list[float]:
        """Each target's log-probability (its ids, then ``</s>``), stepping the decoder along
        it: the sum of what each step gives the next reference token."""
        decoder, state = self.start(tokens, src_maps)
        gold = _pad([[*t, EOS_ID] for t in targets])
        prev = np.full(len(targets), BOS_ID, dtype=np.int64)
        rows = np.arange(len(targets))
        totals = np.zeros(len(targets), dtype=np.float64)
        for t in range(gold.shape[1]):
            log_probs, state, _ = decoder.step(prev, state)
            real = gold[:, t] != PAD_ID
            totals += np.where(real, log_probs[rows, gold[:, t]], 0.0)
            prev = gold[:, t]
        return totals.tolist()


def _pad(rows: Sequence[Sequence[int]], width: int | None = None) -> np.ndarray:
    """Id rows as one ``(B, width)`` int64 array padded with ``<pad>`` (at least 1 wide)."""
    width = width or max(1, max((len(r) for r in rows), default=0))
    out = np.full((len(rows), width), PAD_ID, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def _session(path: Path, threads: int | None) -> Any:
    """An onnxruntime session on the CPU (a graph that does not load names its file)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UsageError("exported models run with onnxruntime: pip install "
                         "'rnnseq[onnx]'") from None
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    # Worker threads that spin between calls take the cores from the Python search that runs
    # between steps: without spinning, greedy decoding ran 30 % faster on 2 cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ModelDirError(f"{path}: onnxruntime cannot load it ({err})") from None
