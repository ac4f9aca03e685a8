"""Exported (ONNX, onnxruntime) against PyTorch decoding of one model: output parity and speed.

    .venv/bin/python benchmarks/onnx_runtime.py                 # the preset model of peers/
    .venv/bin/python benchmarks/onnx_runtime.py --model DIR --src SRC --ref REF

Exports ``--model`` in fp32 and with onnxruntime's dynamic int8 quantization (under
``benchmarks/results/onnx/``), then on the same sentences, in one process:

* parity: greedy and beam-5 outputs of the fp32 export against PyTorch fp32 (share of identical
  lines, largest score difference), and BLEU of every system;
* throughput: the whole file in length-sorted batches of 64, greedy and beam 5, for PyTorch
  fp32 and int8 and the fp32 and int8 exports; rounds alternate between the systems and the
  table shows each one's median;
* latency: one sentence at a time (batch 1), the first ``--latency-sentences``, p50 and p90.

Prints the tables (markdown) and writes ``benchmarks/results/onnx_runtime.csv``.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "results" / "peers" / "work"
SYSTEMS = ("torch fp32", "torch int8", "onnx fp32", "onnx int8")


def load_systems(model: Path, out: Path, reexport: bool) -> dict:
    from rnnseq.export.onnx import export_model
    from rnnseq.inference.translator import load

    exports = {}
    for kind in ("fp32", "int8"):
        path = out / kind
        if reexport and path.exists():
            shutil.rmtree(path)
        if not path.exists():
            export_model(model, path, quantize=None if kind == "fp32" else "int8")
        exports[kind] = path
    return {"torch fp32": load(str(model)), "torch int8": load(str(model), quantize="int8"),
            "onnx fp32": load(str(exports["fp32"])), "onnx int8": load(str(exports["int8"]))}


def bleu(hyps: list[str], refs: list[str]) -> float:
    import sacrebleu

    return sacrebleu.corpus_bleu(hyps, [refs], tokenize="none").score


def timed(translator, lines: list[str], beam: int, batch: int) -> tuple[float, list]:
    start = time.perf_counter()
    results = translator.translate_nbest(lines, beam_size=beam, batch_size=batch)
    return time.perf_counter() - start, [r[0] for r in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=WORK / "rnnseq-model" / "best")
    parser.add_argument("--src", type=Path, default=WORK / "data" / "test2016.de")
    parser.add_argument("--ref", type=Path, default=WORK / "data" / "test2016.en")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "onnx")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-sentences", type=int, default=200)
    parser.add_argument("--reexport", action="store_true", help="export again")
    args = parser.parse_args()
    for path in (args.model, args.src, args.ref):
        if not path.exists():
            sys.exit(f"{path}: not found (the preset model and data come from "
                     "benchmarks/peers/compare.py; or give --model/--src/--ref)")
    lines = args.src.read_text(encoding="utf-8").splitlines()
    refs = args.ref.read_text(encoding="utf-8").splitlines()
    systems = load_systems(args.model, args.out, args.reexport)
    for translator in systems.values():  # warm up: first calls allocate
        translator.translate(lines[:64], beam_size=5)

    times: dict = {(s, beam): [] for s in SYSTEMS for beam in (1, 5)}
    outputs: dict = {}
    for _ in range(args.rounds):
        for beam in (1, 5):
            for name in SYSTEMS:
                seconds, hyps = timed(systems[name], lines, beam, 64)
                times[name, beam].append(seconds)
                outputs[name, beam] = hyps
    latency: dict = {}
    for beam in (1, 5):
        for name in SYSTEMS:
            per = [timed(systems[name], [line], beam, 1)[0]
                   for line in lines[: args.latency_sentences]]
            latency[name, beam] = per

    rows = []
    print(f"\n{len(lines):,} sentences of {args.src}; model {args.model}\n")
    print("| system | decoding | sentences/s (batch 64) | × torch fp32 | p50 / p90 ms (batch 1) "
          "| × torch fp32 (p50) | BLEU |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for beam in (1, 5):
        base = statistics.median(times["torch fp32", beam])
        base_p50 = statistics.median(latency["torch fp32", beam])
        for name in SYSTEMS:
            seconds = statistics.median(times[name, beam])
            per = sorted(latency[name, beam])
            p50, p90 = statistics.median(per), per[int(0.9 * (len(per) - 1))]
            score = bleu([h.text for h in outputs[name, beam]], refs)
            row = {"system": name, "beam": beam, "sent_s": len(lines) / seconds,
                   "speedup": base / seconds, "p50_ms": 1000 * p50, "p90_ms": 1000 * p90,
                   "latency_ratio": p50 / base_p50, "bleu": score}
            rows.append(row)
            print(f"| {name} | {'greedy' if beam == 1 else 'beam 5'} | {row['sent_s']:,.1f} | "
                  f"{row['speedup']:.2f} | {row['p50_ms']:.1f} / {row['p90_ms']:.1f} | "
                  f"{row['latency_ratio']:.2f} | {score:.2f} |")
    print("\nparity of the fp32 export with torch fp32:")
    for beam in (1, 5):
        mine, theirs = outputs["torch fp32", beam], outputs["onnx fp32", beam]
        same = sum(a.text == b.text for a, b in zip(mine, theirs, strict=True))
        worst = max(abs(a.score - b.score) for a, b in zip(mine, theirs, strict=True)
                    if a.tokens == b.tokens)
        print(f"  {'greedy' if beam == 1 else 'beam 5'}: {same:,} / {len(lines):,} lines "
              f"identical ({100 * same / len(lines):.2f} %); largest score difference on "
              f"identical lines {worst:.2e}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(HERE / "results" / "onnx_runtime.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
