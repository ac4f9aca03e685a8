"""Sampling: truncation, reproducibility whatever the batch, temperature towards greedy."""

import math

import pytest
import torch

from rnnseq.cli import main
from rnnseq.data.vocab import BOS_ID, EOS_ID
from rnnseq.errors import UsageError
from rnnseq.inference.sampling import Sampler, Sampling, stream_seed, truncate
from rnnseq.inference.search import greedy_search
from rnnseq.inference.translator import Translator
from rnnseq.modeldir import save_model_dir

from .test_ensemble import SENTENCES, bundle
from .test_search import ToyDecoder, toy_state


def log(*probs):
    return torch.tensor([probs]).log()


def test_top_k_keeps_the_k_most_probable():
    out = truncate(log(0.1, 0.4, 0.2, 0.3), top_k=2)
    assert out.isfinite().tolist() == [[False, True, False, True]]
    assert out[0, 1] == log(0.4)[0, 0]  # kept entries unchanged
    assert truncate(log(0.1, 0.4, 0.2, 0.3), top_k=0).isfinite().all()  # 0: no cut
    assert truncate(log(0.1, 0.4, 0.2, 0.3), top_k=9).isfinite().all()


@pytest.mark.parametrize("p, kept", [
    (0.5, [False, True, False, False]),   # 0.5 alone reaches 0.5
    (0.6, [False, True, False, True]),    # 0.5 + 0.3
    (0.85, [False, True, True, True]),    # 0.5 + 0.3 + 0.15
    (1.0, [True, True, True, True]),
    (0.01, [False, True, False, False]),  # the most probable is always kept
])
def test_top_p_keeps_the_smallest_set_reaching_p(p, kept):
    assert truncate(log(0.05, 0.5, 0.15, 0.3), top_p=p).isfinite().tolist() == [kept]


def test_top_k_then_top_p_and_ruled_out_tokens_stay_out():
    lp = log(0.05, 0.5, 0.15, 0.3)
    lp[0, 3] = -math.inf  # a decoding rule ruled it out
    # top-k first; top-p then measures the probability left after it
    assert truncate(lp, top_k=2, top_p=0.99).isfinite().tolist() == [[False, True, True, False]]
    assert truncate(lp, top_k=3, top_p=0.9).isfinite().tolist() == [[False, True, True, False]]


def test_draws_follow_the_distribution():
    """ToyDecoder: from <s>, 'a' 0.6 and 'b' 0.4; after 'a', </s> 0.4."""
    rows = 4000
    sampler = Sampler(Sampling(seed=3), [(i, 0) for i in range(rows)])
    hyps = greedy_search(ToyDecoder(), toy_state(rows), [10] * rows, choose=sampler)
    first = [h[0].tokens[0] for h in hyps]
    assert first.count(4) / rows == pytest.approx(0.6, abs=0.03)
    after_a = [h[0].tokens[1:2] for h in hyps if h[0].tokens[0] == 4]
    assert sum(t == [] for t in after_a) / len(after_a) == pytest.approx(0.4, abs=0.03)
    # a sample's score is the model's own log-probability of it
    h = hyps[0][0]
    expected = {(4,): 0.6 * 0.4, (5,): 0.4 * 0.9}.get(tuple(h.tokens))
    if expected:
        assert h.log_prob == pytest.approx(math.log(expected), abs=1e-5)
    # top-k 1 is greedy
    greedy = Sampler(Sampling(top_k=1, seed=3), [(i, 0) for i in range(50)])
    assert all(h[0].tokens == [4] for h in greedy_search(ToyDecoder(), toy_state(50), [10] * 50,
                                                         choose=greedy))
    assert BOS_ID not in first and EOS_ID not in first


