"""Dev BLEU against wall-clock training time: rnnseq fp32, rnnseq bf16 and OpenNMT-py on the
preset, on this machine, one run each — the figure a user choosing a toolkit wants.

    bash benchmarks/peers/setup.sh                          # once: OpenNMT-py's virtualenv
    .venv/bin/python benchmarks/time_to_bleu.py --minutes 12 --every 200

Each system trains the preset (`multi30k-word-lstm`, the peers' recorded config) for
``--minutes`` of wall time, one after the other, keeping a checkpoint every ``--every`` steps
with the time it was written (from the start of the training process: start-up, vocabulary
and data loading count, as they do for a user). Neither validates while training, so the time
is training and checkpoint writing. Afterwards every
checkpoint decodes Multi30k's dev set (greedy, batches of 64) and is scored with sacreBLEU
(``tokenize="none"``: the text is already tokenized). Writes ``results/time_to_bleu.csv`` and
``results/time_to_bleu.png``; ``--publish`` copies the picture to ``benchmarks/``.
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

SYSTEMS = {"rnnseq-fp32": "rnnseq fp32", "rnnseq-bf16": "rnnseq bf16", "onmt": "OpenNMT-py"}
ONMT_ENV = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}  # its own checkpoints are pickles


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
    start = time.time()
    proc = subprocess.Popen([bench.bin("onmt", "onmt_train"), "-config", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "2", **ONMT_ENV})
    try:
        proc.wait(timeout=minutes * 60)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait()
    return timed_checkpoints(out, r"model_step_(\d+)\.pt", start)


def dev_bleu(system: str, checkpoint: Path, bench, refs: list[str]) -> float:
    import sacrebleu

    src = bench.data / "val.de"
    if system == "onmt":
        hyp = bench.work / "time-onmt.hyp"
        subprocess.run([bench.bin("onmt", "onmt_translate"), "-model", str(checkpoint),
                        "-src", str(src), "-output", str(hyp), "-beam_size", "1",
                        "-batch_size", "64", "-gpu", "-1"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env={**os.environ, **ONMT_ENV})
        hyps = hyp.read_text(encoding="utf-8").splitlines()
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
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--work", default=str(HERE / "results" / "peers" / "work"))
    parser.add_argument("--peers", default=str(HERE / "results" / "peers"))
    parser.add_argument("--publish", action="store_true", help="copy the picture to benchmarks/")
    args = parser.parse_args()
    systems = [s for s in args.systems.split(",") if s]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        parser.error(f"--systems: unknown {unknown[0]!r}; choose from {', '.join(SYSTEMS)}")
    bench = compare.Bench(argparse.Namespace(work=args.work, peers=args.peers,
                                             decode_train_steps=1300))
    bench.prepare(["onmt"] if "onmt" in systems else [], [])
    refs = (bench.data / "val.en").read_text(encoding="utf-8").splitlines()
    rows = []
    for system in systems:
        print(f"training {SYSTEMS[system]} for {args.minutes:g} minutes...", flush=True)
        if system == "onmt":
            checkpoints = train_onmt(bench, args.minutes, args.every)
        else:
            checkpoints = train_rnnseq(bench.work / "time", bench.data, system.split("-")[1],
                                       args.minutes, args.every)
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
