"""Dev BLEU against wall-clock training time: rnnseq fp32, rnnseq bf16, OpenNMT-py and (when
asked) JoeyNMT on the preset, on this machine, one run each — the figure a user choosing a
toolkit wants.

    bash benchmarks/peers/setup.sh                          # once: the peers' virtualenvs
    .venv/bin/python benchmarks/time_to_bleu.py --minutes 12 --every 200
    .venv/bin/python benchmarks/time_to_bleu.py --systems rnnseq-fp32,rnnseq-bf16,onmt,joey

Each system trains the preset (`multi30k-word-lstm`, the peers' recorded config) for
``--minutes`` of wall time, one after the other, keeping a checkpoint every ``--every`` steps
(JoeyNMT, about a third as fast per step: every ``--joey-every``) with the time it was written
(from the start of the training process: start-up, vocabulary and data loading count, as they
do for a user). rnnseq and OpenNMT-py do not validate while training, so their time is
training and checkpoint writing. JoeyNMT writes a checkpoint only after validating, so it
validates on one dev sentence, greedy, and the generation and scoring time it logs is taken
off its clock. Afterwards every checkpoint decodes Multi30k's dev set (greedy, batches of 64)
and is scored with sacreBLEU (``tokenize="none"``: the text is already tokenized). Writes
``results/time_to_bleu.csv`` and ``results/time_to_bleu.png``; ``--publish`` copies the picture
to ``benchmarks/``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "peers"))
sys.path.insert(0, str(HERE))

import compare  # noqa: E402
import speed  # noqa: E402

SYSTEMS = {"rnnseq-fp32": "rnnseq fp32", "rnnseq-bf16": "rnnseq bf16", "onmt": "OpenNMT-py",
           "joey": "JoeyNMT"}
DEFAULT_SYSTEMS = "rnnseq-fp32,rnnseq-bf16,onmt"  # JoeyNMT when asked: 10 minutes more


def timed_checkpoints(directory: Path, pattern: str, start: float) -> list[tuple[int, float, Path]]:
    """(step, seconds since ``start``, path) of the checkpoints in ``directory`` whose names
    match ``pattern`` (one group: the step), from their modification times."""
    found = []
    for path in directory.iterdir():
        m = re.fullmatch(pattern, path.name)
        if m:
            found.append((int(m[1]), path.stat().st_mtime - start, path))
    return sorted(found)


def train_rnnseq(work: Path, data: Path, precision: str, minutes: float,
                 every: int) -> list[tuple[int, float, Path]]:
    out = work / f"rnnseq-{precision}"
    shutil.rmtree(out, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    config = speed.build_config(
        "multi30k-word-lstm", data, out, precision=precision, max_steps=10 ** 6,
        max_minutes=minutes, valid_every=10 ** 6, save_every=every, keep_checkpoints=10 ** 4,
        progress=False)
    path = work / f"rnnseq-{precision}.yaml"
    path.write_text(config.to_yaml(), encoding="utf-8")
    start = time.time()
    subprocess.run([str(Path(sys.executable).parent / "rnnseq"), "train", str(path)], check=True,
                   stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "2"})
    return timed_checkpoints(out / "checkpoints", r"step-0*(\d+)", start)


def train_onmt(bench, minutes: float, every: int) -> list[tuple[int, float, Path]]:
    out = bench.work / "onmt" / "time"
    shutil.rmtree(out, ignore_errors=True)
    cfg = compare.onmt_config(bench.work, 10 ** 6, 50, every, "time")
    cfg["valid_steps"] = 10 ** 7
    path = bench.write_yaml("onmt-time.yaml", cfg)
    start = run_for([bench.bin("onmt", "onmt_train"), "-config", str(path)], minutes,
                    bench.work / "logs" / "onmt-time.log", compare.ONMT_ENV)
    return timed_checkpoints(out, r"model_step_(\d+)\.pt", start)


def run_for(cmd: list[str], minutes: float, log: Path, env: dict | None = None) -> float:
    """Runs ``cmd`` (2 threads, ``env`` added, its output to ``log``) until it exits or
    ``minutes`` pass; returns its start time. A run that fails before its time is up raises,
    naming the log."""
    start = time.time()
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "OMP_NUM_THREADS": "2", **(env or {})})
        try:
            proc.wait(timeout=minutes * 60)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait()
            return start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed (exit {proc.returncode}); see {log}")
    return start


_JOEY_VALIDATION = re.compile(r"Generation took ([\d.]+)\[sec\]|Evaluation result .*?"
                              r"([\d.]+)\[sec\]|Checkpoint saved in .*?/(\d+)\.ckpt")


def joey_validation_seconds(log: str) -> dict[int, float]:
    """Step -> seconds JoeyNMT spent validating (generation and scoring, as it logs them)
    before that step's checkpoint was written, counted from the start of training."""
    total, before = 0.0, {}
    for m in _JOEY_VALIDATION.finditer(log):
        if m[3] is not None:
            before[int(m[3])] = total
        else:
            total += float(m[1] or m[2])
    return before


