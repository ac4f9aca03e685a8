"""Load on `rnnseq serve`, and on OpenNMT-py's `onmt_server` beside it, in one run.

    .venv/bin/python benchmarks/serve_load.py                       # N = 1, 8, 32, 64
    .venv/bin/python benchmarks/serve_load.py --systems rnnseq --soak 600

N concurrent clients (async httpx, in this process) each send single-sentence requests, greedy,
taken in turn from Multi30k test2016 (the peers' tokenized text), until the whole test set
(`--sentences`) has been sent once per N. For each system and N, a fresh server: throughput
(sentences/s over the load), p50/p95/p99 latency, errors (any answer but 200, or a failed
connection) and the server's peak RSS (VmHWM). The reference is `rnnseq translate`'s batch
throughput on the same sentences (benchmarks/speed.py's greedy-fp32 phase: batches of 64,
decode only), measured in the same run; served outputs are checked against its outputs.

Both systems serve the preset `multi30k-word-lstm` model they train for
benchmarks/peers/compare.py (`--decode-train-steps`, shared work folder, trained when missing);
OpenNMT-py needs `bash benchmarks/peers/setup.sh`. `--soak SECONDS` then keeps 64 clients on a
fresh rnnseq server for that long and prints its RSS minute by minute and the growth after the
first minute.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "peers"))

import compare  # noqa: E402
from multi30k import available  # noqa: E402

NAMES = {"rnnseq": "rnnseq serve", "onmt": "OpenNMT-py onmt_server"}
ONMT_ID = 100


@dataclass
class Load:
    sentences: int
    seconds: float
    latencies: list[float]
    errors: int
    outputs: dict[int, str] = field(default_factory=dict)  # sentence index -> served text

    @property
    def rate(self) -> float:
        """Answered sentences per second."""
        return (self.sentences - self.errors) / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


# -- servers -------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server subprocess on a free loopback port; ``post(http, line)`` sends one sentence."""

    def __init__(self, system: str, bench: compare.Bench, log: Path, max_wait_ms: float) -> None:
        self.system, self.port = system, free_port()
        env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"}
        if system == "rnnseq":
            cmd = [sys.executable, "-m", "rnnseq", "serve", f"m30k={bench.decode_model(system)}",
                   "--port", str(self.port), "--max-wait-ms", str(max_wait_ms)]
            self.ready_path = "/ready"
        else:
            model = bench.decode_model(system)
            conf = bench.work / "configs" / "onmt-server.json"
            conf.write_text(json.dumps({"models_root": str(model.parent), "models": [
                {"id": ONMT_ID, "model": model.name, "timeout": -1, "load": True,
                 "opt": {"gpu": -1, "beam_size": 1, "batch_size": 64}}]}), encoding="utf-8")
            cmd = [bench.bin("onmt", "onmt_server"), "--ip", "127.0.0.1", "--port",
                   str(self.port), "--model_config", str(conf)]
            env.update(compare.ONMT_ENV)
            self.ready_path = "/translator/health"
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout: float = 300) -> None:
        import httpx

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{NAMES[self.system]} exited; see {self.log.name}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{NAMES[self.system]} not ready after {timeout} s")

    async def post(self, http, line: str) -> str:
        if self.system == "rnnseq":
            r = await http.post(self.url + "/v1/translate",
                                json={"text": [line], "beam_size": 1})
            r.raise_for_status()
            return r.json()["translations"][0]["text"]
        r = await http.post(self.url + "/translator/translate",
                            json=[{"src": line, "id": ONMT_ID}])
        r.raise_for_status()
        return r.json()[0][0]["tgt"]

    def rss_mib(self, field_name: str = "VmRSS") -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# -- load ----------------------------------------------------------------------------------------
async def _load(server: Server, lines: list[str], clients: int, total: int | None,
                until: float | None) -> Load:
    """``clients`` concurrent clients sending ``lines`` in turn, one sentence per request,
    ``total`` requests in all, or until the clock passes ``until``."""
    import httpx

    latencies: list[float] = []
    outputs: dict[int, str] = {}
    errors = 0
    next_index = 0

    async def client(http) -> None:
        nonlocal errors, next_index
        while (total is None or next_index < total) and (until is None or time.time() < until):
            index, next_index = next_index, next_index + 1
            start = time.perf_counter()
            try:
                text = await server.post(http, lines[index % len(lines)])
            except (httpx.HTTPError, KeyError, IndexError, ValueError):
                errors += 1
                continue
            latencies.append(time.perf_counter() - start)
            outputs[index % len(lines)] = text

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        seconds = time.perf_counter() - start
    return Load(len(latencies) + errors, seconds, latencies, errors, outputs)


def run_load(server: Server, lines: list[str], clients: int, total: int) -> Load:
    asyncio.run(_load(server, lines, min(clients, 4), 4 * clients, None))  # warm-up
    return asyncio.run(_load(server, lines, clients, total, None))


