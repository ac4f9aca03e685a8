"""Where training time goes: operator time by kind, and what the step would cost if it were
only its matrix multiplies, each as fast as this machine runs it alone.

    .venv/bin/python benchmarks/train_profile.py [--precision fp32] [--steps 20]
        [--peer-tok-s 1935]

Trains the preset (``presets.py``) on Multi30k for a few warm-up steps, times ``--steps``
steps, then profiles the same steps under ``torch.profiler`` with their shapes and prints:

* the share of the profiled wall time by operator kind (matrix multiplies, the encoder's fused
  RNN, the optimizer, dropout's random draws, softmax, concatenation, pointwise, the rest:
  autograd bookkeeping, Python and dispatch);
* the bound: every matrix multiply of those steps (``mm``/``addmm``/``bmm`` with their
  shapes) timed alone, in a loop, plus the encoder's fused RNN as profiled. If a step were
  nothing but those, training would run at ``bound`` target tokens/s; ``--peer-tok-s``
  (OpenNMT-py's throughput from ``peers/compare.py`` on the same machine) turns both into
  ratios, so a target such as "1.25x OpenNMT-py" can be held against what the multiplies
  alone allow.

It needs ``../shared/data/multi30k`` (as ``speed.py``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from multi30k import available, prepare  # noqa: E402
from speed import trainer_and_batches  # noqa: E402

GEMMS = ("aten::mm", "aten::addmm", "aten::bmm")
KINDS = {
    "aten::mkldnn_rnn_layer": "encoder RNN (fused)",
    "aten::mkldnn_rnn_layer_backward": "encoder RNN (fused)",
    "aten::_fused_adam_": "optimizer", "aten::_foreach_add_": "optimizer",
    "aten::bernoulli_": "dropout draws", "aten::random_": "dropout draws",
    "aten::_log_softmax": "softmax", "aten::_log_softmax_backward_data": "softmax",
    "aten::_softmax": "softmax", "aten::_softmax_backward_data": "softmax",
    "aten::cat": "concatenation", "aten::stack": "concatenation",
}
POINTWISE = ("sigmoid", "tanh", "mul", "add", "sub", "div", "masked_fill", "where", "exp",
             "log", "fill_", "copy_", "clamp", "eq", "ge", "lt", "ne", "gt", "zero_", "norm",
             "sum", "_to_copy")
NAMES = ["matrix multiply", "encoder RNN (fused)", "optimizer", "dropout draws", "softmax",
         "concatenation", "pointwise"]


def alone(op: str, shapes: list, dtype: torch.dtype, rounds: int = 5) -> float:
    """Median seconds of one multiply of these input shapes, timed alone."""
    if op == "aten::addmm":
        bias, a, b = (torch.randn(s, dtype=dtype) for s in shapes[:3])
        run = lambda: torch.addmm(bias, a, b)  # noqa: E731
    else:
        a, b = (torch.randn(s, dtype=dtype) for s in shapes[:2])
        run = (lambda: torch.bmm(a, b)) if op == "aten::bmm" else (lambda: torch.mm(a, b))
    run()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--peer-tok-s", type=float,
                        help="OpenNMT-py's training tok/s on this machine (peers/compare.py)")
    args = parser.parse_args()
    if not available():
        sys.exit("needs ../shared/data/multi30k")
    from torch.profiler import profile

    data = prepare(HERE / "results" / "multi30k")
    trainer, batches = trainer_and_batches("multi30k-word-lstm", data, HERE / "results",
                                           args.precision)
    for index in batches[: args.warmup]:
        trainer._train_step(index)
    timed = batches[args.warmup : args.warmup + args.steps]
    start = time.perf_counter()
    tokens = sum(trainer._train_step(index)[1] for index in timed)
    plain = time.perf_counter() - start
    with profile(record_shapes=True) as prof:
        start = time.perf_counter()
        for index in timed:
            trainer._train_step(index)
        wall = time.perf_counter() - start

    kinds: dict = defaultdict(float)
    calls: Counter = Counter()
    for event in prof.events():
        name = event.name
        if name in GEMMS:
            kind = "matrix multiply"
            calls[(name, tuple(tuple(s) for s in event.input_shapes if s))] += 1
        else:
            kind = KINDS.get(name, "")
            if not kind and name.startswith("aten::") and any(p in name for p in POINTWISE):
                kind = "pointwise"
        if kind:
            kinds[kind] += event.self_cpu_time_total / 1e6
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    gemm_alone = sum(n * alone(op, [list(s) for s in shapes], dtype)
                     for (op, shapes), n in calls.items())
    fused_rnn = kinds["encoder RNN (fused)"]
    tok_s, bound = tokens / plain, tokens / (gemm_alone + fused_rnn)

    print(f"{args.steps} steps of the preset, {args.precision}, "
          f"{torch.get_num_threads()} threads, {tokens:,} target tokens\n")
    print("| profiled wall | " + " | ".join(NAMES) + " | the rest |")
    print("| ---: | " + " | ".join("---:" for _ in NAMES) + " | ---: |")
    shares = [100 * kinds.get(n, 0.0) / wall for n in NAMES]
    print(f"| {wall:.2f} s | " + " | ".join(f"{s:.0f} %" for s in shares)
          + f" | {100 - sum(shares):.0f} % |")
    print(f"\n{sum(calls.values()):,} multiplies of {len(calls)} shapes: "
          f"{kinds['matrix multiply']:.2f} s profiled, {gemm_alone:.2f} s timed alone; "
          f"encoder's fused RNN {fused_rnn:.2f} s\n")
    print("| | tgt tok/s | share of the step in multiplies and fused RNN |"
          + (" vs OpenNMT-py |" if args.peer_tok_s else ""))
    print("| --- | ---: | ---: |" + (" ---: |" if args.peer_tok_s else ""))
    rows = [("training now (unprofiled)", tok_s, (gemm_alone + fused_rnn) / plain),
            ("bound: multiplies and fused RNN only", bound, 1.0)]
    for label, rate, share in rows:
        peer = f" {rate / args.peer_tok_s:.2f}x |" if args.peer_tok_s else ""
        print(f"| {label} | {rate:,.0f} | {100 * share:.0f} % |{peer}")


if __name__ == "__main__":
    main()
