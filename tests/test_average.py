"""Checkpoint averaging: kept checkpoints, the mean of their weights, refusals that lose nothing."""

import json

import pytest
import torch
from safetensors.torch import load_file

from rnnseq.average import average_model_dirs, resolve_inputs
from rnnseq.cli import main
from rnnseq.errors import ModelDirError, OutputError
from rnnseq.modeldir import load_model_dir

from .test_cli import workdir  # noqa: F401 - the fixture


def train_keeping(workdir, keep=3, extra=()):  # noqa: F811
    args = ["train", str(workdir / "config.yaml"), "--set", "train.valid_every=10",
            "--set", f"train.keep_checkpoints={keep}", *extra]
    assert main(args) == 0
    return workdir / "model"


def test_training_keeps_the_newest_checkpoints_and_best(workdir):  # noqa: F811
    run = train_keeping(workdir, keep=2)
    kept = sorted(p.name for p in (run / "checkpoints").iterdir())
    best = (run / "best").resolve().name
    assert kept == sorted({"step-0000030", "step-0000040", best})


COPY_COVERAGE = ("--set", "model.copy_attention=true", "--set", "model.coverage=true")


@pytest.mark.parametrize("extra", [(), COPY_COVERAGE], ids=["plain", "copy+coverage"])
def test_average_is_the_mean_of_the_weights(workdir, capsys, extra):  # noqa: F811
    run = train_keeping(workdir, keep=3, extra=extra)
    assert main(["average", str(run), "--last", "3", "-o", str(workdir / "avg")]) == 0
    assert "averaged 3 checkpoints" in capsys.readouterr().out
    steps = [run / "checkpoints" / f"step-00000{n}" for n in (20, 30, 40)]
    weights = [load_file(str(d / "model.safetensors")) for d in steps]
    averaged = load_file(str(workdir / "avg" / "model.safetensors"))
    assert set(averaged) == set(weights[0])
    for name, tensor in averaged.items():
        expected = sum(w[name].double() for w in weights) / 3
        torch.testing.assert_close(tensor.double(), expected, rtol=0, atol=1e-6)
    meta = json.loads((workdir / "avg" / "meta.json").read_text())
    assert meta["step"] == 40 and len(meta["averaged"]) == 3
    # the result is a complete model directory that translates
    bundle = load_model_dir(workdir / "avg")
    assert bundle.config.model.cell == "gru"
    (workdir / "in.txt").write_text("abc\n")
    assert main(["translate", str(workdir / "avg"), "-i", str(workdir / "in.txt")]) == 0


def test_average_of_one_checkpoint_twice_is_that_checkpoint(workdir):  # noqa: F811
    run = train_keeping(workdir, keep=2)
    last = (run / "last").resolve()
    with pytest.raises(ModelDirError, match="at least two"):
        resolve_inputs([last, run / "last"])  # the same directory given twice counts once
    out = average_model_dirs([last, last], workdir / "same")
    a, b = (load_file(str(d / "model.safetensors")) for d in (last, out))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_average_refusals(workdir, capsys):  # noqa: F811
    run = train_keeping(workdir, keep=1)
    # only last (and best) kept: not enough to average with --last 1
    assert main(["average", str(run), "--last", "1", "-o", str(workdir / "x")]) == 2
    assert "at least two" in capsys.readouterr().err
    assert not (workdir / "x").exists()
    # an existing, non-empty output directory is never overwritten
    (workdir / "taken").mkdir()
    (workdir / "taken" / "keep.txt").write_text("mine")
    last = (run / "last").resolve()
    with pytest.raises(OutputError, match="not empty"):
        average_model_dirs([last, last], workdir / "taken")
    assert (workdir / "taken" / "keep.txt").read_text() == "mine"
    # a different model cannot be averaged in
    other = workdir / "other"
    assert main(["train", str(workdir / "config.yaml"), "--out", str(other),
                 "--set", "model.hidden_size=16"]) == 0
    capsys.readouterr()
    assert main(["average", str(run / "last"), str(other / "last"), "-o",
                 str(workdir / "y")]) == 2
    err = capsys.readouterr().err
    assert "model.hidden_size is 32" in err and "has 16" in err and "config.yaml" in err
    assert not (workdir / "y").exists()
    # nor one with another vocabulary
    (workdir / "train2.tsv").write_text("xyz\tx y z\nzyx\tz y x\n")
    third = workdir / "third"
    assert main(["train", str(workdir / "config.yaml"), "--out", str(third),
                 "--set", f"data.train_tsv={workdir / 'train2.tsv'}",
                 "--set", f"data.valid_tsv={workdir / 'train2.tsv'}"]) == 0
    capsys.readouterr()
    assert main(["average", str(run / "last"), str(third / "last"), "-o",
                 str(workdir / "z")]) == 2
    assert "vocab" in capsys.readouterr().err
    assert main(["average", str(workdir / "nowhere"), str(run), "-o", str(workdir / "w")]) == 2
    assert "no such directory" in capsys.readouterr().err
