"""Kill training with SIGKILL at chosen moments, resume, and get bit-identical results."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REVERSAL_PAIRS, write_tsv

PAIRS = REVERSAL_PAIRS * 3

CONFIG = """\
data:
  train_tsv: {d}/train.tsv
  valid_tsv: {d}/valid.tsv
model:
  cell: lstm
  hidden_size: 16
  embedding_size: 8
  dropout: 0.2
train:
  seed: 7
  threads: 1
  batch_size: 4
  max_steps: 30
  valid_every: 10
  save_every: 3
  log_every: 1
  valid_metric: ser
  valid_beam_size: 2
  schedule: inverse_sqrt
  warmup_steps: 5
  src_word_dropout: 0.1   # more random numbers that a resume must replay exactly
  tgt_word_dropout: 0.1
  progress: false
"""

STEP_LINE = re.compile(r"INFO (step \d+ .*lr \S+)")


def rnnseq(*args, fault=None, cwd):
    env = {k: v for k, v in os.environ.items() if k != "RNNSEQ_FAULT"}
    if fault:
        env["RNNSEQ_FAULT"] = fault
    exe = Path(sys.executable).parent / "rnnseq"
    return subprocess.run([str(exe), "-q", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def step_lines(out_dir: Path) -> dict[int, str]:
    """The last logged line of each step (a resumed run logs redone steps again)."""
    lines = {}
    for match in STEP_LINE.finditer((out_dir / "train.log").read_text()):
        lines[int(match.group(1).split()[1])] = match.group(1)
    return lines


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("ref")
    write_tsv(d / "train.tsv", PAIRS)
    write_tsv(d / "valid.tsv", PAIRS[:6])
    (d / "config.yaml").write_text(CONFIG.format(d=d))
    proc = rnnseq("train", "config.yaml", "--out", "straight", cwd=d)
    assert proc.returncode == 0, proc.stderr
    return d


def weights(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["step:8", "step:23", "validation:2", "checkpoint:3",
                                   "checkpoint-switch:5"])
def test_sigkill_then_resume_is_bit_identical(reference, fault):
    d = reference
    out = f"killed-{fault.replace(':', '-')}"
    proc = rnnseq("train", "config.yaml", "--out", out, fault=fault, cwd=d)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    # whatever moment the kill hit, `last` is a complete, loadable model directory
    from rnnseq.modeldir import load_model_dir

    load_model_dir(d / out / "last")
    proc = rnnseq("train", "config.yaml", "--out", out, "--resume", cwd=d)
    assert proc.returncode == 0, proc.stderr
    a, b = weights(d / "straight" / "last"), weights(d / out / "last")
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].equal(b[name]), f"{name} differs after resume ({fault})"
    assert step_lines(d / out) == step_lines(d / "straight")
    assert (d / out / "best").resolve().name == (d / "straight" / "best").resolve().name
    # no half-written checkpoint directories survive a completed run
    assert not [p for p in (d / out / "checkpoints").iterdir() if p.name.startswith(".")]
