"""rnnseq beside OpenNMT-py 3.5.1 and JoeyNMT 2.3.0 on one preset, in one run, with ratios.

    bash benchmarks/peers/setup.sh                       # once: the peers' virtualenvs
    .venv/bin/python benchmarks/peers/compare.py --rounds 3
    .venv/bin/python benchmarks/peers/compare.py --dry-run   # the schedule, nothing run

What it measures, for each system, on the preset `multi30k-word-lstm` (the configs in this folder
are the ones the peers were measured with): training throughput (target tokens/s over steady-state
report windows, after warm-up), greedy and beam-5 decoding of Multi30k test2016 (sentences/s,
batches of 64), a one-sentence translate's wall time, and the peak RSS of each run. Decoding uses a
model each system trains first for `--decode-train-steps` steps (1,300 by default, as recorded
in ../shared/peers/). Runs alternate system by system within each round, so machine noise hits
all alike; the table shows medians and rnnseq's ratio to each peer.

How each number is taken:
* rnnseq: `benchmarks/speed.py` child phases (the same code as its own table).
* OpenNMT-py: `onmt_train` report windows (`tgt tok/s`), `onmt_translate -report_time`
  (its "Average translation time" per sentence).
* JoeyNMT: `joeynmt train` log windows ("Tokens per Sec", target tokens); decoding as the
  wall time of `joeynmt translate` on the test set minus that of a one-sentence input.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
sys.path.insert(0, str(BENCH))

import speed  # noqa: E402
from multi30k import available, prepare  # noqa: E402

SYSTEMS = ("rnnseq", "onmt", "joey")
NAMES = {"rnnseq": "rnnseq", "onmt": "OpenNMT-py", "joey": "JoeyNMT"}
MEASURES = ("train", "greedy", "beam5", "startup")
ONE_SENTENCE = "ein mann fährt fahrrad .\n"
# OpenNMT-py loads its own checkpoints, which are pickles, under torch >= 2.6 only with this
ONMT_ENV = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}


# -- configs -------------------------------------------------------------------------------------
def onmt_config(work: Path, steps: int, report_every: int, save_every: int, run: str) -> dict:
    """The recorded OpenNMT-py config with this work folder's paths and the run's lengths."""
    cfg = yaml.safe_load((HERE / "onmt.yaml").read_text(encoding="utf-8"))
    data = work / "data"
    cfg["data"] = {"corpus_1": {"path_src": str(data / "train.de"),
                                "path_tgt": str(data / "train.en")},
                   "valid": {"path_src": str(data / "val.de"), "path_tgt": str(data / "val.en")}}
    cfg.update(save_data=str(work / "onmt" / "run"), src_vocab=str(work / "onmt" / "vocab.src"),
               tgt_vocab=str(work / "onmt" / "vocab.tgt"), train_steps=steps,
               report_every=report_every, save_checkpoint_steps=save_every,
               save_model=str(work / "onmt" / run / "model"), num_workers=0)
    return cfg


def joey_config(work: Path, steps: int, logging_freq: int, run: str,
                beam: int = 5, load_model: str | None = None) -> dict:
    """The recorded JoeyNMT config with this work folder's paths and the run's lengths."""
    cfg = yaml.safe_load((HERE / "joey.yaml").read_text(encoding="utf-8"))
    data = work / "data"
    cfg["model_dir"] = str(work / "joey" / run)
    cfg["data"].update(train=str(data / "train"), dev=str(data / "val"),
                       test=str(data / "test2016"))
    cfg["training"].update(updates=steps, logging_freq=logging_freq)
    cfg["testing"].update(beam_size=beam, load_model=load_model or
                          str(work / "joey" / run / "latest.ckpt"))
    return cfg


# -- log parsing ---------------------------------------------------------------------------------
_ONMT_WINDOW = re.compile(r"Step\s+(\d+)/\s*\d+;.*?([\d.]+)/\s*([\d.]+) tok/s")
_ONMT_TIME = re.compile(r"Average translation time \(ms\):\s*([\d.]+)")
_JOEY_WINDOW = re.compile(r"Step:\s+(\d+),.*?Tokens per Sec:\s+([\d.]+)")


def onmt_windows(log: str) -> list[tuple[int, float]]:
    """(step, target tokens/s) of every OpenNMT-py training report line."""
    return [(int(m[1]), float(m[3])) for m in _ONMT_WINDOW.finditer(log)]


def joey_windows(log: str) -> list[tuple[int, float]]:
    """(step, target tokens/s) of every JoeyNMT training log line."""
    return [(int(m[1]), float(m[2])) for m in _JOEY_WINDOW.finditer(log)]


def onmt_sentences_per_second(log: str) -> float:
    """From ``onmt_translate -report_time``'s average time per sentence (its finest figure)."""
    found = _ONMT_TIME.findall(log)
    if not found:
        raise RuntimeError("onmt_translate printed no 'Average translation time'")
    return 1000.0 / float(found[-1])


