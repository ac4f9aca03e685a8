"""Odd and hostile conditions: huge lines, full disks, unwritable outputs."""

import errno
import logging

import pytest

from rnnseq.cli import main
from rnnseq.config import Config
from rnnseq.errors import TrainingError
from rnnseq.inference.translator import Translator
from rnnseq.modeldir import load_model_dir
from rnnseq.training.trainer import train

from .conftest import write_tsv
from .test_modeldir import make_bundle

PAIRS = [("a b", "b a"), ("b c", "c b"), ("c a", "a c"), ("a a", "a a")] * 3


def config(tmp_path, **train_cfg):
    write_tsv(tmp_path / "train.tsv", PAIRS)
    return Config.from_dict({
        "data": {"train_tsv": str(tmp_path / "train.tsv"), "max_len": 20},
        "model": {"cell": "gru", "hidden_size": 16, "embedding_size": 8},
        "train": {"out_dir": str(tmp_path / "out"), "batch_size": 4, "max_steps": 12,
                  "valid_every": 4, "progress": False, **train_cfg},
    })


def test_huge_line_is_dropped_in_training_and_truncated_at_translate(tmp_path, caplog):
    huge = "x " * 50_000  # 100,000 characters, 50,000 tokens
    cfg = config(tmp_path)
    write_tsv(tmp_path / "train.tsv", PAIRS + [(huge, "a")])
    with caplog.at_level(logging.INFO, logger="rnnseq"):
        train(cfg)
    assert "dropped 0 with an empty side and 1 longer than max_len" in caplog.text
    translator = Translator(make_bundle())
    with caplog.at_level(logging.WARNING, logger="rnnseq"):
        out = translator.translate(["ein Mann", " Ein" * 25_000], beam_size=2)
    assert len(out) == 2  # (the leading space is stripped, as in training)
    assert "input 2 has 99999 tokens; translating its first 1000" in caplog.text


def test_disk_full_during_checkpoint_keeps_last_good_one(tmp_path, monkeypatch):
    import rnnseq.fileio as fileio
    import rnnseq.training.trainer as trainer_module

    cfg = config(tmp_path)
    disk = {"full": False, "saves": 0}
    real_fsync, real_save = fileio.os.fsync, trainer_module.save_checkpoint

    def fsync(fd):
        if disk["full"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    def save(*args, **kwargs):
        disk["saves"] += 1
        disk["full"] = disk["saves"] >= 2  # the first checkpoint goes through
        return real_save(*args, **kwargs)

    monkeypatch.setattr(fileio.os, "fsync", fsync)
    monkeypatch.setattr(trainer_module, "save_checkpoint", save)
    with pytest.raises(TrainingError, match=r"No space left on device.*Stopped at step 8.*"
                       r"last complete checkpoint is kept \(.*step-0000004\)"):
        train(cfg)
    monkeypatch.undo()
    load_model_dir(tmp_path / "out" / "last")
    leftovers = [p.name for p in (tmp_path / "out" / "checkpoints").iterdir()]
    assert leftovers == ["step-0000004"]


def test_unwritable_out_dir(tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    cfg = tmp_path / "c.yaml"
    write_tsv(tmp_path / "train.tsv", PAIRS)
    cfg.write_text(f"data:\n  train_tsv: {tmp_path}/train.tsv\n"
                   f"train:\n  out_dir: {tmp_path}/a_file/out\n  max_steps: 2\n")
    assert main(["train", str(cfg)]) == 2
    assert "cannot write to train.out_dir" in capsys.readouterr().err


def test_read_only_translate_output(tmp_path, monkeypatch, capsys):
    import tempfile

    from rnnseq.modeldir import save_model_dir

    save_model_dir(tmp_path / "m", make_bundle())
    (tmp_path / "in.txt").write_text("ein Mann\n")

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    out = tmp_path / "out.txt"
    assert main(["translate", str(tmp_path / "m"), "-i", str(tmp_path / "in.txt"),
                 "-o", str(out)]) == 2
    assert f"cannot write {out}: Permission denied" in capsys.readouterr().err
    assert not out.exists()


def test_translation_batches_respect_the_token_budget(monkeypatch):
    translator = Translator(make_bundle())
    seen = []
    real = translator._search

    def spy(inputs, index, *args):
        seen.append((len(index), max(len(inputs.tokens[i]) for i in index)))
        return real(inputs, index, *args)

    monkeypatch.setattr(translator, "_search", spy)
    sentences = [("Ein Mann " * (i % 7 + 1)).strip() for i in range(40)]
    translator.translate(sentences, beam_size=1, max_batch_tokens=64)
    assert len(seen) > 1
    assert all(rows * width <= 64 or rows == 1 for rows, width in seen)
