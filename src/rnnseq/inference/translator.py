"""Strings in, strings out: tokenize, batch by length, search, detokenize, restore order."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..data.batching import collate, make_batches
from ..data.extended import decode_extended, source_map
from ..errors import UsageError
from ..modeldir import ModelBundle
from ..precision import PRECISIONS, autocast
from .rules import Rules
from .search import Constraints, Hypothesis, beam_search, greedy_search, max_lengths

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


class Translator:
    """Translate strings with a loaded model (see :func:`rnnseq.load`)."""

    def __init__(
        self, bundle: ModelBundle, device: str | torch.device = "cpu", precision: str = "fp32",
        quantize: str | None = None,
    ) -> None:
        from .quantize import QUANTIZE, quantize_int8

        if precision not in PRECISIONS:
            raise UsageError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
        if quantize is not None and quantize not in QUANTIZE:
            raise UsageError(f"quantize must be {' or '.join(QUANTIZE)}, got {quantize!r}")
        self.bundle = bundle
        self.config = bundle.config
        self.device = torch.device(device)
        self.precision = precision
        self.quantize = quantize
        if quantize:
            if self.device.type != "cpu":
                raise UsageError(f"--quantize {quantize} runs on the CPU; drop --device "
                                 f"{self.device.type} or the quantization")
            if precision != "fp32":
                raise UsageError(f"--quantize {quantize} computes in int8 and fp32; drop "
                                 f"--precision {precision} or the quantization")
            self.model = quantize_int8(bundle.model)
        else:
            self.model = bundle.model.to(self.device).eval()

    def translate(
        self, sentences: list[str], *, beam_size: int | None = None,
        length_penalty: float | None = None, return_scores: bool = False,
        batch_size: int | None = None, max_batch_tokens: int | None = None, **rules,
    ) -> list[str] | list[tuple[str, float]]:
        """Best translation of each sentence, in input order (with its score on request).
        ``rules``: as for :meth:`translate_nbest`."""
        results = self.translate_nbest(
            sentences, beam_size=beam_size, n_best=1, length_penalty=length_penalty,
            batch_size=batch_size, max_batch_tokens=max_batch_tokens, **rules,
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
    ) -> list[list[Translation]]:
        """``n_best`` translations per sentence, best first, in input order. Every option left
        at None takes the model's ``decode`` config (:mod:`rnnseq.inference.rules` for the
        last four)."""
        dc = self.config.decode
        beam = dc.beam_size if beam_size is None else beam_size
        alpha = dc.length_penalty if length_penalty is None else length_penalty
        if beam < 1:
            raise UsageError(f"beam size must be >= 1, got {beam}")
        if n_best < 1 or n_best > beam:
            raise UsageError(f"n_best must be between 1 and the beam size ({beam}), got {n_best}")
        rules = self._rules(min_length, block_ngram_repeat, block_ngram_ignore, coverage_penalty)
        # The source tokenizer normalizes each sentence first, exactly as in training.
        src_tokens = [self.bundle.src_tokenizer.encode(s) for s in sentences]
        truncated: dict[int, int] = {}  # input -> its length before truncation
        for i, tokens in enumerate(src_tokens):
            if len(tokens) > dc.max_input_len:
                log.warning("input %d has %d tokens; translating its first %d "
                            "(decode.max_input_len)", i + 1, len(tokens), dc.max_input_len)
                truncated[i] = len(tokens)
                src_tokens[i] = tokens[: dc.max_input_len]
        src_ids = [self.bundle.src_vocab.encode(tokens) for tokens in src_tokens]
        # copy attention: each sentence's extended vocabulary (its source tokens' ids, its OOVs)
        extended = ([source_map(tokens, self.bundle.tgt_vocab) for tokens in src_tokens]
                    if self.model.decoder.copy else None)
        batches = make_batches(
            [len(s) for s in src_ids], None, max_batch_tokens or dc.max_batch_tokens, "tokens"
        )
        limit = batch_size or dc.batch_size
        batches = [b[i : i + limit] for b in batches for i in range(0, len(b), limit)]
        results: list[list[Translation] | None] = [None] * len(sentences)
        for index in batches:
            src_map = None if extended is None else [extended[i][0] for i in index]
            batch = collate([src_ids[i] for i in index], None, index, src_map).to(self.device)
            hyps = self._search(batch, beam, n_best, alpha, return_attention, rules)
            for i, sent_hyps in zip(index, hyps, strict=True):
                oov = [] if extended is None else extended[i][1]
                results[i] = [self._to_translation(h, src_tokens[i], oov, truncated.get(i))
                              for h in sent_hyps]
        return results  # type: ignore[return-value]

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
        if beta and self.model.decoder.attention is None:
            raise UsageError("coverage_penalty needs a model with attention (this model has "
                             "attention: none)")
        vocab = self.bundle.tgt_vocab
        missing = [t for t in ignore if t not in vocab.stoi]
        if block and missing:
            log.warning("block_ngram_ignore: %s not in the target vocabulary; ignored",
                        ", ".join(map(repr, missing)))
        ids = frozenset(vocab.stoi[t] for t in ignore if t in vocab.stoi)
        return Rules(min_length, block, ids, beta)

    @torch.no_grad()
    def _search(self, batch, beam, n_best, alpha, return_attention,
                rules: Rules) -> list[list[Hypothesis]]:
        dc = self.config.decode
        with autocast(self.device, self.precision):
            enc = self.model.encode(batch.src, batch.src_lengths)
            state = self.model.init_state(enc, batch.src_map)
            limits = max_lengths(batch.src_lengths, dc.max_length_ratio, dc.max_length)
            constraints = Constraints(rules, batch.src_lengths.tolist())
            if beam == 1:
                return greedy_search(self.model.decoder, state, limits, alpha, return_attention,
                                     constraints)
            return beam_search(self.model.decoder, state, limits, beam, n_best, alpha,
                               return_attention, constraints=constraints)

    def _to_translation(self, hyp: Hypothesis, source_tokens: list[str], oov: list[str],
                        truncated_from: int | None) -> Translation:
        tokens = decode_extended(hyp.tokens, self.bundle.tgt_vocab, oov)
        attention = None if hyp.attention is None else hyp.attention.float().cpu().tolist()
        return Translation(self.bundle.tgt_tokenizer.decode(tokens), tokens, hyp.score,
                           hyp.log_prob, attention, source_tokens, truncated_from)


def load(path: str, device: str = "cpu", precision: str = "fp32",
         quantize: str | None = None) -> Translator:
    """Load a model directory and return a :class:`Translator` (``precision``: fp32, bf16 or
    fp16; ``quantize``: ``"int8"`` for dynamic int8 on CPU)."""
    from ..modeldir import load_model_dir

    return Translator(load_model_dir(path, device), device, precision, quantize)