def steady_rate(windows: list[tuple[int, float]], warmup: int) -> float:
    """Median rate of the report windows that start after ``warmup`` steps."""
    if len(windows) < 2:
        raise RuntimeError(f"too few training report windows to time ({len(windows)})")
    steps = [s for s, _ in windows]
    width = steps[1] - steps[0]
    rates = [r for s, r in windows if s - width >= warmup]
    if not rates:
        raise RuntimeError(f"no report window after the {warmup} warm-up steps")
    return statistics.median(rates)


# -- running one command, measured ---------------------------------------------------------------
@dataclass
class Measured:
    seconds: float
    log: str
    peak_rss_mib: float
    extra: dict = field(default_factory=dict)


def run_measured(cmd: list[str], log_path: Path, env: dict | None = None,
                 stdin: Path | None = None, stdout: Path | None = None) -> Measured:
    """Run ``cmd`` to completion; wall seconds, its output and its own peak RSS (wait4)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", **(env or {})}
    with open(log_path, "w", encoding="utf-8") as log, \
            open(stdin or os.devnull, "rb") as inp, \
            open(stdout, "wb") if stdout else open(log_path.with_suffix(".out"), "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=inp, stdout=out, stderr=log, env=full_env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    text = log_path.read_text(encoding="utf-8", errors="replace")
    if not stdout:
        text += log_path.with_suffix(".out").read_text(encoding="utf-8", errors="replace")
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed ({proc.returncode}); "
                           f"see {log_path}:\n{text[-2000:]}")
    return Measured(seconds, text, usage.ru_maxrss / 1024)


# -- the systems ---------------------------------------------------------------------------------
class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.work)
        self.data = self.work / "data"
        self.venvs = Path(args.peers)

    def bin(self, system: str, name: str) -> str:
        return str(self.venvs / f"venv-{system}" / "bin" / name)

    def write_yaml(self, name: str, cfg: dict) -> Path:
        path = self.work / "configs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True),
                        encoding="utf-8")
        return path

    # preparation: data, vocabularies, decoding models
    def prepare(self, systems: list[str], decode_systems: list[str]) -> None:
        prepare(self.data)
        (self.work / "one.de").write_text(ONE_SENTENCE, encoding="utf-8")
        if "onmt" in systems and not (self.work / "onmt" / "vocab.tgt").exists():
            cfg = self.write_yaml("onmt-vocab.yaml", onmt_config(self.work, 1, 1, 1, "vocab"))
            run_measured([self.bin("onmt", "onmt_build_vocab"), "-config", str(cfg),
                          "-n_sample", "-1"], self.work / "logs" / "onmt-vocab.log")
            for side in ("src", "tgt"):  # a double space yields an empty token: drop it
                path = self.work / "onmt" / f"vocab.{side}"
                lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
                path.write_text("".join(x for x in lines if not x.startswith("\t")),
                                encoding="utf-8")
        for system in decode_systems:
            if not self.decode_model(system).exists():
                print(f"training {NAMES[system]}'s decoding model "
                      f"({self.args.decode_train_steps} steps)...", flush=True)
                self.train_decode_model(system)

    def decode_model(self, system: str) -> Path:
        steps = self.args.decode_train_steps
        return {"rnnseq": self.work / "rnnseq-model" / "best",
                "onmt": self.work / "onmt" / "decode" / f"model_step_{steps}.pt",
                "joey": self.work / "joey" / "decode" / f"{steps}.ckpt"}[system]

    def train_decode_model(self, system: str) -> None:
        steps = self.args.decode_train_steps
        log = self.work / "logs" / f"{system}-decode-model.log"
        if system == "rnnseq":
            self.speed("model", model=str(self.work / "rnnseq-model"))
        elif system == "onmt":
            cfg = self.write_yaml("onmt-decode.yaml",
                                  onmt_config(self.work, steps, 100, steps, "decode"))
            run_measured([self.bin("onmt", "onmt_train"), "-config", str(cfg)], log)
        else:
            cfg = self.write_yaml("joey-decode.yaml", joey_config(self.work, steps, 100, "decode"))
            run_measured([self.bin("joey", "python"), "-m", "joeynmt", "train", str(cfg),
                              "--skip-test"], log)

    def speed(self, phase: str, **extra) -> dict:
        """One child phase of benchmarks/speed.py (the same measurement as its own table)."""
        a = self.args
        work = self.work / "rnnseq"
        work.mkdir(parents=True, exist_ok=True)
        child = argparse.Namespace(
            preset="multi30k-word-lstm", data=self.data, work=work,
            model=extra.pop("model", self.decode_model("rnnseq")), train_steps=a.train_steps,
            warmup=a.warmup, decode_train_steps=a.decode_train_steps)
        return speed.spawn(child, phase)

    # one measurement
    def measure(self, system: str, measure: str, precision: str = "fp32") -> dict:
        if system == "rnnseq":
            return self.measure_rnnseq(measure, precision)
        return getattr(self, f"measure_{system}")(measure)

    def measure_rnnseq(self, measure: str, precision: str) -> dict:
        if measure == "train":
            r = self.speed(f"train-{precision}")
            return {"value": r["tgt_tok_s"], "rss": r["peak_rss_mib"]}
        if measure == "startup":
            r = self.speed("startup")
            return {"value": r["seconds"], "rss": r["peak_rss_mib"]}
        r = self.speed(f"{measure}-{precision}")
        return {"value": r["sent_s"], "rss": r["peak_rss_mib"], "hyp": r["hyp"]}

    def measure_onmt(self, measure: str) -> dict:
        a, logs = self.args, self.work / "logs"
        env = ONMT_ENV
        if measure == "train":
            cfg = self.write_yaml("onmt-train.yaml", onmt_config(
                self.work, a.warmup + a.train_steps, a.report_every, 10 ** 6, "speed"))
            m = run_measured([self.bin("onmt", "onmt_train"), "-config", str(cfg)],
                             logs / "onmt-train.log", env)
            return {"value": steady_rate(onmt_windows(m.log), a.warmup), "rss": m.peak_rss_mib}
        beam = 5 if measure == "beam5" else 1
        src = self.work / ("one.de" if measure == "startup" else "data/test2016.de")
        hyp = self.work / f"onmt-{measure}.hyp"
        m = run_measured([self.bin("onmt", "onmt_translate"), "-model",
                          str(self.decode_model("onmt")), "-src", str(src), "-output", str(hyp),
                          "-beam_size", str(beam), "-batch_size", "64", "-batch_type", "sents",
                          "-gpu", "-1", "-report_time"], logs / f"onmt-{measure}.log", env)
        if measure == "startup":
            return {"value": m.seconds, "rss": m.peak_rss_mib}
        return {"value": onmt_sentences_per_second(m.log), "rss": m.peak_rss_mib,
                "hyp": str(hyp)}

    def measure_joey(self, measure: str) -> dict:
        a, logs = self.args, self.work / "logs"
        if measure == "train":
            cfg = self.write_yaml("joey-train.yaml", joey_config(
                self.work, a.warmup + a.train_steps, a.report_every, "speed"))
            m = run_measured([self.bin("joey", "python"), "-m", "joeynmt", "train", str(cfg),
                              "--skip-test"],
                             logs / "joey-train.log")
            return {"value": steady_rate(joey_windows(m.log), a.warmup), "rss": m.peak_rss_mib}
        beam = 5 if measure == "beam5" else 1
        cfg = self.write_yaml(f"joey-{measure}.yaml", joey_config(
            self.work, a.decode_train_steps, 100, "decode", beam=beam,
            load_model=str(self.decode_model("joey"))))
        cmd = [self.bin("joey", "python"), "-m", "joeynmt", "translate", str(cfg)]
        one = run_measured(cmd, logs / f"joey-{measure}-one.log", stdin=self.work / "one.de",
                           stdout=self.work / f"joey-{measure}-one.hyp")
        if measure == "startup":
            return {"value": one.seconds, "rss": one.peak_rss_mib}
        src, hyp = self.data / "test2016.de", self.work / f"joey-{measure}.hyp"
        m = run_measured(cmd, logs / f"joey-{measure}.log", stdin=src, stdout=hyp)
        n = len(src.read_text(encoding="utf-8").splitlines())
        return {"value": n / max(m.seconds - one.seconds, 1e-6), "rss": m.peak_rss_mib,
                "hyp": str(hyp)}


# -- the schedule and the table ------------------------------------------------------------------
def schedule(systems: list[str], decode_systems: list[str], measures: list[str],
             rounds: int, extra_rnnseq: list[str]) -> list[tuple[int, str, str, str]]:
    """(round, system, measure, precision) in the order they run: systems alternate within
    each measure, measures within each round."""
    runs = []
    for r in range(rounds):
        for measure in measures:
            for system in systems:
                if measure in ("greedy", "beam5", "startup") and system not in decode_systems:
                    continue
                runs.append((r, system, measure, "fp32"))
            for extra in extra_rnnseq:
                m, precision = extra.split("-", 1)
                if m == measure:
                    runs.append((r, "rnnseq", m, precision))
    return runs


def bleu(hyp: str, ref: Path) -> float:
    import sacrebleu

    hyps = Path(hyp).read_text(encoding="utf-8").splitlines()
    refs = ref.read_text(encoding="utf-8").splitlines()
    return sacrebleu.corpus_bleu(hyps, [refs], tokenize="none", force=True).score


UNITS = {"train": "tgt tok/s", "greedy": "sent/s", "beam5": "sent/s", "startup": "s"}


def table(results: dict, systems: list[str], ref: Path | None = None) -> str:
    """Markdown table: one row per (measure, precision), medians, and rnnseq's ratios (for
    start-up, the peer's time over ours, so that above 1 means rnnseq is faster)."""
    peers = [s for s in systems if s != "rnnseq"]
    head = ["measure"] + [NAMES[s] for s in systems] + [f"rnnseq / {NAMES[p]}" for p in peers]
    out = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for (measure, precision), by_system in results.items():
        med = {s: statistics.median(r["value"] for r in runs) for s, runs in by_system.items()}
        variant = precision.replace("-w", ", workers ")  # fp32-w2: 2 batches at once
        label = f"{measure} ({UNITS[measure]})" + (f", rnnseq {variant}"
                                                   if precision != "fp32" else "")
        cells = [label]
        for s in systems:
            if s not in med:
                cells.append("–")
                continue
            runs = by_system[s]
            text = f"{med[s]:,.2f}" if measure == "startup" else f"{med[s]:,.0f}"
            rss = statistics.median(r["rss"] for r in runs)
            text += f" ({rss:,.0f} MiB"
            if ref is not None and runs[-1].get("hyp"):
                text += f", BLEU {bleu(runs[-1]['hyp'], ref):.2f}"
            cells.append(text + ")")
        for p in peers:
            fp32_peer = results.get((measure, "fp32"), {}).get(p)
            if "rnnseq" not in med or not fp32_peer:
                cells.append("–")
                continue
            peer = statistics.median(r["value"] for r in fp32_peer)
            ratio = peer / med["rnnseq"] if measure == "startup" else med["rnnseq"] / peer
            cells.append(f"{ratio:.2f}×")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--systems", default="rnnseq,onmt,joey")
    parser.add_argument("--decode-systems", default="rnnseq,onmt,joey",
                        help="systems whose decoding and start-up are measured (each trains a "
                             "decoding model first)")
    parser.add_argument("--measures", default=",".join(MEASURES))
    parser.add_argument("--rnnseq-extra", default="train-bf16,beam5-bf16,beam5-int8",
                        help="rnnseq-only rows, MEASURE-PRECISION, compared with the peers' fp32")
    # OpenNMT-py (and rnnseq, less) run slower over their first steps, while oneDNN compiles
    # kernels for new shapes: 10 + 40 steps measured OpenNMT-py at 1,814 tok/s, 100 + 200 at
    # 2,269 (benchmarks/README.md, "Latest side-by-side table")
    parser.add_argument("--train-steps", type=int, default=200, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=100, help="untimed training steps first")
    parser.add_argument("--report-every", type=int, default=50,
                        help="the peers' training log interval (their timing windows)")
    parser.add_argument("--decode-train-steps", type=int, default=1300)
    parser.add_argument("--work", default=str(BENCH / "results" / "peers" / "work"))
    parser.add_argument("--peers", default=str(BENCH / "results" / "peers"),
                        help="folder holding venv-onmt and venv-joey (setup.sh)")
    parser.add_argument("--dry-run", action="store_true", help="print the schedule and stop")
    args = parser.parse_args()
    if args.warmup % args.report_every or args.train_steps % args.report_every:
        parser.error("--warmup and --train-steps must be multiples of --report-every")
    systems = [s for s in args.systems.split(",") if s]
    decode_systems = [s for s in args.decode_systems.split(",") if s in systems]
    measures = [m for m in args.measures.split(",") if m]
    for name in systems:
        if name not in SYSTEMS:
            parser.error(f"--systems: unknown system {name!r}; choose from {', '.join(SYSTEMS)}")
    for name in measures:
        if name not in MEASURES:
            parser.error(f"--measures: unknown {name!r}; choose from {', '.join(MEASURES)}")
    extra = [e for e in args.rnnseq_extra.split(",") if e]
    for e in extra:
        m, _, precision = e.partition("-")
        precision, _, workers = precision.partition("-")
        if m not in MEASURES or precision not in ("fp32", "bf16", "int8") or \
                (m == "train" and precision == "int8") or \
                (workers and (m not in ("greedy", "beam5") or not re.fullmatch(r"w\d+", workers))):
            parser.error(f"--rnnseq-extra: {e!r} is not MEASURE-PRECISION[-wWORKERS] "
                         "(e.g. train-bf16, beam5-int8, greedy-fp32-w2)")
    runs = schedule(systems, decode_systems, measures, args.rounds, extra)
    if args.dry_run:
        for r, system, measure, precision in runs:
            print(f"round {r + 1}: {NAMES[system]} {measure} {precision}")
        return
    if not available():
        sys.exit("Multi30k not found under ../shared/data/multi30k; nothing to compare")
    for peer in (s for s in systems if s != "rnnseq"):
        if not (Path(args.peers) / f"venv-{peer}" / ".installed").exists():
            sys.exit(f"{NAMES[peer]} is not set up in {args.peers}: run "
                     "bash benchmarks/peers/setup.sh (or leave it out with --systems)")
    bench = Bench(args)
    bench.prepare(systems, decode_systems)
    results: dict = {}
    for r, system, measure, precision in runs:
        result = bench.measure(system, measure, precision)
        results.setdefault((measure, precision), {}).setdefault(system, []).append(result)
        print(f"round {r + 1}: {NAMES[system]} {measure} {precision}: {result['value']:,.2f}",
              file=sys.stderr, flush=True)
    import torch

    print(f"\npreset multi30k-word-lstm; torch {torch.__version__}; {os.cpu_count()} CPUs, "
          f"2 threads; medians of {args.rounds} alternating rounds; decoding models trained "
          f"{args.decode_train_steps} steps; BLEU: sacrebleu -tok none on test2016\n")
    print(table(results, systems, bench.data / "test2016.en"))


if __name__ == "__main__":
    main()
