"""Speed benchmark: training throughput, decoding speed, start-up time and peak memory.

    python benchmarks/speed.py --preset multi30k-word-lstm [--rounds 3] [--train-steps 200]

Every measurement runs in its own process (so peak RSS is its own), and the phases alternate
round by round so that machine noise hits them alike; the table shows medians. Training phases
time steady-state steps after a warm-up on the same batches; decoding phases time the 1,000
sentences of Multi30k test2016 (decode only, batches of 64) with a model the harness trains
first (or --decode-model DIR). The ceiling is the rate at which this machine multiplies the
preset's matrices (fp32, measured at the preset's shapes), divided by its training FLOPs per
target token.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from multi30k import available, prepare  # noqa: E402
from presets import PRESETS, flops_per_target_token  # noqa: E402

TRAIN_PHASES = ["train-fp32", "train-bf16", "train-nofeed-fp32"]
DECODE_PHASES = ["greedy-fp32", "beam5-fp32", "greedy-bf16", "beam5-bf16", "greedy-int8",
                 "beam5-int8"]  # a "-wN" suffix decodes N batches at once (decode.workers)

# What the peers measured on this kind of machine (../shared/peers/README.md), for orientation
# only: ratios that count come from benchmarks/peers/, run alongside in one session.
PEER_RECORDED = {"train-fp32": ("OpenNMT-py 3.5.1", 1647), "greedy-fp32": ("OpenNMT-py", 292),
                 "beam5-fp32": ("OpenNMT-py", 105)}


def build_config(preset: str, data: Path, out: Path, **train):
    from rnnseq.config import Config

    raw = json.loads(json.dumps(PRESETS[preset]))
    raw["data"].update(train_src=str(data / "train.de"), train_tgt=str(data / "train.en"))
    raw["train"].update(out_dir=str(out), **train)
    return Config.from_dict(raw, f"preset {preset}")


# -- child processes -------------------------------------------------------------------------
def trainer_and_batches(preset: str, data: Path, work: Path, precision: str, **model):
    """A trainer of ``preset`` (model fields overridden by ``model``) ready to step, and its
    training batches in a fixed shuffled order."""
    import torch

    from rnnseq.data.batching import make_batches
    from rnnseq.training.trainer import Trainer

    config = build_config(preset, data, work / "scratch", precision=precision)
    for key, value in model.items():
        setattr(config.model, key, value)
    torch.set_num_threads(config.train.threads or 2)
    trainer = Trainer(config)
    trainer._prepare()
    d = trainer.train_data
    batches = make_batches([len(s) for s in d.src], [len(s) for s in d.tgt],
                           config.train.batch_size, config.train.batch_type, shuffle=True, seed=1)
    return trainer, batches


def child_train(args) -> dict:
    phase = args.phase
    precision = "bf16" if phase.endswith("bf16") else "fp32"
    model_override = {"input_feeding": False} if "nofeed" in phase else {}
    trainer, batches = trainer_and_batches(args.preset, Path(args.data), Path(args.work),
                                           precision, **model_override)
    data = trainer.train_data
    for index in batches[: args.warmup]:
        trainer._train_step(index)
    timed = batches[args.warmup : args.warmup + args.train_steps]
    tgt = src = positions = 0
    start = time.perf_counter()
    for index in timed:
        _, n = trainer._train_step(index)
        tgt += n
        src += sum(len(data.src[i]) for i in index)
        positions += len(index) * (max(len(data.tgt[i]) for i in index) + 1)
    seconds = time.perf_counter() - start
    return {"tgt_tok_s": tgt / seconds, "src_tok_s": src / seconds,
            "s_per_step": seconds / len(timed), "real_positions": tgt / positions,
            "tgt_per_step": tgt / len(timed), "src_per_tgt": src / tgt,
            "src_len": src / sum(len(i) for i in timed), "vocab": len(trainer.vocab.tgt_vocab)}


def child_decode(args) -> dict:
    import torch

    from rnnseq.inference.translator import load

    torch.set_num_threads(2)
    method, precision, *workers = args.phase.split("-")
    if precision == "int8":
        translator = load(args.model, quantize="int8")
    else:
        translator = load(args.model, precision=precision)
    sentences = (Path(args.data) / "test2016.de").read_text(encoding="utf-8").splitlines()
    beam = 1 if method == "greedy" else 5
    translator.translate(sentences[:64], beam_size=beam, batch_size=64)  # warm-up
    start = time.perf_counter()
    results = translator.translate_nbest(sentences, beam_size=beam, batch_size=64,
                                         workers=int(workers[0][1:]) if workers else 1)
    seconds = time.perf_counter() - start
    hyps = [r[0].text for r in results]
    out = Path(args.work) / f"{args.phase}.hyp"
    out.write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    tokens = sum(len(r[0].tokens) + 1 for r in results)
    return {"sent_s": len(sentences) / seconds, "tgt_tok_s": tokens / seconds,
            "seconds": seconds, "hyp": str(out)}


def child_model(args) -> dict:
    from rnnseq.training.trainer import train

    config = build_config(args.preset, Path(args.data), Path(args.model),
                          max_steps=args.decode_train_steps, valid_every=args.decode_train_steps)
    train(config)
    return {"model": str(Path(args.model) / "best")}


def child_gemm(args) -> dict:
    """fp32 GFLOP/s at the preset's matrix shapes and the resulting ceiling."""
    import torch

    torch.set_num_threads(2)
    stats = json.loads(args.stats)
    preset = PRESETS[args.preset]
    flops = flops_per_target_token(preset, stats["src_per_tgt"], stats["src_len"],
                                   stats["vocab"])
    m = preset["model"]
    b, h, e = preset["train"]["batch_size"], m["hidden_size"], m["embedding_size"]
    t = int(round(stats["tgt_per_step"] / b))
    shapes = {  # (M, K, N) of each part's main multiply
        "encoder": (b * max(int(stats["src_len"]), 1), e + h // 2, 2 * h),
        "decoder_rnn": (b, e + 2 * h, 4 * h),
        "attention": (b, h, h),
        "combine": (b, 2 * h, h),
        "output": (b * t, h, int(stats["vocab"])),  # a median of rounds may be a float
    }
    seconds = 0.0
    rates = {}
    for part, (mm, k, n) in shapes.items():
        a, w = torch.randn(mm, k), torch.randn(k, n)
        for _ in range(3):
            a @ w
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < 0.3:
            a @ w
            reps += 1
        rate = 2 * mm * k * n * reps / (time.perf_counter() - start)
        rates[part] = rate / 1e9
        seconds += 3 * flops[part] / rate
    return {"ceiling_tok_s": 1 / seconds, "gflops": rates,
            "mflop_per_tok": flops["train"] / 1e6}


def child_startup(args) -> dict:
    exe = Path(sys.executable).parent / "rnnseq"
    start = time.perf_counter()
    proc = subprocess.run([str(exe), "translate", args.model, "--beam", "5"],
                          input="ein mann fährt fahrrad .\n", capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(proc.stderr)
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the translate process
    return {"seconds": seconds, "peak_rss_mib": rss}


def run_child(args) -> None:
    kind = {"model": child_model, "gemm": child_gemm, "startup": child_startup}
    func = kind.get(args.phase) or (child_train if args.phase.startswith("train")
                                    else child_decode)
    result = func(args)
    result.setdefault("peak_rss_mib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print("RESULT " + json.dumps(result))


# -- parent -------------------------------------------------------------------------------------
def spawn(args, phase: str, **extra) -> dict:
    cmd = [sys.executable, __file__, "--child", "--phase", phase, "--preset", args.preset,
           "--data", str(args.data), "--work", str(args.work), "--model", str(args.model),
           "--train-steps", str(args.train_steps), "--warmup", str(args.warmup),
           "--decode-train-steps", str(args.decode_train_steps)]
    for key, value in extra.items():
        cmd += [f"--{key}", value]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{phase} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def bleu(hyp: str, ref: Path) -> float:
    import sacrebleu

    hyps = Path(hyp).read_text(encoding="utf-8").splitlines()
    refs = ref.read_text(encoding="utf-8").splitlines()
    return sacrebleu.corpus_bleu(hyps, [refs], tokenize="none", force=True).score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="multi30k-word-lstm", choices=sorted(PRESETS))
    parser.add_argument("--rounds", type=int, default=3)
    # Over a run's first steps oneDNN compiles kernels for new shapes: 100 untimed steps first
    # (benchmarks/README.md, "Why training is timed over 200 steps after 100 now")
    parser.add_argument("--train-steps", type=int, default=200, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=100, help="untimed steps first")
    parser.add_argument("--decode-model", help="model directory for decoding phases")
    parser.add_argument("--decode-train-steps", type=int, default=1300,
                        help="steps to train the decoding model when none is given")
    parser.add_argument("--phases", default=",".join(TRAIN_PHASES + DECODE_PHASES + ["startup"]))
    parser.add_argument("--work", default=str(HERE / "results"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--stats", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return
    if not available():
        sys.exit("Multi30k not found under ../shared/data/multi30k; nothing to benchmark")
    args.work = Path(args.work)
    args.data = prepare(args.work / "multi30k")
    phases = [p for p in args.phases.split(",") if p]
    args.model = Path(args.decode_model) if args.decode_model else args.work / "decode-model"
    if any(p not in TRAIN_PHASES for p in phases) and not args.decode_model:
        if not (args.model / "best").exists():
            print(f"training the decoding model ({args.decode_train_steps} steps)...",
                  flush=True)
            spawn(args, "model")
        args.model = args.model / "best"
    results: dict[str, list[dict]] = {p: [] for p in phases}
    for round_ in range(args.rounds):
        for phase in phases:
            results[phase].append(spawn(args, phase))
            print(f"round {round_ + 1}: {phase} done", file=sys.stderr, flush=True)
    report(args, phases, results)


def report(args, phases, results) -> None:
    import torch

    med = {p: {k: statistics.median(r[k] for r in results[p])
               for k, v in results[p][0].items() if isinstance(v, (int, float))}
           for p in phases}
    print(f"\npreset {args.preset}; torch {torch.__version__}; {os.cpu_count()} CPUs, 2 threads; "
          f"medians of {args.rounds} alternating rounds\n")
    print("| phase | throughput | peak RSS | notes |\n| --- | ---: | ---: | --- |")
    ceiling = None
    if "train-fp32" in med:
        stats = {k: med["train-fp32"][k] for k in
                 ("src_per_tgt", "src_len", "vocab", "tgt_per_step")}
        gemm = spawn(args, "gemm", stats=json.dumps(stats))
        ceiling = gemm["ceiling_tok_s"]
    ref = args.data / "test2016.en"
    for p in phases:
        r = med[p]
        if p.startswith("train"):
            note = (f"{r['src_tok_s']:,.0f} src tok/s, {r['s_per_step']:.3f} s/step, "
                    f"{100 * r['real_positions']:.0f} % real decoder positions")
            if ceiling and "nofeed" not in p:
                note += f", {100 * r['tgt_tok_s'] / ceiling:.0f} % of the fp32 ceiling"
            value = f"{r['tgt_tok_s']:,.0f} tgt tok/s"
        elif p == "startup":
            value, note = f"{r['seconds']:.2f} s", "one-sentence `rnnseq translate`, wall"
        else:
            value = f"{r['sent_s']:,.0f} sent/s"
            note = (f"{r['tgt_tok_s']:,.0f} tgt tok/s, BLEU {bleu(results[p][-1]['hyp'], ref):.2f}"
                    " (tok none)")
        if p in PEER_RECORDED:
            name, number = PEER_RECORDED[p]
            unit = r.get("tgt_tok_s") if p.startswith("train") else r.get("sent_s")
            note += f"; {unit / number:.2f}x {name}'s recorded {number:,}"
        print(f"| {p} | {value} | {r['peak_rss_mib']:,.0f} MiB | {note} |")
    if ceiling:
        print(f"\nfp32 ceiling: {ceiling:,.0f} target tok/s ({gemm['mflop_per_tok']:.1f} MFLOP "
              "per target token for training; GFLOP/s at the preset's shapes: "
              + ", ".join(f"{k} {v:.0f}" for k, v in gemm["gflops"].items()) + ")")


if __name__ == "__main__":
    main()
