"""Two processes with batch B follow one process with batch 2B (DistributedDataParallel, gloo)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REVERSAL_PAIRS, write_tsv

PAIRS = REVERSAL_PAIRS * 4

CONFIG = """\
data:
  train_tsv: {d}/train.tsv
  valid_tsv: {d}/valid.tsv
model:
  cell: lstm
  hidden_size: 16
  embedding_size: 8
  dropout: 0.0
train:
  seed: 3
  threads: 1
  max_steps: 8
  valid_every: 4
  log_every: 1
  valid_metric: ser
  valid_beam_size: 1
  progress: false
"""

COPY_COVERAGE = "  copy_attention: true\n  coverage: true\n"

LOSS = re.compile(r"INFO step (\d+) .* loss (\S+)")


def losses(out: Path) -> dict[int, float]:
    return {int(m.group(1)): float(m.group(2))
            for m in LOSS.finditer((out / "train.log").read_text())}


@pytest.mark.slow
@pytest.mark.parametrize("extra, port", [("", 29517), (COPY_COVERAGE, 29519)],
                         ids=["plain", "copy+coverage"])
def test_two_processes_match_one_with_double_batch(tmp_path, extra, port):
    write_tsv(tmp_path / "train.tsv", PAIRS)
    write_tsv(tmp_path / "valid.tsv", PAIRS[:6])
    (tmp_path / "c.yaml").write_text(CONFIG.format(d=tmp_path).replace("model:\n",
                                                                         "model:\n" + extra))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    single = subprocess.run(
        [sys.executable, "-m", "rnnseq", "-q", "train", "c.yaml", "--out", "one",
         "--set", "train.batch_size=4"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300)
    assert single.returncode == 0, single.stderr
    double = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-port", str(port), "-m", "rnnseq", "-q", "train", "c.yaml", "--out", "two",
         "--set", "train.batch_size=2"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300)
    assert double.returncode == 0, double.stderr[-3000:]
    a, b = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert sorted(a) == sorted(b) == list(range(1, 9))
    for step in a:
        assert a[step] == pytest.approx(b[step], rel=1e-4), step
    # only the main process wrote: one log, one set of checkpoints
    assert (tmp_path / "two" / "best" / "model.safetensors").exists()
    assert (tmp_path / "two" / "train.log").read_text().count("training stopped") == 1


@pytest.mark.slow
def test_resume_under_two_processes(tmp_path):
    """Stopped after 4 steps and resumed, a 2-process run ends where an uninterrupted one does."""
    write_tsv(tmp_path / "train.tsv", PAIRS)
    write_tsv(tmp_path / "valid.tsv", PAIRS[:6])
    (tmp_path / "c.yaml").write_text(CONFIG.format(d=tmp_path).replace("dropout: 0.0",
                                                                        "dropout: 0.2"))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}

    def run(out, *extra, port):
        proc = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
             "--master-port", str(port), "-m", "rnnseq", "-q", "train", "c.yaml", "--out", out,
             "--set", "train.batch_size=2", *extra], cwd=tmp_path, env=env,
            capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]

    run("straight", port=29521)
    run("split", "--set", "train.max_steps=4", port=29522)
    run("split", "--resume", port=29523)
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "straight" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "split" / "last" / "model.safetensors"))
    for name in a:
        assert a[name].equal(b[name]), name
    assert losses(tmp_path / "straight") == losses(tmp_path / "split")
