"""Copy attention (pointer-generator) and coverage, for every cell and attention type."""

import pytest
import torch

from rnnseq.data.batching import collate
from rnnseq.data.extended import decode_extended, extend_target, source_map
from rnnseq.data.vocab import Vocab
from rnnseq.inference.search import beam_search, greedy_search
from rnnseq.training.loss import sequence_loss

from .conftest import tiny_model, variants

V = 17  # target vocabulary of tiny_model
SRC = [[4, 5, 6, 7, 8], [9, 10], [11, 4, 4]]
# source tokens in extended ids: some map into the target vocabulary, some past it (V + i)
SRC_MAP = [[4, V, 6, V + 1, V], [V, 10], [V, V + 1, V + 1]]
TGT = [[5, 6, 7], [8, 9, 10, 11, 12], [13]]
TGT_EXT = [[5, V + 1, 7], [8, V, 10, 11, 12], [V + 1]]
ATTENDING = [v for v in variants() if v[1] != "none"]
KINDS = {"copy": dict(copy_attention=True), "coverage": dict(coverage=True),
         "copy+coverage": dict(copy_attention=True, coverage=True)}


def model_of(cell, attention, feed, kind, **kw):
    return tiny_model(cell, attention, feed, **KINDS[kind], **kw)


def batch(rows=None):
    rows = list(range(len(SRC))) if rows is None else rows
    return collate([SRC[i] for i in rows], [TGT[i] for i in rows], list(range(len(rows))),
                   [SRC_MAP[i] for i in rows], [TGT_EXT[i] for i in rows])


def test_extended_vocabulary_maps_sources_targets_and_outputs():
    vocab = Vocab(["<pad>", "<unk>", "<s>", "</s>", "the", "cat"])
    ids, oov = source_map(["the", "Zorg", "cat", "Blip", "Zorg", "</s>"], vocab)
    assert oov == ["Zorg", "Blip", "</s>"]  # text that spells a special is a word to copy
    assert ids == [4, 6, 5, 7, 6, 8]
    assert extend_target(["Blip", "the", "dog", "Zorg"], vocab, oov) == [7, 4, 1, 6]
    assert decode_extended([4, 7, 1, 8, 3, 6], vocab, oov) == ["the", "Blip", "<unk>", "</s>"]


