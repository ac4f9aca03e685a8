"""Schedules, early stopping, TensorBoard output and data errors at the training entry point."""

import logging

import pytest

from rnnseq.config import Config, TrainConfig
from rnnseq.data.corpus import DataError
from rnnseq.errors import ConfigError
from rnnseq.training.schedule import Schedule
from rnnseq.training.trainer import train

from .conftest import write_tsv

PAIRS = [("a b", "b a"), ("b c", "c b"), ("c a", "a c"), ("a a", "a a")] * 3


def config(tmp_path, **train_cfg):
    write_tsv(tmp_path / "train.tsv", PAIRS)
    write_tsv(tmp_path / "valid.tsv", PAIRS[:4])
    raw = {
        "data": {"train_tsv": str(tmp_path / "train.tsv"),
                 "valid_tsv": str(tmp_path / "valid.tsv")},
        "model": {"cell": "gru", "hidden_size": 16, "embedding_size": 8},
        "train": {"out_dir": str(tmp_path / "out"), "batch_size": 4, "max_steps": 20,
                  "valid_every": 5, "progress": False, **train_cfg},
    }
    return Config.from_dict(raw)


def test_schedules():
    constant = Schedule(TrainConfig(lr=1.0, warmup_steps=4))
    assert [constant.lr(s) for s in (1, 2, 4, 100)] == [0.25, 0.5, 1.0, 1.0]
    inv = Schedule(TrainConfig(lr=1.0, schedule="inverse_sqrt", warmup_steps=4))
    assert inv.lr(2) == pytest.approx(0.5) and inv.lr(4) == 1.0 and inv.lr(16) == 0.5
    step = Schedule(TrainConfig(lr=1.0, schedule="step", decay_every=10, decay_factor=0.5))
    assert [step.lr(s) for s in (1, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]
    plateau = Schedule(TrainConfig(lr=1.0, schedule="plateau", plateau_patience=1,
                                   decay_factor=0.1, min_lr=0.05))
    assert not plateau.report(3.0, "loss")
    assert not plateau.report(3.5, "loss")  # 1 bad: within patience
    assert plateau.report(3.2, "loss")      # 2 bad: decay
    assert plateau.lr(50) == pytest.approx(0.1)
    plateau.report(9, "loss")
    plateau.report(9, "loss")
    assert plateau.lr(50) == 0.05  # floored at min_lr
    again = Schedule(plateau.cfg)
    again.load_state_dict(plateau.state_dict())
    assert again.lr(50) == plateau.lr(50)
    cosine = Schedule(TrainConfig(lr=1.0, schedule="cosine", warmup_steps=10, max_steps=110,
                                  min_lr=0.1))
    assert cosine.lr(5) == 0.5 and cosine.lr(10) == 1.0        # warm-up, then the peak
    assert cosine.lr(60) == pytest.approx(0.55)                 # half-way: the mean
    assert cosine.lr(110) == pytest.approx(0.1) and cosine.lr(500) == pytest.approx(0.1)
    rates = [cosine.lr(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))  # never rises


@pytest.mark.parametrize("train, message", [
    ({"schedule": "cosine", "max_steps": None, "max_minutes": 5}, "set it"),
    ({"schedule": "cosine", "max_steps": 100, "warmup_steps": 100}, r"warmup_steps \(100\)"),
])
def test_cosine_schedule_needs_max_steps(train, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_dict({"data": {"train_tsv": "x.tsv"}, "train": train})


def test_early_stopping(tmp_path):
    logging.getLogger("rnnseq").setLevel(logging.WARNING)  # a library user's quiet setting
    cfg = config(tmp_path, max_steps=400, valid_every=2, early_stopping_patience=2, lr=0.5,
                 optimizer="sgd")
    result = train(cfg)
    assert result.stop_reason.startswith("early stopping")
    assert result.steps < 400
    assert "early stopping" in (tmp_path / "out" / "train.log").read_text()
    assert (tmp_path / "out" / "best").resolve().name == f"step-{result.best_step:07d}"
    # only the checkpoints that last and best point to are kept
    kept = {p.name for p in (tmp_path / "out" / "checkpoints").iterdir()}
    assert kept == {f"step-{result.best_step:07d}", f"step-{result.steps:07d}"}


def test_tensorboard_events_written(tmp_path):
    train(config(tmp_path, tensorboard=True, log_every=5))
    events = list((tmp_path / "out" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_max_epochs_and_token_batches(tmp_path):
    result = train(config(tmp_path, max_steps=None, max_epochs=2, batch_type="tokens",
                          batch_size=12))
    assert result.stop_reason == "reached train.max_epochs (2)"
    assert result.steps >= 4


@pytest.mark.parametrize(
    "content, pattern",
    [
        (b"a b\tb a\nno tab\n", r"train\.tsv:2: expected exactly one tab"),
        (b"a b\tb a\n\xfe\tx\n", r"train\.tsv:2: invalid UTF-8"),
        (b"", r"train\.tsv is empty"),
        (b"\t\n \t \n", r"no usable pairs left"),
        (b"a b\tb a\nc\x00\td\n", r"train\.tsv:2: contains a NUL byte"),
        (b"\xef\xbb\xbfa b\tb a\r\nno tab\r\n", r"train\.tsv:2: expected exactly one tab"),
    ],
)
def test_bad_training_data_writes_nothing(tmp_path, content, pattern):
    cfg = config(tmp_path)
    (tmp_path / "train.tsv").write_bytes(content)
    with pytest.raises(DataError, match=pattern):
        train(cfg)
    assert not (tmp_path / "out").exists()


def _nan_after(monkeypatch, bad_calls):
    """Make the loss NaN on the given (1-based) training-step calls."""
    import rnnseq.training.trainer as trainer_module

    real = trainer_module.sequence_loss
    calls = {"n": 0}

    def patched(model, *args, **kwargs):
        loss, nll, n = real(model, *args, **kwargs)
        if model.training:
            calls["n"] += 1
            if calls["n"] in bad_calls:
                return loss * float("nan"), nll * float("nan"), n
        return loss, nll, n

    monkeypatch.setattr(trainer_module, "sequence_loss", patched)


def test_nonfinite_loss_skips_the_update(tmp_path, monkeypatch, caplog):
    _nan_after(monkeypatch, {3, 4})
    with caplog.at_level(logging.WARNING, logger="rnnseq"):
        result = train(config(tmp_path, max_steps=10))
    assert result.steps == 10  # two batches skipped, ten real updates
    assert caplog.text.count("non-finite loss or gradient; update skipped") == 2
    import json

    state = json.loads((tmp_path / "out" / "last" / "trainer_state.json").read_text())
    assert state["nonfinite"] == 2


def test_too_many_nonfinite_losses_stop_and_keep_last_checkpoint(tmp_path, monkeypatch):
    from rnnseq.errors import TrainingError
    from rnnseq.modeldir import load_model_dir

    _nan_after(monkeypatch, set(range(6, 100)))
    with pytest.raises(TrainingError, match="3 consecutive non-finite.*train.max_nonfinite"):
        train(config(tmp_path, max_steps=50, valid_every=5, max_nonfinite=3))
    assert (tmp_path / "out" / "last").resolve().name == "step-0000005"
    load_model_dir(tmp_path / "out" / "last")


def test_max_minutes(tmp_path):
    result = train(config(tmp_path, max_steps=None, max_minutes=1e-6))
    assert result.stop_reason == "reached train.max_minutes (1e-06)"
    assert result.steps == 1


def test_bf16_training_and_decoding(tmp_path):
    from rnnseq.inference.translator import load

    result = train(config(tmp_path, precision="bf16", max_steps=30, lr=0.01))
    first, last = result.history[0]["loss"], result.history[-1]["loss"]
    assert last < first
    from safetensors.torch import load_file

    weights = load_file(str(tmp_path / "out" / "best" / "model.safetensors"))
    assert all(t.dtype == __import__("torch").float32 for t in weights.values())
    out = load(str(tmp_path / "out" / "best"), precision="bf16").translate(["a b"])
    assert isinstance(out[0], str)


def test_fp16_needs_a_gpu(tmp_path):
    from rnnseq.config import ConfigError

    cfg = config(tmp_path, precision="fp16", device="cpu")
    with pytest.raises(ConfigError, match="train.precision: fp16 needs a CUDA device"):
        train(cfg)


def test_gradient_accumulation_matches_a_bigger_batch(tmp_path):
    """accumulate=2 with batch 2 takes the same steps as batch 4 (dropout off)."""
    import torch
    from safetensors.torch import load_file

    results = {}
    for name, batch, accumulate in (("big", 4, 1), ("acc", 2, 2)):
        cfg = config(tmp_path, max_steps=6, valid_every=6, batch_size=batch,
                     accumulate=accumulate, label_smoothing=0.1)
        cfg.model.dropout = 0.0
        cfg.train.out_dir = str(tmp_path / name)
        train(cfg)
        results[name] = load_file(str(tmp_path / name / "last" / "model.safetensors"))
    for key, value in results["big"].items():
        torch.testing.assert_close(value, results["acc"][key], rtol=1e-4, atol=1e-5)


def test_validation_scores_repeated_sources_against_all_their_targets(tmp_path, monkeypatch):
    import rnnseq.training.trainer as trainer_module

    cfg = config(tmp_path, valid_metric="ser", max_steps=5)
    # "a b" has two accepted targets; the stub answers with the second one
    write_tsv(tmp_path / "valid.tsv", [("a b", "b a"), ("b c", "c b"), ("a b", "a a b")])
    asked = []

    def translate(self, sources, **kwargs):
        asked.append(list(sources))
        return ["a a b" if s == "a b" else "c b" for s in sources]

    monkeypatch.setattr(trainer_module.Translator, "translate", translate)
    result = train(cfg)
    assert asked == [["a b", "b c"]]  # each source decoded once
    assert result.history[-1]["ser"] == 0.0


def test_word_dropout_replaces_real_tokens_only():
    import torch

    from rnnseq.data.vocab import BOS_ID, PAD_ID, UNK_ID
    from rnnseq.training.loss import word_dropout

    torch.manual_seed(0)
    ids = torch.full((64, 50), 7)
    ids[:, 0] = BOS_ID
    ids[:, 40:] = PAD_ID
    assert torch.equal(word_dropout(ids, 0.0), ids)
    out = word_dropout(ids, 0.3, skip_first=True)
    assert torch.equal(out[:, 0], ids[:, 0]) and torch.equal(out[:, 40:], ids[:, 40:])
    dropped = (out[:, 1:40] == UNK_ID).float().mean().item()
    assert 0.25 < dropped < 0.35
    assert set(out.unique().tolist()) == {BOS_ID, PAD_ID, UNK_ID, 7}


def test_word_dropout_trains_and_is_validated(tmp_path, monkeypatch):
    import rnnseq.training.trainer as trainer_module

    seen = []
    original = trainer_module.word_dropout

    def spy(ids, p, skip_first=False):
        out = original(ids, p, skip_first)
        seen.append((p, skip_first, int((out != ids).sum())))
        return out

    monkeypatch.setattr(trainer_module, "word_dropout", spy)
    train(config(tmp_path, max_steps=5, src_word_dropout=0.5, tgt_word_dropout=0.25))
    assert {(p, skip) for p, skip, _ in seen} == {(0.5, False), (0.25, True)}
    assert sum(changed for *_, changed in seen) > 0
    with pytest.raises(ConfigError, match="train.tgt_word_dropout must be below 1"):
        config(tmp_path, tgt_word_dropout=1.0)
