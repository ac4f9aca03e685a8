"""Greedy and beam search: equivalences, ordering, padding invariance, a case beam wins."""

import math
from dataclasses import dataclass

import pytest
import torch

from rnnseq.arrays import TorchArrays
from rnnseq.data.batching import collate
from rnnseq.data.vocab import BOS_ID, EOS_ID
from rnnseq.inference.search import (
    Constraints,
    beam_search,
    greedy_search,
    length_penalty,
    max_lengths,
)

from .conftest import tiny_model, variants

SRC = [[4, 5, 6, 7, 8, 9, 10], [9, 10], [11], [], [5, 5, 5, 5]]


def run(model, srcs, beam, n_best=1, alpha=0.0, attention=False):
    b = collate(srcs, None, list(range(len(srcs))))
    enc = model.encode(b.src, b.src_lengths)
    limits = max_lengths(b.src_lengths, 2.0, 30)
    state = model.init_state(enc)
    if beam == 1:
        return greedy_search(model.decoder, state, limits, alpha, attention)
    return beam_search(model.decoder, state, limits, beam, n_best, alpha, attention)


@pytest.mark.parametrize("cell, attention, feed", variants())
def test_beam_one_equals_greedy(cell, attention, feed):
    model = tiny_model(cell, attention, feed, seed=3)
    greedy = run(model, SRC, 1, alpha=0.6)
    src, lengths = _src(SRC)
    beam = beam_search(model.decoder, model.init_state(model.encode(src, lengths)),
                       max_lengths(lengths, 2.0, 30), 1, 1, 0.6)
    for g, b in zip(greedy, beam, strict=True):
        assert g[0].tokens == b[0].tokens
        assert g[0].score == pytest.approx(b[0].score, abs=1e-5)


def _src(srcs):
    b = collate(srcs, None, list(range(len(srcs))))
    return b.src, b.src_lengths


@pytest.mark.parametrize("cell, attention, feed", variants())
@pytest.mark.parametrize("beam", [1, 4])
def test_search_padding_and_batch_invariance(cell, attention, feed, beam):
    """Each sentence gets the same output alone as in a mixed-length batch."""
    model = tiny_model(cell, attention, feed, seed=5)
    together = run(model, SRC, beam, n_best=1, alpha=1.0)
    for i, seq in enumerate(SRC):
        alone = run(model, [seq], beam, n_best=1, alpha=1.0)[0][0]
        assert together[i][0].tokens == alone.tokens
        assert together[i][0].score == pytest.approx(alone.score, abs=1e-5)


class StepCounter:
    """A decoder wrapper that counts the rows it steps."""

    def __init__(self, decoder):
        self.decoder, self.rows = decoder, 0

    def step(self, prev, state):
        self.rows += len(prev)
        return self.decoder.step(prev, state)


def test_exact_early_stop_skips_steps_that_cannot_matter():
    # The toy decoder below makes </s> likely early: the search must stop before the limit.
    counts = []
    for exact in (True, False):
        counter = StepCounter(ToyDecoder())
        beam_search(counter, toy_state(1), [10], beam_size=3, exact_stop=exact)
        counts.append(counter.rows)
    assert counts[0] < counts[1]


@pytest.mark.parametrize("alpha, n_best", [(0.0, 1), (0.6, 1), (1.5, 3), (0.0, 4)])
@pytest.mark.parametrize("cell, attention, feed", variants()[:4])
def test_exact_early_stop_changes_no_output(cell, attention, feed, alpha, n_best):
    """Stopping a sentence once no alive beam can reach its n-best returns exactly what the
    search returns when it waits for beam_size finished hypotheses."""
    model = tiny_model(cell, attention, feed, seed=11)
    src, lengths = _src(SRC)
    outs, steps = [], []
    for exact in (True, False):
        state = model.init_state(model.encode(src, lengths))
        counter = StepCounter(model.decoder)
        outs.append(beam_search(counter, state, max_lengths(lengths, 2.0, 50), 4, n_best,
                                alpha, exact_stop=exact))
        steps.append(counter.rows)
    assert steps[0] <= steps[1]
    for fast, slow in zip(*outs, strict=True):
        assert [h.tokens for h in fast] == [h.tokens for h in slow]
        assert [h.score for h in fast] == pytest.approx([h.score for h in slow], abs=1e-6)


