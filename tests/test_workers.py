"""Decoding several batches at once (``decode.workers`` / ``translate --workers``): the same
outputs as one at a time, really concurrent, and torch's thread setting given back."""

from __future__ import annotations

import threading

import pytest
import torch

from rnnseq.config import Config, ConfigError
from rnnseq.errors import UsageError
from rnnseq.inference.sampling import Sampling
from rnnseq.inference.translator import Translator

from .test_modeldir import make_bundle

SENTENCES = ["Ein Mann fährt.", "", "E", "Zwei Hunde spielen im Schnee, und ein Kind liest.",
             "Die Sonne scheint.", "x", "Ein Kind liest ein Buch.", "Hunde", "Schnee fällt.",
             "Zwei Männer", "Ein kleines Haus."]


@pytest.mark.parametrize("beam", [1, 3])
@pytest.mark.parametrize("quantize", [None, "int8"])
def test_workers_give_the_outputs_of_one_batch_at_a_time(beam, quantize):
    translator = Translator(make_bundle(), quantize=quantize)
    one = translator.translate_nbest(SENTENCES, beam_size=beam, n_best=beam, batch_size=2,
                                     workers=1)
    for workers in (2, 3, 16):
        out = translator.translate_nbest(SENTENCES, beam_size=beam, n_best=beam, batch_size=2,
                                         workers=workers)
        for a, b in zip(one, out, strict=True):
            assert [h.tokens for h in a] == [h.tokens for h in b]
            assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)


def test_samples_do_not_depend_on_the_workers():
    translator = Translator(make_bundle())
    sampling = Sampling(top_k=0, top_p=1.0, temperature=1.0, seed=3)
    one = translator.translate_nbest(SENTENCES, n_best=2, sampling=sampling, batch_size=3)
    two = translator.translate_nbest(SENTENCES, n_best=2, sampling=sampling, batch_size=3,
                                     workers=2)
    assert [[h.tokens for h in r] for r in one] == [[h.tokens for h in r] for r in two]


def test_batches_run_concurrently_with_their_share_of_the_threads(monkeypatch):
    translator = Translator(make_bundle())
    search = translator._search
    meet = threading.Barrier(2, timeout=30)  # the first two batches wait for each other
    seen: list[tuple[int, int]] = []
    before = torch.get_num_threads()

    def spy(*args, **kwargs):
        seen.append((threading.get_ident(), torch.get_num_threads()))
        if len(seen) <= 2:
            meet.wait()
        return search(*args, **kwargs)

    monkeypatch.setattr(translator, "_search", spy)
    translator.translate_nbest(SENTENCES, beam_size=1, batch_size=2, workers=2)
    assert len(seen) == 6 and len({ident for ident, _ in seen}) == 2
    assert {threads for _, threads in seen} == {max(1, before // 2)}
    assert torch.get_num_threads() == before


def test_threads_are_given_back_when_a_batch_fails(monkeypatch):
    translator = Translator(make_bundle())
    before = torch.get_num_threads()

    def broken(*args, **kwargs):
        raise RuntimeError("this batch failed")

    monkeypatch.setattr(translator, "_search", broken)
    with pytest.raises(RuntimeError, match="this batch failed"):
        translator.translate_nbest(SENTENCES, batch_size=2, workers=2)
    assert torch.get_num_threads() == before


def test_one_batch_or_one_worker_starts_no_thread(monkeypatch):
    translator = Translator(make_bundle())
    monkeypatch.setattr(translator.backend, "workers", None)  # would fail if it were used
    translator.translate_nbest(SENTENCES, batch_size=64, workers=4)
    translator.translate_nbest(SENTENCES, batch_size=2, workers=1)


def test_worker_count_is_checked():
    translator = Translator(make_bundle())
    with pytest.raises(UsageError, match="workers must be >= 1, got 0"):
        translator.translate_nbest(SENTENCES, workers=0)
    with pytest.raises(ConfigError, match="decode.workers"):
        Config.from_dict({"decode": {"workers": 0}})
    config = Config.from_dict({"decode": {"workers": 2}})
    assert config.decode.workers == 2


def test_translate_cli_takes_workers(tmp_path, capsys):
    from rnnseq.cli import main
    from rnnseq.modeldir import save_model_dir

    save_model_dir(tmp_path / "m", make_bundle())
    (tmp_path / "in.txt").write_text("".join(s + "\n" for s in SENTENCES), encoding="utf-8")
    outputs = []
    for workers in ("1", "2"):
        assert main(["translate", str(tmp_path / "m"), "-i", str(tmp_path / "in.txt"),
                     "--batch-size", "2", "--scores", "--workers", workers]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and outputs[0].count("\n") == len(SENTENCES)
    assert main(["translate", str(tmp_path / "m"), "-i", str(tmp_path / "in.txt"),
                 "--workers", "0"]) == 2
    assert "workers must be >= 1" in capsys.readouterr().err
