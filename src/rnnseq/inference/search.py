"""Greedy search, sampling and batched beam search over any decoder that keeps the
:class:`StepDecoder` contract.

Search never looks inside a decoder state: all it may do with one is written down in
:class:`SearchState` (its device and number of rows; select rows; reorder rows within their
sentences). So every decoder variant works with every search, and an ensemble of decoders
(:mod:`rnnseq.inference.ensemble`) is just another implementation of the contract. Finished
sentences leave the working batch, which keeps each step's batch as small as the work left.
The arrays may be torch tensors or numpy arrays (the ONNX runtime's): search makes new ones
through the state's :class:`~rnnseq.arrays.Arrays` and imports neither library.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..arrays import Arrays
from ..data.vocab import BOS_ID, EOS_ID, PAD_ID
from .rules import NO_RULES, Rules


class SearchState(Protocol):
    """What search may do with a decoder state. Rows are sentences, beam hypotheses or
    samples; a state is immutable: each method returns a new one."""

    @property
    def arrays(self) -> Arrays:
        """Makes arrays of the state's kind, where its arrays live (search's token ids and
        scores)."""

    @property
    def batch_size(self) -> int:
        """The number of rows."""

    def index_select(self, index: Any) -> SearchState:
        """Rows ``index (R,)`` in that order: repeat rows (a beam per sentence), drop finished
        ones, follow back-pointers."""

    def reorder(self, index: Any) -> SearchState:
        """As :meth:`index_select`, for an ``index`` that maps every row to a row of the same
        source sentence: an implementation may leave the source side in place."""


class StepDecoder(Protocol):
    def step(self, prev: Any, state: SearchState) -> tuple[Any, SearchState, Any | None]:
        """The next token's log-probabilities ``(R, V)`` after ``prev (R,)``, the new state and
        the step's attention ``(R, S)`` (None for a model without attention)."""


@dataclass
class Hypothesis:
    """One output: token ids (without ``</s>``), its summed log-probability, its score
    (log-probability divided by the length penalty, plus the coverage penalty) and optionally
    attention ``(T, S)``."""

    tokens: list[int]
    log_prob: float
    score: float
    attention: Any | None = None  # an array (T, S)


def length_penalty(length: int, alpha: float) -> float:
    """GNMT length penalty ``((5 + length) / 6) ** alpha``; 1 when ``alpha`` is 0 (and
    infinite where it overflows a float, for absurd ``alpha``)."""
    if not alpha:
        return 1.0
    try:
        return ((5.0 + length) / 6.0) ** alpha
    except OverflowError:
        return math.inf


def max_lengths(src_lengths: Sequence[int], ratio: float, cap: int) -> list[int]:
    """Per-sentence output limit: ``min(cap, ceil(ratio * source_length) + 5)``."""
    return [min(cap, math.ceil(ratio * int(n)) + 5) for n in src_lengths]


@dataclass(frozen=True)
class Constraints:
    """What every search applies on top of the model's distribution: the decoding ``rules``
    (:mod:`rnnseq.inference.rules`; the coverage penalty needs ``src_lengths``) and, per
    sentence, a target ``prefix`` of token ids the output must start with (may be empty)."""

    rules: Rules = NO_RULES
    src_lengths: Sequence[int] | None = None
    prefixes: Sequence[Sequence[int]] | None = None

    def force(self, log_probs: Any, t: int, sentences: Sequence[int]) -> None:
        """Rows (of sentences ``sentences``) still inside their prefix at step ``t`` may only
        take its next token: every other entry becomes ``-inf`` (in place)."""
        if self.prefixes is None:
            return
        for row, sent in enumerate(sentences):
            prefix = self.prefixes[sent]
            if t < len(prefix):
                keep = float(log_probs[row, prefix[t]])
                log_probs[row] = float("-inf")
                log_probs[row, prefix[t]] = keep

    def penalty(self, attn_sum: Any | None, row: int, sent: int) -> float:
        """The coverage penalty of row ``row`` (of sentence ``sent``)."""
        if attn_sum is None:
            return 0.0
        if self.src_lengths is None:
            raise ValueError("the coverage penalty needs the source lengths (src_lengths)")
        return self.rules.penalty(attn_sum[row], self.src_lengths[sent])


NO_CONSTRAINTS = Constraints()


def _step(decoder: StepDecoder, prev, state, c: Constraints, t: int, sentences: Sequence[int],
          histories: Callable[[], list[list[int]]]):
    """One decoder step with ``<pad>`` and ``<s>`` ruled out as outputs, then whatever the
    rules rule out for rows whose outputs so far are ``histories()``, then the prefixes."""
    lp, state, weights = decoder.step(prev, state)
    lp[:, PAD_ID] = float("-inf")
    lp[:, BOS_ID] = float("-inf")
    if c.rules.needs_history(t):
        c.rules.rule_out(lp, histories(), t)
    c.force(lp, t, sentences)
    return lp, state, weights


