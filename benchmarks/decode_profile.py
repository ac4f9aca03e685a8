"""Where decoding time goes: operator time by kind, and the matrix multiplies' rate against
the rate this machine reaches on the same shapes alone.

    .venv/bin/python benchmarks/decode_profile.py [--model DIR] [--src FILE] [--precision fp32]

Decodes the file (greedy and beam 5, length-sorted batches of 64) under ``torch.profiler`` and
prints, per decoding, the share of wall time in each kind of operator (matrix multiplies, the
encoder's fused RNN, softmax, top-k, row selection, pointwise, the rest: Python and dispatch)
and the multiplies' achieved GFLOP/s. The ceiling is the same multiplies timed alone, in a
loop: if decoding's multiplies already run near it, only fewer FLOPs make decoding faster.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
WORK = HERE / "results" / "peers" / "work"
KINDS = {  # profiler operator name -> kind
    "aten::addmm": "matrix multiply", "aten::mm": "matrix multiply",
    "aten::bmm": "matrix multiply", "aten::linear": None, "aten::matmul": None,
    "mkl::_mkl_linear": "matrix multiply",  # fp32 decoding's packed matrices
    "aten::lstm": "encoder RNN (fused)", "aten::gru": "encoder RNN (fused)",
    "aten::rnn_tanh": "encoder RNN (fused)",
    "aten::_log_softmax": "softmax", "aten::_softmax": "softmax",
    "aten::topk": "top-k", "aten::index_select": "row selection", "aten::index": "row selection",
    "aten::cat": "concatenation", "aten::stack": "concatenation",
}
POINTWISE = ("sigmoid", "tanh", "mul", "add", "sub", "div", "masked_fill", "where", "exp", "log",
             "fill_", "copy_", "clamp", "eq", "ge", "lt", "ne", "gt")


def profile(translator, lines: list[str], beam: int) -> tuple[float, dict, float, float]:
    """Wall seconds, seconds per operator kind, multiply GFLOP and multiply seconds."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    translator.translate(lines[:64], beam_size=beam)
    with torch_profile(activities=[ProfilerActivity.CPU], with_flops=True,
                       record_shapes=True) as prof:
        start = time.perf_counter()
        translator.translate(lines, beam_size=beam, batch_size=64)
        wall = time.perf_counter() - start
    kinds: dict = defaultdict(float)
    flops = gemm_seconds = 0.0
    for event in prof.key_averages(group_by_input_shape=True):
        name = event.key
        kind = KINDS.get(name, "")
        if kind is None:  # a wrapper: its multiply is counted as aten::addmm / mm
            continue
        if not kind and name.startswith("aten::") and any(p in name for p in POINTWISE):
            kind = "pointwise"
        if not kind:
            continue
        seconds = event.self_cpu_time_total / 1e6
        kinds[kind] += seconds
        if kind == "matrix multiply":
            if name == "mkl::_mkl_linear":  # x (M, K), packed, W (N, K): the profiler has
                (m, k), n = event.input_shapes[0], event.input_shapes[2][0]  # no FLOPs for it
                flops += 2 * m * k * n * event.count
            else:
                flops += event.flops or 0
            gemm_seconds += seconds
    return wall, kinds, flops / 1e9, gemm_seconds


def ceiling(decoder, rows: int, rounds: int = 20) -> dict:
    """GFLOP/s of decoding's largest multiplies timed alone (``rows`` hypotheses): the first
    layer's step matrix over ``[input; h]`` and the output layer, plain or packed for MKL
    (fp32 decoding's form), whichever is faster."""
    from rnnseq.inference.packed import MklMatrix, mkl_packing_available

    step = decoder.inference_stepper().weights[0][0]  # (gates, input + hidden)
    shapes = {"recurrent step, layer 1": (rows, step.shape[1], step.shape[0]),
              "output layer": (rows, decoder.out.in_features, decoder.out.out_features)}
    out = {}
    for label, (m, k, n) in shapes.items():
        a, b, bias = torch.randn(m, k), torch.randn(k, n), torch.randn(n)
        forms = [lambda: torch.addmm(bias, a, b)]  # noqa: B023 - used within the iteration
        if mkl_packing_available():
            packed = MklMatrix(b.t().contiguous(), bias)
            forms.append(lambda: packed(a))  # noqa: B023
        best = float("inf")
        for form in forms:
            form()
            times = []
            for _ in range(rounds):
                start = time.perf_counter()
                form()
                times.append(time.perf_counter() - start)
            best = min(best, statistics.median(times))
        out[label] = 2 * m * k * n / best / 1e9
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=WORK / "rnnseq-model" / "best")
    parser.add_argument("--src", type=Path, default=WORK / "data" / "test2016.de")
    parser.add_argument("--precision", default="fp32")
    args = parser.parse_args()
    from rnnseq.inference.translator import load

    translator = load(str(args.model), precision=args.precision)
    lines = args.src.read_text(encoding="utf-8").splitlines()
    model = translator.backend.model
    translator.translate(lines[:64], beam_size=5)
    print(f"{len(lines):,} sentences, {args.model}, {args.precision}, "
          f"{torch.get_num_threads()} threads\n")
    alone = ceiling(model.decoder, 320)
    rate = min(alone.values())
    rows = []
    for beam in (1, 5):
        plain = []
        for _ in range(3):
            start = time.perf_counter()
            translator.translate(lines, beam_size=beam, batch_size=64)
            plain.append(time.perf_counter() - start)
        wall, kinds, gflop, gemm_s = profile(translator, lines, beam)
        rows.append((beam, wall, kinds, gflop, gemm_s, statistics.median(plain)))
    names = ["matrix multiply", "encoder RNN (fused)", "softmax", "top-k", "row selection",
             "concatenation", "pointwise"]
    print("| decoding | wall (median of 3) | multiplies | their time at the ceiling | share of "
          "the wall | their rate in decoding (profiled) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for beam, _, _, gflop, gemm_s, plain in rows:
        print(f"| {'greedy' if beam == 1 else 'beam 5'} | {plain:.2f} s | {gflop:,.0f} GFLOP | "
              f"{gflop / rate:.2f} s | {100 * gflop / rate / plain:.0f} % | "
              f"{gflop / gemm_s:.0f} GFLOP/s |")
    print("\nceiling: the same multiplies alone, 320 rows: " + ", ".join(
        f"{label} {r:.0f} GFLOP/s" for label, r in alone.items()))
    print("\nprofiled run, share of its wall time by operator (the profiler's overhead inflates "
          "small operators):\n")
    print("| decoding | wall (profiled) | " + " | ".join(names) + " | the rest |")
    print("| --- | ---: | " + " | ".join("---:" for _ in names) + " | ---: |")
    for beam, wall, kinds, *_ in rows:
        shares = [100 * kinds.get(n, 0.0) / wall for n in names]
        print(f"| {'greedy' if beam == 1 else 'beam 5'} | {wall:.2f} s | "
              + " | ".join(f"{s:.0f} %" for s in shares) + f" | {100 - sum(shares):.0f} % |")


if __name__ == "__main__":
    main()
