"""Greedy and batched beam search over any decoder with ``step(prev_tokens, state)``.

The decoder contract: ``step(prev (B,), state) -> (log_probs (B, V), state, attn (B, S) | None)``
and ``state.index_select(rows)``; a state may also offer ``reorder(rows)`` for rows that stay
within their sentence (beam back-pointers), which can leave the source side in place. Search
never looks inside the state, so every decoder variant works with every search. Finished
sentences leave the working batch, which keeps each step's batch as small as the work left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..data.vocab import BOS_ID, EOS_ID, PAD_ID
from .rules import NO_RULES, Rules


@dataclass
class Hypothesis:
    """One output: token ids (without ``</s>``), its summed log-probability, its score
    (log-probability divided by the length penalty) and optionally attention ``(T, S)``."""

    tokens: list[int]
    log_prob: float
    score: float
    attention: torch.Tensor | None = None


def length_penalty(length: int, alpha: float) -> float:
    """GNMT length penalty ``((5 + length) / 6) ** alpha``; 1 when ``alpha`` is 0 (and
    infinite where it overflows a float, for absurd ``alpha``)."""
    if not alpha:
        return 1.0
    try:
        return ((5.0 + length) / 6.0) ** alpha
    except OverflowError:
        return math.inf


def _step(decoder, prev, state, rules: Rules, t: int, histories):
    """One decoder step with ``<pad>`` and ``<s>`` ruled out as outputs, and whatever ``rules``
    rule out for rows whose outputs so far are ``histories()``."""
    lp, state, weights = decoder.step(prev, state)
    lp[:, PAD_ID] = float("-inf")
    lp[:, BOS_ID] = float("-inf")
    if rules.needs_history(t):
        rules.rule_out(lp, histories(), t)
    return lp, state, weights


def _attention_sum(total, weights, rules: Rules):
    """The running attention sum ``(rows, S)`` the coverage penalty needs (None without it)."""
    if not rules.coverage_penalty:
        return None
    if weights is None:
        raise ValueError("the coverage penalty needs a model with attention")
    return weights.float() if total is None else total + weights.float()


def max_lengths(src_lengths: torch.Tensor, ratio: float, cap: int) -> list[int]:
    """Per-sentence output limit: ``min(cap, ceil(ratio * source_length) + 5)``."""
    return [min(cap, math.ceil(ratio * int(n)) + 5) for n in src_lengths.tolist()]


@torch.no_grad()
def greedy_search(
    decoder, state, max_lens: list[int], alpha: float = 0.0, return_attention: bool = False,
    rules: Rules = NO_RULES, src_lengths: list[int] | None = None,
) -> list[list[Hypothesis]]:
    """Pick the most probable token at each step. Returns one hypothesis per sentence.

    ``rules`` (:mod:`rnnseq.inference.rules`) rule tokens out and add the coverage penalty,
    which needs ``src_lengths``.
    """
    batch = len(max_lens)
    device = state.mask.device
    tokens: list[list[int]] = [[] for _ in range(batch)]
    log_probs = [0.0] * batch
    attn: list[list[torch.Tensor]] = [[] for _ in range(batch)]
    done: list[Hypothesis | None] = [None] * batch
    active = list(range(batch))
    prev = torch.full((batch,), BOS_ID, dtype=torch.long, device=device)
    attn_sum = None
    t = 0
    while active:
        lp, state, weights = _step(decoder, prev, state, rules, t,
                                   lambda rows=active: [tokens[sent] for sent in rows])
        attn_sum = _attention_sum(attn_sum, weights, rules)
        best_lp, best = lp.max(dim=-1)
        best_list, lp_list = best.tolist(), best_lp.tolist()
        keep = []
        for row, sent in enumerate(active):
            tok = best_list[row]
            log_probs[sent] += lp_list[row]
            if return_attention and weights is not None:
                attn[sent].append(weights[row])
            if tok == EOS_ID or t + 1 >= max_lens[sent]:
                if tok != EOS_ID:
                    tokens[sent].append(tok)
                length = len(tokens[sent]) + (tok == EOS_ID)
                cp = _penalty(rules, attn_sum, row, src_lengths, sent)
                done[sent] = Hypothesis(
                    tokens[sent], log_probs[sent],
                    log_probs[sent] / length_penalty(length, alpha) + cp,
                    torch.stack(attn[sent]) if attn[sent] else None,
                )
            else:
                tokens[sent].append(tok)
                keep.append(row)
        t += 1
        if len(keep) < len(active):
            active = [active[r] for r in keep]
            if not active:
                break
            index = torch.tensor(keep, dtype=torch.long, device=device)
            state = state.index_select(index)
            best = best.index_select(0, index)
            if attn_sum is not None:
                attn_sum = attn_sum.index_select(0, index)
        prev = best
    return [[h] for h in done]  # type: ignore[list-item]


@torch.no_grad()
def beam_search(
    decoder, state, max_lens: list[int], beam_size: int, n_best: int = 1, alpha: float = 0.0,
    return_attention: bool = False, exact_stop: bool = True, rules: Rules = NO_RULES,
    src_lengths: list[int] | None = None,
) -> list[list[Hypothesis]]:
    """Batched beam search. Returns, per sentence, ``n_best`` hypotheses, best first.

    At each step the ``2 * beam_size`` best expansions of a sentence are examined in order:
    those ending in ``</s>`` among the first ``beam_size`` are finished (scored with the GNMT
    length penalty ``alpha``), the first ``beam_size`` others stay alive. A sentence is done once it
    has ``beam_size`` finished hypotheses or reaches its length limit (its alive beams are then
    finished as they are), or as soon as no alive beam can end up among its ``n_best``: a
    log-probability only falls as a hypothesis grows, so an alive beam's final score is at most
    its log-probability now divided by the largest length penalty it could still reach. That
    early stop (``exact_stop``) changes no output; it only skips steps that cannot matter.
    ``rules`` as for :func:`greedy_search`; they keep that bound true (see their module).
    """
    if n_best > beam_size:
        raise ValueError(f"n_best ({n_best}) cannot exceed beam_size ({beam_size})")
    batch, k = len(max_lens), beam_size
    device = state.mask.device
    state = state.index_select(torch.arange(batch, device=device).repeat_interleave(k))
    # Only the first beam of each sentence is live at the start.
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0
    history = torch.empty((batch * k, 0), dtype=torch.long, device=device)
    attn_history: torch.Tensor | None = None
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    active = list(range(batch))
    prev = torch.full((batch * k,), BOS_ID, dtype=torch.long, device=device)
    attn_sum = None
    t = 0
    while active:
        n = len(active)
        lp, state, weights = _step(decoder, prev, state, rules, t, history.tolist)
        attn_sum = _attention_sum(attn_sum, weights, rules)
        vocab = lp.shape[-1]
        cand = (scores.view(-1, 1) + lp).view(n, k * vocab)
        top_scores, top_idx = cand.topk(min(2 * k, k * vocab), dim=-1)
        top_beam, top_tok = top_idx // vocab, top_idx % vocab
        if return_attention and weights is not None:
            step_attn = weights[:, None, :]
            attn_history = (step_attn if attn_history is None
                            else torch.cat([attn_history, step_attn], dim=1))
        s_list, b_list, tok_list = top_scores.tolist(), top_beam.tolist(), top_tok.tolist()
        next_rows, next_toks, next_scores, keep_sent = [], [], [], []
        for pos, sent in enumerate(active):
            alive_rows, alive_toks, alive_scores = [], [], []
            at_limit = t + 1 >= max_lens[sent]
            candidates = zip(s_list[pos], b_list[pos], tok_list[pos], strict=True)
            for rank, (score, beam, tok) in enumerate(candidates):
                if score == float("-inf"):
                    break
                row = pos * k + beam
                if tok == EOS_ID:
                    if rank < k:
                        cp = _penalty(rules, attn_sum, row, src_lengths, sent)
                        finished[sent].append(
                            _finish(history, attn_history, row, None, score, alpha, cp))
                    continue
                if len(alive_rows) < k:
                    alive_rows.append(row)
                    alive_toks.append(tok)
                    alive_scores.append(score)
            if at_limit:
                for row, tok, score in zip(alive_rows, alive_toks, alive_scores, strict=True):
                    cp = _penalty(rules, attn_sum, row, src_lengths, sent)
                    finished[sent].append(
                        _finish(history, attn_history, row, tok, score, alpha, cp))
            if at_limit or len(finished[sent]) >= k or not alive_rows:
                continue
            if exact_stop and len(finished[sent]) >= n_best:
                # the best an alive beam could still score (lengths t+2 .. max_lens+1; a
                # coverage penalty is <= 0, so leaving it out keeps this an upper bound)
                reach = max(length_penalty(t + 2, alpha), length_penalty(max_lens[sent] + 1, alpha))
                kth = sorted((h.score for h in finished[sent]), reverse=True)[n_best - 1]
                if kth >= alive_scores[0] / reach:
                    continue
            while len(alive_rows) < k:  # pad with dead beams
                alive_rows.append(alive_rows[0])
                alive_toks.append(alive_toks[0])
                alive_scores.append(float("-inf"))
            next_rows += alive_rows
            next_toks += alive_toks
            next_scores.append(alive_scores)
            keep_sent.append(sent)
        t += 1
        if not keep_sent:
            break
        index = torch.tensor(next_rows, dtype=torch.long, device=device)
        if len(keep_sent) == n and hasattr(state, "reorder"):
            state = state.reorder(index)  # same sentences: the source side stays put
        else:
            state = state.index_select(index)
        prev = torch.tensor(next_toks, dtype=torch.long, device=device)
        history = torch.cat([history.index_select(0, index), prev[:, None]], dim=1)
        if attn_history is not None:
            attn_history = attn_history.index_select(0, index)
        if attn_sum is not None:
            attn_sum = attn_sum.index_select(0, index)
        scores = torch.tensor(next_scores, dtype=torch.float, device=device)
        active = keep_sent
    return [sorted(f, key=lambda h: -h.score)[:n_best] for f in finished]


def _penalty(rules: Rules, attn_sum, row: int, src_lengths, sent: int) -> float:
    """The coverage penalty of row ``row`` (sentence ``sent``)."""
    if attn_sum is None:
        return 0.0
    if src_lengths is None:
        raise ValueError("the coverage penalty needs the source lengths (src_lengths)")
    return rules.penalty(attn_sum[row], src_lengths[sent])


def _finish(history, attn_history, row, last_tok, log_prob, alpha, cp=0.0) -> Hypothesis:
    tokens = history[row].tolist() + ([last_tok] if last_tok is not None else [])
    length = len(tokens) + (last_tok is None)  # a finished-by-EOS hypothesis counts </s>
    attention = None if attn_history is None else attn_history[row]  # (length, S)
    return Hypothesis(tokens, log_prob, log_prob / length_penalty(length, alpha) + cp, attention)
