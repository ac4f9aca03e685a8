"""Strings in, strings out: tokenize, batch by length, search, detokenize, restore order.

The translator never touches a model itself: a backend encodes batches and steps decoders
(:class:`~rnnseq.inference.torch_backend.TorchBackend` for model directories,
:class:`~rnnseq.runtime.onnx_backend.OnnxBackend` for exported ones), so this module, like
search, imports no torch.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..config import Config, task_tags
from ..data.batching import make_batches
from ..data.extended import decode_extended, extend_target, source_map
from ..errors import UsageError
from .rules import Rules
from .search import (
    Constraints,
    Hypothesis,
    SearchState,
    StepDecoder,
    beam_search,
    greedy_search,
    max_lengths,
)

if TYPE_CHECKING:
    from .sampling import Sampling

log = logging.getLogger("rnnseq")


@dataclass
class Translation:
    """One output hypothesis as text, with its tokens, scores and optional attention
    (``attention[i][j]``: output token ``i`` on ``source_tokens[j]``, the source as the model
    read it: normalized and tokenized, truncated to ``decode.max_input_len``). ``truncated_from``
    is the input's length in tokens when it was truncated (None otherwise)."""

    text: str
    tokens: list[str]
    score: float
    log_prob: float
    attention: list[list[float]] | None = None
    source_tokens: list[str] | None = None
    truncated_from: int | None = None


@dataclass
class _Inputs:
    """Source sentences as the model reads them: ``tokens`` (normalized, tokenized,
    truncated), ``truncated`` (input -> length before truncation) and, for copy attention,
    each sentence's extended-vocabulary ``src_map`` and ``oov`` tokens."""

    tokens: list[list[str]]
    truncated: dict[int, int]
    src_map: list[list[int]]
    oov: list[list[str]]


class Backend(Protocol):
    """What a translator needs from the models it drives. ``bundle`` holds the first
    member's config, vocabularies and tokenizers (``config``, ``src_vocab``, ``tgt_vocab``,
    ``src_tokenizer``, ``tgt_tokenizer``)."""

    bundle: Any
    copy: bool  # outputs are extended-vocabulary ids (copy attention)
    has_attention: bool
    precision: str
    quantize: str | None

    @property
    def num_parameters(self) -> int: ...

    def decoding(self) -> contextlib.AbstractContextManager:
        """The context encoding and search run in."""

    def workers(self, count: int) -> contextlib.AbstractContextManager[Callable[[], None]]:
        """While ``count`` threads decode batches at once: the function each calls first (to
        take its share of the intra-op threads); the settings come back on exit."""

    def start(self, tokens: Sequence[Sequence[str]], src_maps: Sequence[Sequence[int]]
              ) -> tuple[StepDecoder, SearchState]:
        """Encode a batch of tokenized sources: the decoder and state search starts from."""

    def sampler(self, sampling: Sampling, streams: list[tuple[int, int]]) -> Any:
        """``choose`` for greedy search that samples (one random stream per row)."""

    def score(self, tokens: Sequence[Sequence[str]], src_maps: Sequence[Sequence[int]],
              targets: Sequence[Sequence[int]]) -> list[float]:
        """Each target's log-probability (``</s>`` included) by teacher forcing."""