def test_samples_do_not_depend_on_the_batch():
    translator = Translator(bundle(seed=1))
    sampling = Sampling(top_p=0.95, temperature=1.3, seed=7)
    together = translator.translate_nbest(SENTENCES, n_best=4, sampling=sampling)
    for i, sentence in enumerate(SENTENCES):
        alone = translator.translate_nbest([sentence], n_best=4, sampling=sampling,
                                           line_numbers=[i])
        assert [h.tokens for h in alone[0]] == [h.tokens for h in together[i]]
    small = translator.translate_nbest(SENTENCES, n_best=4, sampling=sampling, batch_size=1)
    assert [[h.tokens for h in r] for r in small] == [[h.tokens for h in r] for r in together]
    again = translator.translate_nbest(SENTENCES, n_best=4, sampling=sampling)
    assert [[h.tokens for h in r] for r in again] == [[h.tokens for h in r] for r in together]
    other = translator.translate_nbest(SENTENCES, n_best=4, sampling=Sampling(top_p=0.95,
                                                                             temperature=1.3,
                                                                             seed=8))
    assert [[h.tokens for h in r] for r in other] != [[h.tokens for h in r] for r in together]
    for result in together:  # n samples, best first
        assert len(result) == 4
        assert [h.score for h in result] == sorted((h.score for h in result), reverse=True)


def test_temperature_towards_zero_is_greedy():
    b = bundle(seed=2)
    with torch.no_grad():  # an untrained model is nearly uniform: give it clear preferences
        b.model.decoder.out.weight.mul_(30)
    translator = Translator(b)
    greedy = translator.translate_nbest(SENTENCES, beam_size=1)
    for t in (0.0, 1e-4):
        cold = translator.translate_nbest(SENTENCES, sampling=Sampling(temperature=t, seed=5))
        assert [r[0].tokens for r in cold] == [r[0].tokens for r in greedy]
        for c, g in zip(cold, greedy, strict=True):
            assert c[0].score == pytest.approx(g[0].score, abs=1e-5)


def test_stream_seeds_differ_and_are_stable():
    seeds = {stream_seed(0, line, sample) for line in range(100) for sample in range(10)}
    assert len(seeds) == 1000 and all(0 <= s < 2 ** 63 for s in seeds)
    assert stream_seed(1, 2, 3) == stream_seed(1, 2, 3)


def test_bad_sampling_options_are_refused(tmp_path, capsys):
    for kwargs, message in [({"top_k": -1}, "top-k"), ({"top_p": 0.0}, "top-p"),
                            ({"temperature": -1.0}, "temperature")]:
        with pytest.raises(UsageError, match=message):
            Sampling(**kwargs)
    with pytest.raises(UsageError, match="no beam size"):
        Translator(bundle()).translate_nbest(["a"], beam_size=3, sampling=Sampling())
    save_model_dir(tmp_path / "m", bundle())
    (tmp_path / "in.txt").write_text("Ein Mann.\n")
    assert main(["translate", str(tmp_path / "m"), "-i", str(tmp_path / "in.txt"),
                 "--top-k", "5"]) == 2
    assert "--top-k set how --sample samples; add --sample" in capsys.readouterr().err
    assert main(["translate", str(tmp_path / "m"), "-i", str(tmp_path / "in.txt"), "--sample",
                 "--beam", "4"]) == 2
    assert "drop --beam 4" in capsys.readouterr().err


def test_cli_samples_reproducibly_when_streaming_or_not(tmp_path, capsys, monkeypatch):
    import io

    save_model_dir(tmp_path / "m", bundle(seed=4))
    (tmp_path / "in.txt").write_text("\n".join(SENTENCES) + "\n")
    args = ["translate", str(tmp_path / "m"), "--sample", "--n-best", "3", "--seed", "11",
            "--top-k", "20", "--scores"]
    assert main([*args, "-i", str(tmp_path / "in.txt")]) == 0
    whole = capsys.readouterr().out
    assert len(whole.splitlines()) == 3 * len(SENTENCES)
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(SENTENCES) + "\n"))
    assert main([*args, "--batch-size", "1"]) == 0
    assert capsys.readouterr().out == whole