@pytest.mark.parametrize("kind", ["copy", "copy+coverage"])
@pytest.mark.parametrize("cell, attention, feed", ATTENDING)
def test_mixed_distributions_sum_to_one(cell, attention, feed, kind):
    model = model_of(cell, attention, feed, kind)
    b = batch()
    enc = model.encode(b.src, b.src_lengths)
    state = model.init_state(enc, b.src_map)
    assert state.ext_size == V + 2
    for t in range(b.tgt_in.shape[1]):
        log_probs, state, _ = model.decoder.step(b.tgt_in[:, t], state)
        assert log_probs.shape == (3, V + 2)
        torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(3))
    out = model(b.src, b.src_lengths, b.tgt_in, b.src_map)
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(out.shape[:2]))


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("cell, attention, feed", ATTENDING)
def test_forward_agrees_with_step_and_is_padding_invariant(cell, attention, feed, kind):
    model = model_of(cell, attention, feed, kind)
    b = batch()
    copy = "copy" in kind
    src_map = b.src_map if copy else None
    out = model(b.src, b.src_lengths, b.tgt_in, src_map)
    state = model.init_state(model.encode(b.src, b.src_lengths), src_map)
    for t in range(b.tgt_in.shape[1]):
        log_probs, state, _ = model.decoder.step(b.tgt_in[:, t], state)
        real = torch.isfinite(log_probs)  # copy ids of another sentence: P = 0 when stepping
        torch.testing.assert_close(log_probs[real], out[:, t][real], rtol=1e-5, atol=1e-5)
    for row in range(len(SRC)):
        one = batch([row])
        single = model(one.src, one.src_lengths, one.tgt_in, one.src_map if copy else None)
        n = len(TGT[row]) + 1
        torch.testing.assert_close(out[row, :n, : single.shape[-1]], single[0],
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("cell, attention, feed", ATTENDING)
def test_gradients_reach_every_parameter(cell, attention, feed, kind):
    model = model_of(cell, attention, feed, kind, bridge="linear").train()
    b = batch() if "copy" in kind else collate(SRC, TGT, [0, 1, 2])
    loss, _, n = sequence_loss(model, b.src, b.src_lengths, b.tgt_in, b.tgt_out, 0.1,
                               b.src_map, coverage_weight=1.0)
    (loss / n).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient for {name}"


@pytest.mark.parametrize("cell, attention, feed", ATTENDING)
def test_coverage_is_the_running_sum_of_attention(cell, attention, feed):
    model = model_of(cell, attention, feed, "coverage")
    with torch.no_grad():  # make coverage matter to the scores
        model.decoder.attention.coverage_weight.normal_()
    b = batch()
    state = model.init_state(model.encode(b.src, b.src_lengths))
    total = torch.zeros(b.src.shape)
    losses = []
    for t in range(b.tgt_in.shape[1]):
        before = state.coverage.clone()
        _, state, weights = model.decoder.step(b.tgt_in[:, t], state)
        losses.append(torch.minimum(weights, before).sum(-1))
        total += weights
        torch.testing.assert_close(state.coverage, total)
    out = model.decoder.features(b.tgt_in, model.init_state(model.encode(b.src, b.src_lengths)))
    torch.testing.assert_close(out.coverage_loss, torch.stack(losses, 1), rtol=1e-5, atol=1e-6)


def test_coverage_loss_on_a_hand_case(monkeypatch):
    """Attention [.5 .5 0], then [1 0 0], then [0 0 1] (padding-free source of 3): the coverage
    before each step is [0 0 0], [.5 .5 0], [1.5 .5 0], so the loss is 0 + .5 + 0 = .5 per
    sentence, times lambda, added to the loss but not to the NLL."""
    from rnnseq.model import attention as attention_module

    model = model_of("lstm", "luong_general", False, "coverage")
    rows = iter([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])

    def fixed(self, query, keys, memory, mask, coverage=None):
        w = torch.tensor(next(rows))[None, None, :].expand(query.shape[0], 1, 3)
        return torch.bmm(w, memory), w

    monkeypatch.setattr(attention_module.Attention, "forward", fixed)
    b = collate([[4, 5, 6]], [[5, 6]], [0])
    loss1, nll1, _ = sequence_loss(model, b.src, b.src_lengths, b.tgt_in, b.tgt_out, 0.0,
                                   coverage_weight=2.0)
    rows = iter([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    out = model.decoder.features(b.tgt_in, model.init_state(model.encode(b.src, b.src_lengths)))
    torch.testing.assert_close(out.coverage_loss, torch.tensor([[0.0, 0.5, 0.0]]))
    torch.testing.assert_close(loss1 - nll1, torch.tensor(2.0 * 0.5))


def _copying(model):
    """Make an untrained copy model copy: p_gen near 0, so outputs are source tokens."""
    with torch.no_grad():
        model.decoder.copy_gate.bias.fill_(-8.0)
    return model


@pytest.mark.parametrize("cell, attention, feed", [("lstm", "luong_general", True),
                                                   ("gru", "bahdanau", None),
                                                   ("rnn", "luong_concat", False)])
def test_extended_ids_survive_beam_reordering_and_compaction(cell, attention, feed):
    """Sentences decoded together give what each gives alone (beam and greedy, n-best), and
    their copied out-of-vocabulary ids are their own."""
    model = _copying(model_of(cell, attention, feed, "copy+coverage", seed=3))
    b = batch()
    limits = [4, 9, 6]

    def search(bt, lim, beam):
        state = model.init_state(model.encode(bt.src, bt.src_lengths), bt.src_map)
        if beam == 1:
            return greedy_search(model.decoder, state, lim)
        return beam_search(model.decoder, state, lim, beam, n_best=3, alpha=0.6)

    for beam in (1, 4):
        together = search(b, limits, beam)
        copied = set()
        for row in range(3):
            alone = search(batch([row]), [limits[row]], beam)
            # n-best lists as {tokens: score} (hypotheses with equal scores may swap places)
            mine = {tuple(h.tokens): h.score for h in alone[0]}
            assert mine == pytest.approx({tuple(h.tokens): h.score for h in together[row]},
                                         abs=1e-5)
            own = set(SRC_MAP[row])
            for h in together[row]:
                assert all(tok < V or tok in own for tok in h.tokens)
                copied |= {tok for tok in h.tokens if tok >= V}
        assert copied, "the copying model copied nothing past the vocabulary"


def _names(rng, n, taken=()):
    out = set()
    while len(out) < n:
        name = "".join(rng.choice("bcdfgklmnprstvz") + rng.choice("aeiou") for _ in range(3))
        if name not in taken:
            out.add(name)
    return sorted(out)


TEMPLATES = [("please call {} {} tomorrow", "call {} {}"),
             ("{} {} wrote to us", "from {} {}"),
             ("we met {} {} at the station yesterday", "met {} {}"),
             ("the letter says {} {} will come", "{} {} comes")]


def _copy_task(rng, firsts, lasts, n):
    pairs = []
    for i in range(n):
        src, tgt = TEMPLATES[i % len(TEMPLATES)]
        first, last = rng.choice(firsts), rng.choice(lasts)
        pairs.append((src.format(first, last), tgt.format(first, last)))
    return pairs


@pytest.mark.slow
@pytest.mark.parametrize("copy", [True, False])
def test_copy_attention_reproduces_names_never_seen_in_training(tmp_path, copy):
    """Names inside fixed templates; test names occur nowhere in training. With copy attention
    the model writes them out (>= 95 % exact); without it, it cannot (they are <unk>)."""
    import random

    from rnnseq.config import Config
    from rnnseq.inference.translator import load
    from rnnseq.training.trainer import train

    from .conftest import write_tsv

    rng = random.Random(7)
    names = _names(rng, 1200)
    train_names, test_names = names[:1000], names[1000:]
    # every training name is seen once or twice, below min_freq: always out of vocabulary
    train_pairs = _copy_task(rng, train_names[:500], train_names[500:], 800)
    test_pairs = _copy_task(rng, test_names[:100], test_names[100:], 100)
    write_tsv(tmp_path / "train.tsv", train_pairs)
    config = Config.from_dict({
        "data": {"train_tsv": str(tmp_path / "train.tsv"), "min_freq": 3},
        "model": {"cell": "lstm", "attention": "luong_general", "input_feeding": False,
                  "hidden_size": 64, "embedding_size": 32, "dropout": 0.0,
                  "copy_attention": copy},
        "train": {"out_dir": str(tmp_path / "m"), "batch_size": 32, "max_steps": 500,
                  "valid_every": 500, "lr": 0.005, "label_smoothing": 0.0,
                  "progress": False, "seed": 1},
    })
    train(config)
    translator = load(str(tmp_path / "m" / "best"))
    assert all(n not in translator.bundle.tgt_vocab.stoi for n in test_names)
    hyps = translator.translate([s for s, _ in test_pairs], beam_size=1)
    exact = sum(h == t for h, (_, t) in zip(hyps, test_pairs, strict=True)) / len(test_pairs)
    if copy:
        assert exact >= 0.95, list(zip(hyps, test_pairs, strict=True))[:5]
        beam = translator.translate([s for s, _ in test_pairs], beam_size=4)
        assert sum(h == t for h, (_, t) in zip(beam, test_pairs, strict=True)) >= 95
        # n-best with scores and attention: a copied name attends to its source position
        src, tgt = test_pairs[0]
        best = translator.translate_nbest([src], beam_size=4, n_best=2,
                                          return_attention=True)[0]
        assert best[0].text == tgt and best[0].score >= best[1].score
        name = next(w for w in tgt.split() if w in test_names)
        row = best[0].attention[best[0].tokens.index(name)]
        assert best[0].source_tokens[max(range(len(row)), key=row.__getitem__)] == name
    else:
        assert exact == 0.0 and any("<unk>" in h for h in hyps)


@pytest.mark.parametrize("cell, attention, feed", [("lstm", "luong_general", True),
                                                   ("gru", "bahdanau", None),
                                                   ("lstm", "luong_concat", False)])
def test_int8_and_bf16_decoding_follow_fp32(cell, attention, feed):
    from rnnseq.inference.quantize import int8_stepper, quantize_int8
    from rnnseq.precision import autocast

    model = model_of(cell, attention, feed, "copy+coverage", seed=7, hidden_size=32,
                     embedding_size=16)
    with torch.no_grad():
        model.decoder.copy_gate.bias.fill_(-1.0)  # copying and generating both matter

    def steps(m, precision="fp32", stepper=None):
        b = batch()
        out = []
        with torch.no_grad(), autocast(torch.device("cpu"), precision):
            state = m.init_state(m.encode(b.src, b.src_lengths), b.src_map, stepper)
            for t in range(b.tgt_in.shape[1]):
                lp, state, _ = m.decoder.step(b.tgt_in[:, t], state)
                out.append(lp)
        return torch.stack(out)

    ref = steps(model)
    for got in (steps(quantize_int8(model), stepper=int8_stepper(model)),
                steps(model, "bf16")):
        real = torch.isfinite(ref)
        assert torch.equal(real, torch.isfinite(got))
        assert (got[real] - ref[real]).exp().sub(1).abs().max() < 0.1
        assert (got.argmax(-1) == ref.argmax(-1)).float().mean() > 0.9