class Translator:
    """Translate strings with a loaded model, or an ensemble of models decoding as one (see
    :func:`rnnseq.load`). ``bundle`` is a model directory's :class:`~rnnseq.modeldir.ModelBundle`
    (or a list: an ensemble, run by a :class:`~rnnseq.inference.torch_backend.TorchBackend`
    with the other arguments) or a :class:`Backend`. ``bundle`` and ``config`` are the first
    member's: its tokenizers and vocabularies serve all, its ``decode`` config gives the
    defaults."""

    def __init__(self, bundle: Any, device: Any = "cpu", precision: str = "fp32",
                 quantize: str | None = None, mixture: str = "probability",
                 paths: list[str] | None = None) -> None:
        if isinstance(bundle, list) or not hasattr(bundle, "start"):  # model directories
            from .torch_backend import TorchBackend

            bundle = TorchBackend(bundle, device, precision, quantize, mixture, paths)
        self.backend: Backend = bundle
        self.bundle = bundle.bundle
        self.config: Config = self.bundle.config

    @property
    def precision(self) -> str:
        return self.backend.precision

    @property
    def quantize(self) -> str | None:
        return self.backend.quantize

    @property
    def copy(self) -> bool:
        return self.backend.copy

    @property
    def num_parameters(self) -> int:
        return self.backend.num_parameters

    def translate(
        self, sentences: list[str], *, beam_size: int | None = None,
        length_penalty: float | None = None, return_scores: bool = False,
        batch_size: int | None = None, max_batch_tokens: int | None = None, **options,
    ) -> list[str] | list[tuple[str, float]]:
        """Best translation of each sentence, in input order (with its score on request).
        ``options``: as for :meth:`translate_nbest`."""
        results = self.translate_nbest(
            sentences, beam_size=beam_size, n_best=1, length_penalty=length_penalty,
            batch_size=batch_size, max_batch_tokens=max_batch_tokens, **options,
        )
        if return_scores:
            return [(r[0].text, r[0].score) for r in results]
        return [r[0].text for r in results]

    def translate_nbest(
        self, sentences: list[str], *, beam_size: int | None = None, n_best: int = 1,
        length_penalty: float | None = None, batch_size: int | None = None,
        max_batch_tokens: int | None = None, return_attention: bool = False,
        min_length: int | None = None, block_ngram_repeat: int | None = None,
        block_ngram_ignore: list[str] | None = None, coverage_penalty: float | None = None,
        sampling: Sampling | None = None, prefixes: list[str] | None = None,
        line_numbers: list[int] | None = None, task: str | None = None,
        workers: int | None = None,
    ) -> list[list[Translation]]:
        """``n_best`` translations per sentence, best first, in input order. Every option left
        at None takes the model's ``decode`` config (:mod:`rnnseq.inference.rules` for the
        four after ``return_attention``). ``sampling`` draws ``n_best`` independent samples
        per sentence instead of searching (:mod:`rnnseq.inference.sampling`; each line's
        samples are seeded by its number: ``line_numbers[i]``, by default ``i``); ``prefixes``
        (one per sentence, may be empty) are target text every output starts with. A
        multi-task model (``data.tasks``) does ``task`` (default: its main task), or the task
        whose tag a line starts with. ``workers`` (default ``decode.workers``) decode that
        many batches at once, each on its own thread with its share of the CPU threads (in
        fp32 and int8 the outputs are the same; bf16 multiplies may sum in another order)."""
        dc = self.config.decode
        workers = dc.workers if workers is None else workers
        if workers < 1:
            raise UsageError(f"workers must be >= 1, got {workers}")
        beam = dc.beam_size if beam_size is None else beam_size
        if sampling is not None:
            if beam_size not in (None, 1):
                raise UsageError(f"sampling draws one token at a time; it takes no beam size "
                                 f"(got {beam_size})")
            beam = 1
        alpha = dc.length_penalty if length_penalty is None else length_penalty
        if beam < 1:
            raise UsageError(f"beam size must be >= 1, got {beam}")
        if n_best < 1 or (n_best > beam and sampling is None):
            raise UsageError(f"n_best must be between 1 and the beam size ({beam}), got {n_best}")
        if line_numbers is not None and len(line_numbers) != len(sentences):
            raise ValueError("one line number per sentence")
        if prefixes is not None and len(prefixes) != len(sentences):
            raise UsageError(f"{len(prefixes)} prefixes for {len(sentences)} input lines; give "
                             "one per line (an empty line for none)")
        rules = self._rules(min_length, block_ngram_repeat, block_ngram_ignore, coverage_penalty)
        inputs = self._inputs(sentences, task)
        forced = None if prefixes is None else [
            self._target_ids(p, inputs.oov[i]) for i, p in enumerate(prefixes)]

        def run(index: list[int]) -> list[list[Hypothesis]]:
            constraints = Constraints(rules, [len(inputs.tokens[i]) for i in index],
                                      None if forced is None else [forced[i] for i in index])
            lines = index if line_numbers is None else [line_numbers[i] for i in index]
            return self._search(inputs, index, beam, n_best, alpha, return_attention,
                                constraints, sampling, lines)

        batches = self._batches(inputs, batch_size, max_batch_tokens)
        results: list[list[Translation] | None] = [None] * len(sentences)
        for index, hyps in zip(batches, self._map(run, batches, workers), strict=True):
            for i, sent_hyps in zip(index, hyps, strict=True):
                results[i] = [self._to_translation(h, inputs.tokens[i], inputs.oov[i],
                                                   inputs.truncated.get(i)) for h in sent_hyps]
        return results  # type: ignore[return-value]

    def _map(self, run: Callable[[list[int]], Any], batches: list[list[int]],
             workers: int) -> list:
        """``run`` over ``batches``, in order: on ``workers`` threads when there is more than
        one batch to share. Batches are independent and each is searched as it would be
        alone."""
        workers = min(workers, len(batches))
        if workers <= 1:
            return [run(index) for index in batches]
        with self.backend.workers(workers) as first:
            pool = ThreadPoolExecutor(workers, initializer=first)
            try:
                return list(pool.map(run, batches))
            finally:  # a failure (or Ctrl-C) starts no further batch
                pool.shutdown(wait=True, cancel_futures=True)

    def score(self, sentences: list[str], targets: list[str], *,
              batch_size: int | None = None, task: str | None = None) -> list[float]:
        """The log-probability each target has as the translation of its sentence (its tokens
        and ``</s>``; no length penalty, no decoding rules), by teacher forcing."""
        if len(targets) != len(sentences):
            raise UsageError(f"{len(targets)} targets for {len(sentences)} input lines; give "
                             "one per line")
        inputs = self._inputs(sentences, task)
        ids = [self._target_ids(t, inputs.oov[i]) for i, t in enumerate(targets)]
        scores = [0.0] * len(sentences)
        for index in self._batches(inputs, batch_size, None):
            values = self.backend.score([inputs.tokens[i] for i in index],
                                        [inputs.src_map[i] for i in index],
                                        [ids[i] for i in index])
            for i, value in zip(index, values, strict=True):
                scores[i] = value
        return scores

    def _rules(self, min_length, block_ngram_repeat, block_ngram_ignore,
               coverage_penalty) -> Rules:
        """The decoding rules: each argument, or the ``decode`` config where it is None."""
        dc = self.config.decode
        pick = lambda value, default: default if value is None else value  # noqa: E731
        min_length = pick(min_length, dc.min_length)
        block = pick(block_ngram_repeat, dc.block_ngram_repeat)
        ignore = pick(block_ngram_ignore, dc.block_ngram_ignore)
        beta = pick(coverage_penalty, dc.coverage_penalty)
        for name, value in (("min_length", min_length), ("block_ngram_repeat", block),
                            ("coverage_penalty", beta)):
            if not value >= 0:  # also refuses NaN
                raise UsageError(f"{name} must be >= 0, got {value}")
        if beta and not self.backend.has_attention:
            raise UsageError("coverage_penalty needs a model with attention (this model has "
                             "attention: none)")
        vocab = self.bundle.tgt_vocab
        missing = [t for t in ignore if t not in vocab.stoi]
        if block and missing:
            log.warning("block_ngram_ignore: %s not in the target vocabulary; ignored",
                        ", ".join(map(repr, missing)))
        ids = frozenset(vocab.stoi[t] for t in ignore if t in vocab.stoi)
        return Rules(min_length, block, ids, beta)

    @property
    def tasks(self) -> dict[str, str | None]:
        """A multi-task model's tasks and their tags, the main task first (empty otherwise)."""
        return task_tags(self.config.data)

    def task_tag(self, task: str | None) -> str | None:
        """The tag of ``task`` (None: the main task's; None also for a task without a tag or
        a single-task model); an unknown task is a :class:`UsageError`."""
        tags = self.tasks
        if task is None:
            return next(iter(tags.values()), None)
        if task not in tags:
            raise UsageError(f"unknown task {task!r}; " + (
                f"this model's tasks are {', '.join(tags)}" if tags
                else "this model was trained on one task"))
        return tags[task]

    def _inputs(self, sentences: list[str], task: str | None = None) -> _Inputs:
        """Tokenize (the source tokenizer normalizes first, exactly as in training), put the
        task's tag first, truncate to ``decode.max_input_len``, and find each sentence's
        extended vocabulary (copy)."""
        limit = self.config.decode.max_input_len
        default = self.task_tag(task)
        known = {tag for tag in self.tasks.values() if tag}
        tokens = []
        for s in sentences:
            first, _, rest = s.strip().partition(" ")
            tag, text = (first, rest) if first in known else (default, s)
            tokens.append(([tag] if tag else []) + self.bundle.src_tokenizer.encode(text))
        truncated: dict[int, int] = {}  # input -> its length before truncation
        for i, toks in enumerate(tokens):
            if len(toks) > limit:
                log.warning("input %d has %d tokens; translating its first %d "
                            "(decode.max_input_len)", i + 1, len(toks), limit)
                truncated[i] = len(toks)
                tokens[i] = toks[:limit]
        extended = [source_map(t, self.bundle.tgt_vocab) if self.copy else ([], [])
                    for t in tokens]
        return _Inputs(tokens, truncated, [m for m, _ in extended], [o for _, o in extended])

    def _batches(self, inputs: _Inputs, batch_size: int | None,
                 max_batch_tokens: int | None) -> list[list[int]]:
        dc = self.config.decode
        batches = make_batches([len(t) for t in inputs.tokens], None,
                               max_batch_tokens or dc.max_batch_tokens, "tokens")
        limit = batch_size or dc.batch_size
        return [b[i : i + limit] for b in batches for i in range(0, len(b), limit)]

    def _target_ids(self, text: str, oov: list[str]) -> list[int]:
        """Target text as ids: the target vocabulary's, or (copy attention) the extended ids of
        source tokens it lacks."""
        tokens = self.bundle.tgt_tokenizer.encode(text)
        if self.copy:
            return extend_target(tokens, self.bundle.tgt_vocab, oov)
        return self.bundle.tgt_vocab.encode(tokens)

    def _search(self, inputs: _Inputs, index: list[int], beam: int, n_best: int,
                alpha: float, return_attention: bool, constraints: Constraints,
                sampling: Sampling | None, lines: list[int]) -> list[list[Hypothesis]]:
        dc = self.config.decode
        with self.backend.decoding():
            decoder, state = self.backend.start([inputs.tokens[i] for i in index],
                                                [inputs.src_map[i] for i in index])
            limits = max_lengths(constraints.src_lengths, dc.max_length_ratio, dc.max_length)
            if constraints.prefixes is not None:  # room for the prefix and what follows it
                limits = [max(n, len(p) + 5) for n, p in zip(limits, constraints.prefixes,
                                                             strict=True)]
            if sampling is not None:
                return self._sample(decoder, state, limits, n_best, alpha, return_attention,
                                    constraints, sampling, lines)
            if beam == 1:
                return greedy_search(decoder, state, limits, alpha, return_attention,
                                     constraints)
            return beam_search(decoder, state, limits, beam, n_best, alpha, return_attention,
                               constraints=constraints)

    def _sample(self, decoder, state, limits, n, alpha, return_attention, c: Constraints,
                sampling: Sampling, lines: list[int]) -> list[list[Hypothesis]]:
        """``n`` samples per sentence (rows repeated ``n`` times), best first."""
        choose = self.backend.sampler(sampling, [(line, j) for line in lines for j in range(n)])
        rows = state.arrays.ids([i for i in range(len(lines)) for _ in range(n)])
        each = lambda xs: None if xs is None else [x for x in xs for _ in range(n)]  # noqa: E731
        c = Constraints(c.rules, each(c.src_lengths), each(c.prefixes))
        hyps = greedy_search(decoder, state.index_select(rows), each(limits), alpha,
                             return_attention, c, choose=choose)
        return [sorted((h for [h] in hyps[i * n : (i + 1) * n]), key=lambda h: -h.score)
                for i in range(len(lines))]

    def _to_translation(self, hyp: Hypothesis, source_tokens: list[str], oov: list[str],
                        truncated_from: int | None) -> Translation:
        tokens = decode_extended(hyp.tokens, self.bundle.tgt_vocab, oov)
        attention = None if hyp.attention is None else hyp.attention.tolist()
        return Translation(self.bundle.tgt_tokenizer.decode(tokens), tokens, hyp.score,
                           hyp.log_prob, attention, source_tokens, truncated_from)


def load(path: str | list[str], device: str = "cpu", precision: str = "fp32",
         quantize: str | None = None, mixture: str = "probability") -> Translator:
    """Load a model directory, or several as an ensemble (``mixture``: ``probability`` or
    ``log-linear``, :mod:`rnnseq.inference.ensemble`), and return a :class:`Translator`
    (``precision``: fp32, bf16 or fp16; ``quantize``: ``"int8"`` for dynamic int8 on CPU).
    A directory written by ``rnnseq export`` runs with onnxruntime, without torch."""
    from ..runtime.exported import is_exported

    paths = [path] if isinstance(path, str) else list(path)
    if not paths:
        raise UsageError("no model directory given")
    exported = [p for p in paths if is_exported(p)]
    if exported:
        from ..runtime.onnx_backend import OnnxBackend

        if len(paths) > 1:
            raise UsageError(f"{exported[0]} is an exported model; exported models decode "
                             "alone, not in an ensemble")
        return Translator(OnnxBackend(paths[0], device, precision, quantize))
    from ..modeldir import load_model_dir

    bundles = [load_model_dir(p, device) for p in paths]
    return Translator(bundles if len(bundles) > 1 else bundles[0], device, precision, quantize,
                      mixture, paths)