def _attention_sum(total, weights, rules: Rules, arrays: Arrays):
    """The running attention sum ``(rows, S)`` the coverage penalty needs (None without it)."""
    if not rules.coverage_penalty:
        return None
    if weights is None:
        raise ValueError("the coverage penalty needs a model with attention")
    weights = arrays.float32(weights)
    return weights if total is None else total + weights


def _select_rows(state: SearchState, index: Any, within_sentences: bool, *arrays: Any | None):
    """The state and each array (row-aligned with it, or None) at rows ``index``."""
    state = state.reorder(index) if within_sentences else state.index_select(index)
    return (state, *(None if x is None else x[index] for x in arrays))


def _hypothesis(tokens: list[int], ended: bool, log_prob: float, alpha: float, cp: float,
                attention: Any | None) -> Hypothesis:
    """A finished hypothesis; one that ended with ``</s>`` counts it in its length."""
    length = len(tokens) + ended
    return Hypothesis(tokens, log_prob, log_prob / length_penalty(length, alpha) + cp, attention)


def greedy_search(
    decoder: StepDecoder, state: SearchState, max_lens: list[int], alpha: float = 0.0,
    return_attention: bool = False, constraints: Constraints = NO_CONSTRAINTS,
    choose: Callable[[Any, Sequence[int]], Any] | None = None,
) -> list[list[Hypothesis]]:
    """One token per step for each row of ``state``: the most probable (``choose=None``)
    or a sample (:class:`rnnseq.inference.sampling.Sampler`); ``choose(log_probs (R, V),
    rows)`` is told which of the starting rows it chooses for. Returns one hypothesis per row.
    """
    c, arrays = constraints, state.arrays
    rows = state.batch_size
    tokens: list[list[int]] = [[] for _ in range(rows)]
    log_probs = [0.0] * rows
    attn: list[list[Any]] = [[] for _ in range(rows)]
    done: list[Hypothesis | None] = [None] * rows
    active = list(range(rows))
    prev = arrays.ids([BOS_ID] * rows)
    attn_sum = None
    t = 0
    while active:
        lp, state, weights = _step(decoder, prev, state, c, t, active,
                                   lambda rows=active: [tokens[r] for r in rows])
        attn_sum = _attention_sum(attn_sum, weights, c.rules, arrays)
        if choose is None:
            chosen_lp, chosen = arrays.best(lp)
        else:
            chosen = choose(lp, active)
            chosen_lp = lp[arrays.ids(range(len(active))), chosen]
        keep = []
        for i, (row, tok, tok_lp) in enumerate(zip(active, chosen.tolist(), chosen_lp.tolist(),
                                                   strict=True)):
            log_probs[row] += tok_lp
            if return_attention and weights is not None:
                attn[row].append(weights[i])
            ended = tok == EOS_ID
            if not ended:
                tokens[row].append(tok)
            if ended or t + 1 >= max_lens[row]:
                done[row] = _hypothesis(tokens[row], ended, log_probs[row], alpha,
                                        c.penalty(attn_sum, i, row),
                                        arrays.stack(attn[row]) if attn[row] else None)
            else:
                keep.append(i)
        t += 1
        if len(keep) < len(active):
            active = [active[i] for i in keep]
            if not active:
                break
            index = arrays.ids(keep)
            state, chosen, attn_sum = _select_rows(state, index, False, chosen, attn_sum)
        prev = chosen
    return [[h] for h in done]  # type: ignore[list-item]


