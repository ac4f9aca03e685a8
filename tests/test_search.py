"""Greedy and beam search: equivalences, ordering, padding invariance, a case beam wins."""

from dataclasses import dataclass

import pytest
import torch

from rnnseq.data.batching import collate
from rnnseq.data.vocab import BOS_ID, EOS_ID
from rnnseq.inference.search import beam_search, greedy_search, length_penalty, max_lengths

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

    def index_select(self, index):
        return LastToken(self.last.index_select(0, index), self.mask.index_select(0, index))


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