def test_nbest_sorted_and_distinct():
    model = tiny_model("gru", "bahdanau", seed=1)
    results = run(model, SRC, 5, n_best=5, alpha=1.0)
    for hyps in results:
        assert len(hyps) == 5
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in hyps}) == 5
        for h in hyps:
            assert BOS_ID not in h.tokens and EOS_ID not in h.tokens


def test_scores_are_the_model_log_probabilities():
    """A hypothesis' log_prob equals the teacher-forced log-probability of its tokens + </s>."""
    model = tiny_model("lstm", "luong_concat", seed=2)
    results = run(model, SRC[:3], 3, n_best=2, alpha=0.0)
    for seq, hyps in zip(SRC[:3], results, strict=True):
        for h in hyps:
            b = collate([seq], [h.tokens], [0])
            logits = model(b.src, b.src_lengths, b.tgt_in)
            lp = torch.log_softmax(logits[0], -1)
            ended = len(h.tokens) < max_lengths(b.src_lengths, 2.0, 30)[0]
            target = b.tgt_out[0] if ended else b.tgt_out[0, :-1]
            total = lp[torch.arange(len(target)), target].sum().item()
            assert h.log_prob == pytest.approx(total, abs=1e-4)


def test_attention_output_shapes():
    model = tiny_model("gru", "luong_general", seed=1)
    for beam in (1, 3):
        results = run(model, SRC[:2], beam, attention=True)
        for seq, hyps in zip(SRC[:2], results, strict=True):
            h = hyps[0]
            steps = len(h.tokens) + (len(h.tokens) < max_lengths(torch.tensor([len(seq)]),
                                                                  2.0, 30)[0])
            assert h.attention.shape == (steps, max(len(s) for s in SRC[:2]))
            torch.testing.assert_close(h.attention.sum(-1), torch.ones(steps))


# -- a constructed case where beam search beats greedy -----------------------------------------
@dataclass
class LastToken:
    """A toy decoder state: the previous token of each row."""

    last: torch.Tensor
    mask: torch.Tensor

    @property
    def arrays(self):
        return TorchArrays(self.mask.device)

    @property
    def batch_size(self):
        return self.mask.shape[0]

    def index_select(self, index):
        return LastToken(self.last.index_select(0, index), self.mask.index_select(0, index))

    reorder = index_select


class ToyDecoder:
    """Vocabulary: 0-3 specials, 4 = 'a', 5 = 'b'.

    From <s>: a 0.6, b 0.4. After a: </s> 0.4, a 0.3, b 0.3. After b: </s> 0.9, a/b 0.05.
    Greedy takes 'a' then '</s>' (p = 0.24); the best output is 'b </s>' (p = 0.36).
    """

    table = {
        BOS_ID: {4: 0.6, 5: 0.4},
        4: {EOS_ID: 0.4, 4: 0.3, 5: 0.3},
        5: {EOS_ID: 0.9, 4: 0.05, 5: 0.05},
    }

    def step(self, prev, state):
        probs = torch.full((len(prev), 6), 1e-9)
        for row, tok in enumerate(prev.tolist()):
            for out, p in self.table.get(tok, {EOS_ID: 1.0}).items():
                probs[row, out] = p
        return probs.log(), LastToken(prev, state.mask), None


def toy_state(n):
    return LastToken(torch.full((n,), BOS_ID), torch.ones(n, 1, dtype=torch.bool))


def test_beam_finds_better_output_than_greedy():
    greedy = greedy_search(ToyDecoder(), toy_state(1), [10])[0][0]
    beam = beam_search(ToyDecoder(), toy_state(1), [10], beam_size=2)[0][0]
    assert greedy.tokens == [4]
    assert greedy.log_prob == pytest.approx(torch.tensor(0.24).log().item(), abs=1e-5)
    assert beam.tokens == [5]
    assert beam.log_prob == pytest.approx(torch.tensor(0.36).log().item(), abs=1e-5)
    assert beam.score > greedy.score