def train_joey(bench, minutes: float, every: int) -> list[tuple[int, float, Path]]:
    out = bench.work / "joey" / "time"
    shutil.rmtree(out, ignore_errors=True)
    cfg = compare.joey_config(bench.work, 10 ** 6, min(50, every // 2), "time", beam=1)
    cfg["data"]["sample_dev_subset"] = 1  # its validation only has to write the checkpoint
    cfg["training"].update(validation_freq=every, keep_best_ckpts=-1, print_valid_sents=[])
    path = bench.write_yaml("joey-time.yaml", cfg)
    log = bench.work / "logs" / "joey-time.log"
    start = run_for([bench.bin("joey", "python"), "-m", "joeynmt", "train", str(path),
                     "--skip-test"], minutes, log)
    validating = joey_validation_seconds(log.read_text(encoding="utf-8"))
    return [(step, seconds - validating[step], ckpt)  # a file not logged as saved may be cut
            for step, seconds, ckpt in timed_checkpoints(out, r"(\d+)\.ckpt", start)
            if step in validating]


def dev_bleu(system: str, checkpoint: Path, bench, refs: list[str]) -> float:
    import sacrebleu

    src = bench.data / "val.de"
    if system == "onmt":
        hyp = bench.work / "time-onmt.hyp"
        subprocess.run([bench.bin("onmt", "onmt_translate"), "-model", str(checkpoint),
                        "-src", str(src), "-output", str(hyp), "-beam_size", "1",
                        "-batch_size", "64", "-gpu", "-1"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env={**os.environ, **compare.ONMT_ENV})
        hyps = hyp.read_text(encoding="utf-8").splitlines()
    elif system == "joey":
        cfg = bench.write_yaml("joey-time-decode.yaml", compare.joey_config(
            bench.work, 1, 1, "time", beam=1, load_model=str(checkpoint)))
        with open(src, encoding="utf-8") as stdin:
            done = subprocess.run([bench.bin("joey", "python"), "-m", "joeynmt", "translate",
                                   str(cfg)], stdin=stdin, capture_output=True, text=True,
                                  check=True)
        hyps = done.stdout.splitlines()
    else:
        from rnnseq.inference.translator import load

        hyps = load(str(checkpoint)).translate(src.read_text(encoding="utf-8").splitlines(),
                                               beam_size=1, batch_size=64)
    return sacrebleu.corpus_bleu(hyps, [refs], tokenize="none", force=True).score


def plot(rows: list[dict], path: Path, minutes: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for system, label in SYSTEMS.items():
        points = [(r["seconds"] / 60, r["bleu"]) for r in rows if r["system"] == system]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", markersize=3, label=label)
    ax.set_xlabel("training wall time (minutes, 2 CPU cores)")
    ax.set_ylabel("dev BLEU (greedy)")
    ax.set_title(f"Multi30k de→en, the peers' preset, {minutes:g} minutes each")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=12.0)
    parser.add_argument("--every", type=int, default=200, help="steps between checkpoints")
    parser.add_argument("--joey-every", type=int, default=100,
                        help="steps between JoeyNMT's checkpoints")
    parser.add_argument("--systems", default=DEFAULT_SYSTEMS,
                        help=f"a comma-separated list of {', '.join(SYSTEMS)}")
    parser.add_argument("--work", default=str(HERE / "results" / "peers" / "work"))
    parser.add_argument("--peers", default=str(HERE / "results" / "peers"))
    parser.add_argument("--publish", action="store_true", help="copy the picture to benchmarks/")
    args = parser.parse_args()
    systems = [s for s in args.systems.split(",") if s]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        parser.error(f"--systems: unknown {unknown[0]!r}; choose from {', '.join(SYSTEMS)}")
    if args.every < 1 or args.joey_every < 2:
        parser.error("--every must be at least 1 and --joey-every at least 2 (JoeyNMT logs "
                     "more often than it validates)")
    bench = compare.Bench(argparse.Namespace(work=args.work, peers=args.peers,
                                             decode_train_steps=1300))
    bench.prepare([s for s in systems if s in ("onmt", "joey")], [])
    refs = (bench.data / "val.en").read_text(encoding="utf-8").splitlines()
    rows = []
    for system in systems:
        print(f"training {SYSTEMS[system]} for {args.minutes:g} minutes...", flush=True)
        if system == "onmt":
            checkpoints = train_onmt(bench, args.minutes, args.every)
        elif system == "joey":
            checkpoints = train_joey(bench, args.minutes, args.joey_every)
        else:
            checkpoints = train_rnnseq(bench.work / "time", bench.data, system.split("-")[1],
                                       args.minutes, args.every)
        if not checkpoints:
            raise SystemExit(f"{SYSTEMS[system]} wrote no checkpoint in {args.minutes:g} "
                             "minutes: give it more --minutes or a smaller --every")
        for step, seconds, path in checkpoints:
            score = dev_bleu(system, path, bench, refs)
            rows.append({"system": system, "step": step, "seconds": round(seconds, 1),
                         "bleu": round(score, 2)})
            print(f"  step {step:>6}  {seconds / 60:5.1f} min  dev BLEU {score:.2f}", flush=True)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    with open(results / "time_to_bleu.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["system", "step", "seconds", "bleu"])
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, results / "time_to_bleu.png", args.minutes)
    if args.publish:
        shutil.copyfile(results / "time_to_bleu.png", HERE / "time_to_bleu.png")
    print(json.dumps({"csv": str(results / "time_to_bleu.csv"),
                      "png": str(results / "time_to_bleu.png")}))


if __name__ == "__main__":
    main()