def beam_search(
    decoder: StepDecoder, state: SearchState, max_lens: list[int], beam_size: int,
    n_best: int = 1, alpha: float = 0.0, return_attention: bool = False,
    exact_stop: bool = True, constraints: Constraints = NO_CONSTRAINTS,
) -> list[list[Hypothesis]]:
    """Batched beam search. Returns, per sentence, ``n_best`` hypotheses, best first.

    At each step the ``2 * beam_size`` best expansions of a sentence are examined in order
    (:func:`_expand`, :func:`_split`): those ending in ``</s>`` among the first ``beam_size``
    are finished (scored with the GNMT length penalty ``alpha``), the first ``beam_size``
    others stay alive. A sentence is done once it has ``beam_size`` finished hypotheses or
    reaches its length limit (its alive beams are then finished as they are), or as soon as no
    alive beam can end up among its ``n_best`` (:func:`_cannot_improve`, the exact stop: it
    changes no output, it only skips steps that cannot matter).
    """
    if n_best > beam_size:
        raise ValueError(f"n_best ({n_best}) cannot exceed beam_size ({beam_size})")
    c, batch, k, arrays = constraints, state.batch_size, beam_size, state.arrays
    state = state.index_select(arrays.ids([sent for sent in range(batch) for _ in range(k)]))
    # only the first beam of each sentence is live at the start
    scores = arrays.floats([[0.0] + [float("-inf")] * (k - 1)] * batch)
    history: list[list[int]] = [[] for _ in range(batch * k)]  # each row's tokens so far
    attn_history: Any | None = None
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    active = list(range(batch))
    prev = arrays.ids([BOS_ID] * (batch * k))
    attn_sum = None
    t = 0
    while active:
        lp, state, weights = _step(decoder, prev, state, c, t,
                                   [sent for sent in active for _ in range(k)],
                                   lambda history=history: history)
        attn_sum = _attention_sum(attn_sum, weights, c.rules, arrays)
        if return_attention and weights is not None:
            step_attn = weights[:, None, :]
            attn_history = (step_attn if attn_history is None
                            else arrays.concat([attn_history, step_attn], axis=1))
        next_rows, next_toks, next_scores, keep = [], [], [], []
        for sent, candidates in zip(active, _expand(scores, lp, k, arrays), strict=True):
            ended, alive = _split(candidates, k)
            at_limit = t + 1 >= max_lens[sent]
            for row, tok, score in ended + (alive if at_limit else []):
                finished[sent].append(_finish(history, attn_history, row, tok, score, alpha,
                                              c.penalty(attn_sum, row, sent)))
            if at_limit or len(finished[sent]) >= k or not alive:
                continue
            if exact_stop and _cannot_improve(finished[sent], alive[0][2], t, max_lens[sent],
                                              n_best, alpha):
                continue
            alive += [(alive[0][0], alive[0][1], float("-inf"))] * (k - len(alive))  # dead
            next_rows += [row for row, _, _ in alive]
            next_toks += [tok for _, tok, _ in alive]
            next_scores.append([score for _, _, score in alive])
            keep.append(sent)
        t += 1
        if not keep:
            break
        index = arrays.ids(next_rows)
        state, attn_history, attn_sum = _select_rows(
            state, index, len(keep) == len(active), attn_history, attn_sum)
        history = [history[row] + [tok] for row, tok in zip(next_rows, next_toks, strict=True)]
        prev = arrays.ids(next_toks)
        scores = arrays.floats(next_scores)
        active = keep
    return [sorted(f, key=lambda h: -h.score)[:n_best] for f in finished]


def _expand(scores: Any, log_probs: Any, k: int, arrays: Arrays
            ) -> list[list[tuple[float, int, int]]]:
    """Each sentence's ``2k`` best one-token extensions of its ``k`` beams (``scores (n, k)``,
    ``log_probs (n * k, V)``), best first, as ``(log-probability, row, token)``; impossible
    ones (``-inf``) left out."""
    n, vocab = scores.shape[0], log_probs.shape[-1]
    total = (scores.reshape(-1, 1) + log_probs).reshape(n, k * vocab)
    top, index = arrays.topk(total, min(2 * k, k * vocab))
    rows = index // vocab + k * arrays.ids(range(n))[:, None]
    return [[(s, r, tok) for s, r, tok in zip(ss, rs, toks, strict=True) if s != float("-inf")]
            for ss, rs, toks in zip(top.tolist(), rows.tolist(), (index % vocab).tolist(),
                                    strict=True)]


def _split(candidates: list[tuple[float, int, int]], k: int):
    """A sentence's candidates, in order, into those that end now (``</s>`` among the first
    ``k``: ``(row, None, score)``) and the first ``k`` others, which stay alive
    (``(row, token, score)``)."""
    ended, alive = [], []
    for rank, (score, row, tok) in enumerate(candidates):
        if tok == EOS_ID:
            if rank < k:
                ended.append((row, None, score))
        elif len(alive) < k:
            alive.append((row, tok, score))
    return ended, alive


def _cannot_improve(finished: list[Hypothesis], best_alive: float, t: int, max_len: int,
                    n_best: int, alpha: float) -> bool:
    """Whether no alive beam can still enter the ``n_best``. A log-probability only falls as
    a hypothesis grows, so the best alive beam's final score is at most its log-probability
    now (``best_alive``) divided by the largest length penalty it could still reach (lengths
    ``t + 2 .. max_len + 1``). The rules keep this bound: ruling tokens out never raises a
    log-probability, a coverage penalty is ``<= 0``, and a forced prefix only rules out."""
    if len(finished) < n_best:
        return False
    reach = max(length_penalty(t + 2, alpha), length_penalty(max_len + 1, alpha))
    kth = sorted((h.score for h in finished), reverse=True)[n_best - 1]
    return kth >= best_alive / reach


def _finish(history: list[list[int]], attn_history, row: int, last_tok: int | None,
            log_prob: float, alpha: float, cp: float) -> Hypothesis:
    """Row ``row``'s hypothesis, ended by ``</s>`` (``last_tok`` None) or cut at the length
    limit after ``last_tok``."""
    tokens = history[row] + ([last_tok] if last_tok is not None else [])
    attention = None if attn_history is None else attn_history[row]  # (length, S)
    return _hypothesis(tokens, last_tok is None, log_prob, alpha, cp, attention)