def test_length_limit_and_penalty():
    assert length_penalty(1, 0.0) == 1.0
    assert length_penalty(7, 1.0) == pytest.approx(2.0)
    assert max_lengths(torch.tensor([0, 10]), 1.5, 12) == [5, 12]
    # a decoder that never ends stops at the limit
    out = greedy_search(ToyDecoder(), LastToken(torch.full((1,), 4), torch.ones(1, 1,
                        dtype=torch.bool)), [3])
    assert len(out[0][0].tokens) <= 3


# -- decoding rules: min_length, n-gram blocking, coverage penalty ----------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from rnnseq.inference.rules import Rules  # noqa: E402


def ngrams(tokens, n, ignore=frozenset()):
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return [g for g in grams if not ignore.intersection(g)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(4, 7), max_size=12), st.integers(1, 4),
       st.sets(st.integers(4, 7), max_size=1), st.integers(4, 7))
def test_blocked_tokens_are_exactly_those_repeating_an_ngram(history, n, ignore, tok):
    rules = Rules(block_ngram_repeat=n, block_ignore=frozenset(ignore))
    grams = ngrams(history, n, rules.block_ignore)
    extended = ngrams(history + [tok], n, rules.block_ignore)
    repeats = len(extended) > len(grams) and extended[-1] in grams
    assert (tok in rules.blocked(history)) == repeats


def search_with(model, srcs, beam, rules, n_best=1, alpha=0.0, exact=True, counter=None):
    b = collate(srcs, None, list(range(len(srcs))))
    state = model.init_state(model.encode(b.src, b.src_lengths))
    limits = max_lengths(b.src_lengths, 2.0, 40)
    decoder = counter or model.decoder
    lengths = b.src_lengths.tolist()
    if beam == 1:
        return greedy_search(decoder, state, limits, alpha,
                             constraints=Constraints(rules, lengths))
    return beam_search(decoder, state, limits, beam, n_best, alpha, exact_stop=exact,
                       constraints=Constraints(rules, lengths))


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ngram_blocking_never_emits_a_repeated_ngram(n, beam, seed):
    model = tiny_model("lstm", "luong_general", True, seed=seed, vocab=(13, 8))  # few words:
    plain = search_with(model, SRC, beam, Rules(), n_best=beam)  # repeats come easily
    assert any(len(set(ngrams(h.tokens, n))) < len(ngrams(h.tokens, n))
               for hyps in plain for h in hyps) or n == 3
    ignore = frozenset({5})
    for rules in (Rules(block_ngram_repeat=n), Rules(block_ngram_repeat=n, block_ignore=ignore)):
        for hyps in search_with(model, SRC, beam, rules, n_best=beam):
            for h in hyps:
                grams = ngrams(h.tokens, n, rules.block_ignore)
                assert len(set(grams)) == len(grams), h.tokens


@pytest.mark.parametrize("beam", [1, 3])
def test_min_length_is_respected(beam):
    model = tiny_model("gru", "bahdanau", seed=4)
    short = search_with(model, SRC, beam, Rules(), n_best=beam)
    assert min(len(h.tokens) for hyps in short for h in hyps) < 6
    for hyps, limit in zip(search_with(model, SRC, beam, Rules(min_length=6), n_best=beam),
                           max_lengths(torch.tensor([len(s) for s in SRC]), 2.0, 40),
                           strict=True):
        for h in hyps:
            assert len(h.tokens) >= min(6, limit)


def test_coverage_penalty_on_a_hand_case():
    """Attention sums [0.5, 2.0, 0 (padding)] over a source of 2: cp = beta * log(0.5)."""
    rules = Rules(coverage_penalty=0.4)
    assert rules.penalty(torch.tensor([0.5, 2.0, 0.0]), 2) == pytest.approx(0.4 * math.log(0.5))
    assert rules.penalty(torch.tensor([0.0, 1.0]), 2) == pytest.approx(0.4 * math.log(1e-10))
    assert Rules().penalty(torch.tensor([0.5]), 1) == 0.0


