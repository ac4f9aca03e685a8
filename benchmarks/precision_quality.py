"""Does bf16 training cost quality? Test BLEU of fp32- and bf16-trained models at equal steps.

    .venv/bin/python benchmarks/precision_quality.py [--steps 1300] [--seeds 1,2]

Trains the preset (``presets.py``, Multi30k de-en) once per precision and seed for the same
number of steps, one run after another, each in its own process (``rnnseq train``), then
decodes test2016 with each model's last checkpoint (greedy and beam 5, fp32 decoding,
batches of 64) and prints test BLEU (sacreBLEU, ``tokenize="none"``: the text is tokenized)
and the training wall time. Models go under ``results/precision/``. It needs
``../shared/data/multi30k`` (as ``speed.py``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from multi30k import available, prepare  # noqa: E402
from speed import bleu, build_config  # noqa: E402


def train(data: Path, out: Path, precision: str, seed: int, steps: int) -> float:
    """Train one model; the wall seconds of ``rnnseq train``."""
    config = build_config("multi30k-word-lstm", data, out, precision=precision, seed=seed,
                          max_steps=steps, valid_every=steps)
    path = out.with_suffix(".yaml")
    path.write_text(config.to_yaml(), encoding="utf-8")
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "rnnseq"), "-q", "train", str(path)],
                   check=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1300)
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--precisions", default="fp32,bf16")
    args = parser.parse_args()
    if not available():
        sys.exit("needs ../shared/data/multi30k")
    from rnnseq.inference.translator import load

    data = prepare(HERE / "results" / "multi30k")
    work = HERE / "results" / "precision"
    work.mkdir(parents=True, exist_ok=True)
    sentences = (data / "test2016.de").read_text(encoding="utf-8").splitlines()
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for precision in args.precisions.split(","):
            out = work / f"{precision}-seed{seed}"
            seconds = train(data, out, precision, seed, args.steps)
            translator = load(str(out / "last"))
            scores = []
            for beam in (1, 5):
                hyp = work / f"{out.name}-beam{beam}.hyp"
                hyps = translator.translate(sentences, beam_size=beam, batch_size=64)
                hyp.write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
                scores.append(bleu(str(hyp), data / "test2016.en"))
            rows.append((precision, seed, seconds, *scores))
            print(f"{precision} seed {seed}: {seconds / 60:.1f} min, test BLEU greedy "
                  f"{scores[0]:.2f}, beam 5 {scores[1]:.2f}", flush=True)
    print(f"\n{args.steps} steps each\n")
    print("| precision | seed | training wall | test BLEU greedy | test BLEU beam 5 |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for precision, seed, seconds, greedy, beam in rows:
        print(f"| {precision} | {seed} | {seconds / 60:.1f} min | {greedy:.2f} | {beam:.2f} |")
    for precision in args.precisions.split(","):
        seconds, greedy, beam = (statistics.mean(r[i] for r in rows if r[0] == precision)
                                 for i in (2, 3, 4))
        print(f"| {precision} | mean | {seconds / 60:.1f} min | {greedy:.2f} | {beam:.2f} |")


if __name__ == "__main__":
    main()