def soak(bench: compare.Bench, lines: list[str], seconds: float, args) -> None:
    server = Server("rnnseq", bench, bench.work / "logs" / "serve-soak.log", args.max_wait_ms)
    samples: list[tuple[float, float]] = []
    try:
        server.wait_ready()
        start, done = time.time(), threading.Event()

        def sample() -> None:
            while not done.wait(5.0):
                samples.append((time.time() - start, server.rss_mib()))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        load = asyncio.run(_load(server, lines, 64, None, start + seconds))
        done.set()
        sampler.join()
    finally:
        server.stop()
    after_first = next((rss for t, rss in samples if t >= 60), samples[0][1])
    final = samples[-1][1]
    print(f"\nsoak: 64 clients for {seconds:.0f} s: {load.sentences:,} requests, "
          f"{load.errors} errors, {load.sentences / load.seconds:,.1f} sentences/s, "
          f"p95 {load.percentile(95) * 1000:.0f} ms\n")
    print("| minute | RSS (MiB) |\n| ---: | ---: |")
    for t, rss in samples:
        if int(t) % 60 < 5:
            print(f"| {t / 60:.0f} | {rss:,.0f} |")
    print(f"| end | {final:,.0f} |")
    print(f"\nRSS growth after the first minute: {100 * (final - after_first) / after_first:+.1f} %"
          f" ({after_first:,.0f} -> {final:,.0f} MiB; peak {max(r for _, r in samples):,.0f})")


# -- report --------------------------------------------------------------------------------------
def table(results: dict, baseline: float, clients: list[int]) -> str:
    rows = ["| server | clients | sentences/s | vs batch translate | p50 ms | p95 ms | p99 ms "
            "| errors | peak RSS MiB |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
            "| ---: |"]
    for (system, n), (load, rss) in results.items():
        rate = load.rate
        rows.append(f"| {NAMES[system]} | {n} | {rate:,.1f} | {rate / baseline:.0%} "
                    f"| {load.percentile(50) * 1000:.0f} | {load.percentile(95) * 1000:.0f} "
                    f"| {load.percentile(99) * 1000:.0f} | {load.errors} | {rss:,.0f} |")
    if "onmt" in {s for s, _ in results}:
        rows.append("")
        rows.append("| clients | rnnseq / OpenNMT-py throughput | p95 rnnseq / OpenNMT-py |")
        rows.append("| ---: | ---: | ---: |")
        for n in clients:
            if ("rnnseq", n) in results and ("onmt", n) in results:
                ours, theirs = results["rnnseq", n][0], results["onmt", n][0]
                speedup = ours.rate / theirs.rate
                p95 = ours.percentile(95) / theirs.percentile(95)
                rows.append(f"| {n} | {speedup:.1f}x | {p95:.2f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,8,32,64", help="concurrent clients, comma list")
    parser.add_argument("--systems", default="rnnseq,onmt")
    parser.add_argument("--sentences", type=int, default=1000,
                        help="requests per (system, N): the test set once by default")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="rnnseq serve's option")
    parser.add_argument("--soak", type=float, default=0, metavar="SECONDS",
                        help="then 64 clients on rnnseq for this long, RSS sampled")
    parser.add_argument("--decode-train-steps", type=int, default=1300)
    parser.add_argument("--work", default=str(HERE / "results" / "peers" / "work"))
    parser.add_argument("--peers", default=str(HERE / "results" / "peers"))
    args = parser.parse_args()
    systems = [s for s in args.systems.split(",") if s]
    for s in systems:
        if s not in NAMES:
            parser.error(f"--systems: unknown {s!r}; choose from {', '.join(NAMES)}")
    clients = [int(n) for n in args.clients.split(",") if n]
    if not available():
        sys.exit("Multi30k not found under ../shared/data/multi30k; nothing to measure")
    if "onmt" in systems and not (Path(args.peers) / "venv-onmt" / ".installed").exists():
        sys.exit(f"OpenNMT-py is not set up in {args.peers}: run bash benchmarks/peers/setup.sh "
                 "(or leave it out with --systems rnnseq)")
    bench = compare.Bench(argparse.Namespace(
        work=args.work, peers=args.peers, decode_train_steps=args.decode_train_steps,
        train_steps=40, warmup=10))
    bench.prepare(systems, systems)
    lines = (bench.data / "test2016.de").read_text(encoding="utf-8").splitlines()

    batch = bench.speed("greedy-fp32")
    baseline = batch["sent_s"]
    expected = Path(batch["hyp"]).read_text(encoding="utf-8").splitlines()
    print(f"rnnseq translate, greedy, batches of 64: {baseline:,.1f} sentences/s", flush=True)
    results: dict = {}
    for system in systems:
        for n in clients:
            log = bench.work / "logs" / f"serve-{system}-{n}.log"
            server = Server(system, bench, log, args.max_wait_ms)
            try:
                server.wait_ready()
                load = run_load(server, lines, n, args.sentences)
                rss = server.rss_mib("VmHWM")
            finally:
                server.stop()
            results[system, n] = (load, rss)
            rate = load.rate
            note = ""
            if system == "rnnseq":
                differ = sum(text != expected[i] for i, text in load.outputs.items())
                note = f"; {differ} outputs differ from batch translate"
            print(f"{NAMES[system]}, {n} clients: {rate:,.1f} sentences/s, "
                  f"p95 {load.percentile(95) * 1000:.0f} ms, {load.errors} errors{note}",
                  file=sys.stderr, flush=True)
    import torch

    print(f"\nMulti30k test2016, {len(lines):,} sentences; greedy fp32; preset multi30k-word-lstm "
          f"trained {args.decode_train_steps} steps; torch {torch.__version__}; "
          f"{os.cpu_count()} CPUs; batch translate {baseline:,.1f} sentences/s\n")
    print(table(results, baseline, clients))
    if args.soak:
        soak(bench, lines, args.soak, args)


if __name__ == "__main__":
    main()