def test_coverage_penalty_scores_greedy_output():
    """The greedy output is unchanged; its score gains beta * sum log min(attention sum, 1)."""
    model = tiny_model("lstm", "luong_dot", seed=6)
    plain = run(model, SRC, 1, attention=True)
    penalised = search_with(model, SRC, 1, Rules(coverage_penalty=0.3))
    for seq, p, q in zip(SRC, plain, penalised, strict=True):
        assert p[0].tokens == q[0].tokens
        total = p[0].attention.sum(0)[: len(seq)].clamp(1e-10, 1.0).log().sum().item()
        assert q[0].score == pytest.approx(p[0].score + 0.3 * total, abs=1e-5)


RULE_SETS = [Rules(min_length=4), Rules(block_ngram_repeat=2),
             Rules(block_ngram_repeat=1, block_ignore=frozenset({4, 5})),
             Rules(coverage_penalty=0.5), Rules(min_length=3, block_ngram_repeat=2,
                                                coverage_penalty=0.2)]


@pytest.mark.parametrize("rules", RULE_SETS, ids=range(len(RULE_SETS)))
@pytest.mark.parametrize("alpha, n_best", [(0.0, 1), (0.6, 2), (1.5, 3)])
def test_exact_early_stop_changes_no_output_with_rules(rules, alpha, n_best):
    model = tiny_model("lstm", "luong_general", True, seed=11)
    outs, steps = [], []
    for exact in (True, False):
        counter = StepCounter(model.decoder)
        outs.append(search_with(model, SRC, 4, rules, n_best, alpha, exact, counter))
        steps.append(counter.rows)
    assert steps[0] <= steps[1]
    for fast, slow in zip(*outs, strict=True):
        assert [h.tokens for h in fast] == [h.tokens for h in slow]
        assert [h.score for h in fast] == pytest.approx([h.score for h in slow], abs=1e-6)


@pytest.mark.parametrize("rules", RULE_SETS, ids=range(len(RULE_SETS)))
def test_beam_one_equals_greedy_with_rules(rules):
    model = tiny_model("gru", "luong_concat", False, seed=3)
    for g, b in zip(search_with(model, SRC, 1, rules, alpha=0.6), _beam_one(model, rules),
                    strict=True):
        assert g[0].tokens == b[0].tokens
        assert g[0].score == pytest.approx(b[0].score, abs=1e-5)


def _beam_one(model, rules):
    b = collate(SRC, None, list(range(len(SRC))))
    state = model.init_state(model.encode(b.src, b.src_lengths))
    return beam_search(model.decoder, state, max_lengths(b.src_lengths, 2.0, 40), 1, 1, 0.6,
                       constraints=Constraints(rules, b.src_lengths.tolist()))


def test_numpy_and_torch_arrays_agree():
    """The two array kinds search runs on (rnnseq.arrays) give the same results."""
    import numpy as np

    from rnnseq.arrays import NumpyArrays

    torch.manual_seed(0)
    x = torch.randn(5, 37)
    x[1, 3] = float("-inf")
    numpy_arrays, torch_arrays = NumpyArrays(), TorchArrays("cpu")
    for k in (1, 4, 37):
        (nv, ni), (tv, ti) = numpy_arrays.topk(x.numpy(), k), torch_arrays.topk(x, k)
        assert np.array_equal(ni, ti.numpy()) and np.array_equal(nv, tv.numpy())
    x[2, 5] = x[2, 30] = x[2].max() + 1  # a tie: both choose the first column
    x[3] = float("-inf")
    (nv, ni), (tv, ti) = numpy_arrays.best(x.numpy()), torch_arrays.best(x)
    assert np.array_equal(ni, ti.numpy()) and np.array_equal(nv, tv.numpy())
    assert ni[2] == 5 and np.array_equal(ni, x.numpy().argmax(-1))
    assert numpy_arrays.ids([3, 1]).dtype == np.int64
    assert numpy_arrays.floats([[0.0, float("-inf")]]).dtype == np.float32
    assert numpy_arrays.concat([np.zeros((2, 1)), np.ones((2, 2))], axis=1).shape == (2, 3)
    assert numpy_arrays.stack([np.zeros(3), np.ones(3)]).shape == (2, 3)
