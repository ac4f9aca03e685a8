"""Run a recipe end to end and record its result: prepare the data, train, translate the test
set, score it. Every step is a plain command (printed as it runs), the same ones the recipe's
README lists.

    python recipes/run.py multi30k-de-en          # the full recipe (see its README)
    python recipes/run.py all --check             # every recipe for two steps on a data sample
    python recipes/run.py multi30k-de-en --resume # continue an interrupted run
    python recipes/run.py g2p-small               # small-data G2P (8,000 words); g2p-small-1k
    python recipes/run.py scitldr                 # summarization: abstract -> TLDR
    python recipes/run.py scitldr-title           # ... with title generation beside it
    python recipes/run.py g2p-small-p2g           # g2p-small with phoneme-to-grapheme beside it

A full run writes ``OUT/result.json`` (metrics with their signatures, parameters, training
time, steps, decoding settings, commit) and prints it as a row for ``recipes/README.md``.
``--check`` runs each recipe on the first lines of its data for two steps in a temporary folder,
so the recipes never rot (``make recipes-check``; part of the test suite).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from rnnseq.config import CORPUS_KEYS
from rnnseq.metrics import is_better, metric_name

ROOT = Path(__file__).resolve().parents[1]
M30K = Path("../shared/data/multi30k")
SCITLDR = Path("../shared/data/summarization")


@dataclass
class Recipe:
    config: str
    test: tuple[str, str]  # source file, reference file (tab-separated alternatives)
    evaluate: list[list[str]]  # one `rnnseq evaluate` option list per call
    prepare: list[str] = field(default_factory=list)  # a command that writes the data
    overrides: dict[str, str] = field(default_factory=dict)  # --set, beyond the config
    needs: Path | None = None  # a file under ../shared the recipe cannot run without
    # Checkpoint averaging: average the newest `average` checkpoints, decode the dev set with
    # best/ and with the average, and test the one whose first metric is better on dev.
    average: int = 0
    dev: tuple[str, str] | None = None  # source, references (tab-separated alternatives)
    # Outputs of baselines that `prepare` writes for the test set, scored like the model.
    baselines: dict[str, str] = field(default_factory=dict)
    prepare_check: list[str] = field(default_factory=list)  # extra `prepare` args for --check
    # A second training phase: the run resumed with these settings changed (e.g. coverage on).
    then: dict[str, str] = field(default_factory=dict)
    # Multi-task: data.tasks (name, files, weight, tag), in place of the config's corpus.
    tasks: list[dict[str, str | float]] = field(default_factory=list)


def _m30k(src: str, tgt: str) -> dict[str, str]:
    return {"data.train_src": f"{M30K}/train.{src}", "data.train_tgt": f"{M30K}/train.{tgt}",
            "data.valid_src": f"{M30K}/val.{src}", "data.valid_tgt": f"{M30K}/val.{tgt}"}


def _g2p(folder: str) -> dict[str, str]:
    return {"data.train_tsv": f"runs/data/{folder}/train.tsv",
            "data.valid_tsv": f"runs/data/{folder}/dev.tsv"}


def tasks_override(tasks: list[dict], file: Callable[[str, str, str], str]) -> dict[str, str]:
    """The ``--set`` values of a multi-task recipe: ``data.tasks`` with each file path passed
    through ``file(task, key, path)``, and the config's own corpus keys cleared."""
    listed = [{key: file(str(task["name"]), key, str(value)) if key in CORPUS_KEYS else value
               for key, value in task.items()} for task in tasks]
    return {**{f"data.{key}": "null" for key in CORPUS_KEYS}, "data.tasks": json.dumps(listed)}


CASED_BLEU = [["--metric", "bleu", "chrf"], ["--metric", "bleu", "--lowercase"]]
RECIPES = {
    "multi30k-de-en": Recipe(
        "recipes/multi30k-de-en/config.yaml", (f"{M30K}/test2016.de", f"{M30K}/test2016.en"),
        CASED_BLEU, needs=M30K / "train.de"),
    "multi30k-en-de": Recipe(  # the same recipe with only the file names changed
        "recipes/multi30k-de-en/config.yaml", (f"{M30K}/test2016.en", f"{M30K}/test2016.de"),
        CASED_BLEU, overrides={**_m30k("en", "de"), "train.out_dir": "runs/multi30k-en-de"},
        needs=M30K / "train.de"),
    "multi30k-word-lstm": Recipe(
        "recipes/multi30k-word-lstm/config.yaml",
        ("runs/data/multi30k-tok/test2016.de", "runs/data/multi30k-tok/test2016.en"),
        [["--metric", "bleu", "chrf", "--bleu-tokenize", "none"]],
        prepare=["python", "benchmarks/multi30k.py", "runs/data/multi30k-tok"],
        needs=M30K / "train.de"),
    "cmudict-g2p": Recipe(
        "recipes/cmudict-g2p/config.yaml",
        ("runs/data/cmudict-nostress/test.words", "runs/data/cmudict-nostress/test.prons"),
        [["--metric", "ser", "wer"]],
        prepare=["python", "recipes/cmudict-g2p/prepare.py", "runs/data/cmudict-nostress",
                 "--no-stress"],
        average=3,
        dev=("runs/data/cmudict-nostress/dev.words", "runs/data/cmudict-nostress/dev.prons")),
    "cmudict-g2p-stress": Recipe(
        "recipes/cmudict-g2p/config.yaml",
        ("runs/data/cmudict-stress/test.words", "runs/data/cmudict-stress/test.prons"),
        [["--metric", "ser", "wer"]],
        prepare=["python", "recipes/cmudict-g2p/prepare.py", "runs/data/cmudict-stress"],
        overrides={**_g2p("cmudict-stress"), "train.out_dir": "runs/cmudict-g2p-stress"},
        average=3,
        dev=("runs/data/cmudict-stress/dev.words", "runs/data/cmudict-stress/dev.prons")),
    "g2p-small": Recipe(  # 8,000 training words drawn from the CMUdict recipe's split
        "recipes/g2p-small/config.yaml",
        ("runs/data/g2p-small-8k/test.words", "runs/data/g2p-small-8k/test.prons"),
        [["--metric", "ser", "wer"]],
        prepare=["python", "recipes/g2p-small/prepare.py", "runs/data/g2p-small-8k",
                 "--train-words", "8000", "--seed", "1", "--no-stress"],
        average=3,
        dev=("runs/data/g2p-small-8k/dev.words", "runs/data/g2p-small-8k/dev.prons")),
    "g2p-small-1k": Recipe(  # the same recipe on 1,000 training words
        "recipes/g2p-small/config.yaml",
        ("runs/data/g2p-small-1k/test.words", "runs/data/g2p-small-1k/test.prons"),
        [["--metric", "ser", "wer"]],
        prepare=["python", "recipes/g2p-small/prepare.py", "runs/data/g2p-small-1k",
                 "--train-words", "1000", "--seed", "1", "--no-stress"],
        overrides={"data.train_tsv": "runs/data/g2p-small-1k/train.tsv",
                   "data.valid_tsv": "runs/data/g2p-small-1k/dev.tsv",
                   "train.out_dir": "runs/g2p-small-1k",
                   "train.max_steps": "3000", "train.valid_every": "250"},
        average=3,
        dev=("runs/data/g2p-small-1k/dev.words", "runs/data/g2p-small-1k/dev.prons")),
    "scitldr": Recipe(  # abstract -> TLDR, with copy attention
        "recipes/scitldr/config.yaml",
        ("runs/data/scitldr/test.src", "runs/data/scitldr/test.refs"),
        [["--metric", "rouge"]],
        prepare=["python", "recipes/scitldr/prepare.py", "runs/data/scitldr"],
        needs=SCITLDR / "train.src", average=3, prepare_check=["--limit", "40"],
        dev=("runs/data/scitldr/dev.src", "runs/data/scitldr/dev.refs"),
        baselines={"lead (first sentence)": "runs/data/scitldr/test.lead",
                   "oracle (best single sentence)": "runs/data/scitldr/test.oracle"},
        # See et al.'s final phase: coverage switched on for 300 more steps
        then={"model.coverage": "true", "train.max_steps": "2700", "train.schedule": "constant",
              "train.lr": "0.0003", "train.valid_every": "100"}),
}
# The same recipes with an auxiliary task beside the main one (data.tasks), at the same steps.
RECIPES["scitldr-title"] = replace(  # title generation: the SciTLDR paper's "title scaffolding"
    RECIPES["scitldr"], needs=SCITLDR / "train.title",
    overrides={"train.out_dir": "runs/scitldr-title"},
    tasks=[{"name": "tldr", "tag": "<tldr>", "train_src": "runs/data/scitldr/train.src",
            "train_tgt": "runs/data/scitldr/train.tgt", "valid_src": "runs/data/scitldr/valid.src",
            "valid_tgt": "runs/data/scitldr/valid.tgt"},
           {"name": "title", "tag": "<title>", "weight": 0.5,
            "train_src": "runs/data/scitldr/train.src",
            "train_tgt": "runs/data/scitldr/train.title",
            "valid_src": "runs/data/scitldr/dev.src", "valid_tgt": "runs/data/scitldr/dev.title"}])
RECIPES["g2p-small-p2g"] = replace(  # phoneme-to-grapheme on the same words
    RECIPES["g2p-small"], overrides={"train.out_dir": "runs/g2p-small-p2g"},
    tasks=[{"name": "g2p", "tag": "<g2p>", "train_tsv": "runs/data/g2p-small-8k/train.tsv",
            "valid_tsv": "runs/data/g2p-small-8k/dev.tsv"},
           {"name": "p2g", "tag": "<p2g>", "weight": 0.5,
            "train_tsv": "runs/data/g2p-small-8k/train.p2g.tsv",
            "valid_tsv": "runs/data/g2p-small-8k/dev.p2g.tsv"}])

CHECK_LINES = {"train": 300, "valid": 20, "test": 20}


def rnnseq_exe() -> str:
    exe = Path(sys.executable).parent / "rnnseq"
    return str(exe) if exe.exists() else "rnnseq"


def show(cmd: list[str]) -> str:
    return " ".join(f"'{c}'" if (" " in c or not c) else c for c in cmd)


def run(cmd: list[str], capture: bool = False) -> str:
    """Run a command from the repository root, echoing it; stop the recipe if it fails."""
    print(f"$ {show(cmd)}", flush=True)
    exe = {"python": sys.executable, "rnnseq": rnnseq_exe()}.get(cmd[0], cmd[0])
    proc = subprocess.run([exe, *cmd[1:]], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE if capture else None)
    if proc.returncode:
        sys.exit(f"recipe step failed ({proc.returncode}): {show(cmd)}")
    if capture:
        print(proc.stdout, end="", flush=True)
    return proc.stdout or ""


def head(src: Path, dst: Path, lines: int) -> str:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(ROOT / src, encoding="utf-8") as handle:
        kept = [line for _, line in zip(range(lines), handle, strict=False)]
    dst.write_text("".join(kept), encoding="utf-8")
    return str(dst)


def first_score(printed: str) -> tuple[str, float]:
    """The first score `rnnseq evaluate` printed: ("ser", 32.59) from "SER = 32.59 (...)",
    ("rouge1", 31.4) from "ROUGE-1 = 31.40  ROUGE-2 = ..."."""
    m = re.search(r"^([\w-]+) = ([\d.]+)", printed, re.MULTILINE)
    if not m:
        sys.exit(f"no score in the evaluation output: {printed!r}")
    return metric_name(m[1]), float(m[2])


def select_on_dev(recipe: Recipe, out_dir: Path, dev: tuple[str, str]) -> tuple[Path, dict]:
    """Average the newest checkpoints, then pick best/ or the average by the dev score."""
    averaged = out_dir / "averaged"
    run(["rnnseq", "average", str(out_dir), "--last", str(recipe.average), "-o", str(averaged)])
    scores = {}
    for model in (out_dir / "best", averaged):
        hyp = out_dir / f"dev.{model.name}.hyp"
        run(["rnnseq", "translate", str(model), "-i", dev[0], "-o", str(hyp)])
        printed = run(["rnnseq", "evaluate", "--hyp", str(hyp), "--ref", dev[1],
                       *recipe.evaluate[0]], capture=True)
        metric, scores[model.name] = first_score(printed)
    better = is_better(metric, scores["averaged"], scores["best"])
    chosen = averaged if better else out_dir / "best"
    print(f"dev {metric}: best {scores['best']}, averaged {scores['averaged']} -> "
          f"testing {chosen.name}", flush=True)
    return chosen, {"dev_metric": metric, "dev_scores": scores, "tested": chosen.name,
                    "averaged": f"newest {recipe.average} checkpoints"}


def check_overrides(overrides: dict, data: dict, test: tuple[str, str],
                    work: Path) -> tuple[dict, tuple[str, str]]:
    """Point a recipe at the first lines of its data, two steps, outputs under ``work``."""
    out: dict[str, str] = {}
    for key in CORPUS_KEYS:
        path = overrides.get(f"data.{key}") or data.get(key)
        if path:
            out[f"data.{key}"] = head(Path(path), work / "sample" / f"{key}.txt",
                                      CHECK_LINES[key.split("_")[0]])
    test = (head(Path(test[0]), work / "sample" / "test.src", CHECK_LINES["test"]),
            head(Path(test[1]), work / "sample" / "test.ref", CHECK_LINES["test"]))
    out.update({"train.out_dir": str(work / "model"), "train.max_steps": "2",
                "train.max_minutes": "null", "train.valid_every": "2", "train.log_every": "1"})
    return out, test


def git_commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                             capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, text=True, capture_output=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def in_second_phase(recipe: Recipe, last: Path) -> bool:
    """Whether the run's last checkpoint already has the model settings of ``recipe.then`` (a
    resumed run then continues the second phase, and the first must not run again)."""
    if not recipe.then:
        return False
    saved = yaml.safe_load((last / "config.yaml").read_text(encoding="utf-8"))
    model = {key: yaml.safe_load(value) for key, value in recipe.then.items()
             if key.startswith("model.")}
    return all(saved["model"].get(key.split(".", 1)[1]) == value for key, value in model.items())


def parse_train_log(path: Path) -> dict:
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    info: dict = {}
    if m := re.search(r"model: .*?([\d,]+) parameters", text):
        info["parameters"] = int(m[1].replace(",", ""))
    if m := re.findall(r"training stopped at step (\d+): (.*)", text):
        info["steps"], info["stop_reason"] = int(m[-1][0]), m[-1][1]
    if m := re.findall(r"best checkpoint: \S+ \(step (\d+), (\w+) ([\d.]+)\)", text):
        info["best_step"], info["valid_metric"], info["valid_value"] = (
            int(m[-1][0]), m[-1][1], float(m[-1][2]))
    return info


def run_recipe(name: str, check: bool, work: Path | None, resume: bool = False) -> dict:
    recipe = RECIPES[name]
    print(f"\n=== {name}{' (check)' if check else ''} ===", flush=True)
    if recipe.needs and not (ROOT / recipe.needs).exists():
        print(f"skipped: {recipe.needs} is not there", flush=True)
        return {"recipe": name, "skipped": f"{recipe.needs} not found"}
    def local(path: str) -> str:  # a check writes nothing under the repository's runs/
        return str(work / path) if check and path.startswith("runs/") else path

    if recipe.prepare:
        run([local(arg) for arg in recipe.prepare] + (recipe.prepare_check if check else []))
    settings = yaml.safe_load((ROOT / recipe.config).read_text(encoding="utf-8"))
    overrides = {key: local(value) for key, value in recipe.overrides.items()}
    test = (local(recipe.test[0]), local(recipe.test[1]))
    dev = (local(recipe.dev[0]), local(recipe.dev[1])) if recipe.dev else None
    if check:
        data = {key: local(value) for key, value in settings["data"].items()
                if isinstance(value, str)}
        extra, test = check_overrides(overrides, data, test, work)
        overrides.update(extra)
        if recipe.average:  # two checkpoints to average
            overrides["train.valid_every"] = "1"
        if recipe.tasks:
            overrides.update(tasks_override(recipe.tasks, lambda task, key, path: head(
                Path(local(path)), work / "sample" / f"{task}.{key}.txt",
                CHECK_LINES[key.split("_")[0]])))
        if dev:
            dev = (head(Path(dev[0]), work / "sample" / "dev.src", CHECK_LINES["test"]),
                   head(Path(dev[1]), work / "sample" / "dev.ref", CHECK_LINES["test"]))
    elif recipe.tasks:
        overrides.update(tasks_override(recipe.tasks, lambda task, key, path: path))
    out_dir = Path(overrides.get("train.out_dir", settings["train"]["out_dir"]))
    has_run = not check and (ROOT / out_dir / "last").exists()
    resuming = resume and has_run
    if has_run and not resuming:
        sys.exit(f"{out_dir} already holds a run; move it away, or continue it with "
                 f"`python recipes/run.py {name} --resume`")
    train_cmd = ["rnnseq", "train", recipe.config]
    for key, value in overrides.items():
        train_cmd += ["--set", f"{key}={value}"]
    if resuming:
        train_cmd.append("--resume")
    start = time.perf_counter()
    if not (resuming and in_second_phase(recipe, ROOT / out_dir / "last")):
        run(train_cmd)
    if recipe.then:
        then = dict(recipe.then)
        if check:
            then.update({"train.max_steps": "5", "train.valid_every": "1"})  # 3 to average
        phase = train_cmd[:3] + [arg for key, value in {**overrides, **then}.items()
                                 for arg in ("--set", f"{key}={value}")] + ["--resume"]
        run(phase)
    train_seconds = time.perf_counter() - start
    model, selection = out_dir / "best", {}
    if recipe.average and dev:
        model, selection = select_on_dev(recipe, out_dir, dev)
    hyp = out_dir / "test.hyp"
    start = time.perf_counter()
    run(["rnnseq", "translate", str(model), "-i", test[0], "-o", str(hyp)])
    decode_seconds = time.perf_counter() - start
    scores = []
    for options in recipe.evaluate:
        printed = run(["rnnseq", "evaluate", "--hyp", str(hyp), "--ref", test[1], *options],
                      capture=True)
        scores += [line for line in printed.splitlines() if line.strip()]
    baselines = {}
    for label, path in recipe.baselines.items():
        hyp_file = local(path)
        if check:
            hyp_file = head(Path(hyp_file), work / "sample" / Path(path).name, CHECK_LINES["test"])
        baselines[label] = [line for options in recipe.evaluate for line in run(
            ["rnnseq", "evaluate", "--hyp", hyp_file, "--ref", test[1], *options],
            capture=True).splitlines() if line.strip()]
    saved = yaml.safe_load((ROOT / model / "config.yaml").read_text(encoding="utf-8"))
    decode = saved["decode"]
    result = {
        "recipe": name, "scores": scores, "commit": git_commit(),
        "command": f"python recipes/run.py {name}",
        "train_minutes": round(train_seconds / 60, 1),
        "translate_seconds": round(decode_seconds, 1),
        **({"resumed": "train_minutes counts only the resumed part"} if resuming else {}),
        **selection,
        "decoding": f"beam {decode['beam_size']}, length penalty {decode['length_penalty']}"
                    + (f", block_ngram_repeat {decode['block_ngram_repeat']}"
                       if decode.get("block_ngram_repeat") else ""),
        **({"baselines": baselines} if baselines else {}),
        **parse_train_log(ROOT / out_dir / "train.log"),
    }
    (ROOT / out_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n",
                                                encoding="utf-8")
    print(f"\nresult ({out_dir / 'result.json'}):")
    training = (f"{result['train_minutes']} min, {result.get('steps')} steps "
                f"(best {result.get('best_step')})")
    print(f"| {name} | {'<br>'.join(scores)} | {result.get('parameters', 0) / 1e6:.1f} M | "
          f"{training} | {result['decoding']} | `{result['commit']}` |", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", choices=[*RECIPES, "all"])
    parser.add_argument("--check", action="store_true",
                        help="two steps on a sample of the data, in a temporary folder")
    parser.add_argument("--keep", metavar="DIR", help="with --check: work in DIR and keep it")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run from its OUT/last checkpoint")
    args = parser.parse_args()
    names = list(RECIPES) if args.recipe == "all" else [args.recipe]
    if args.resume and args.check:
        parser.error("--resume applies to full runs, not to --check")
    if not args.check:
        for name in names:
            run_recipe(name, False, None, args.resume)
        return
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="rnnseq-recipes-"))
    try:
        for name in names:
            result = run_recipe(name, True, work.resolve() / name)
            if not result.get("skipped") and not result["scores"]:
                sys.exit(f"{name}: no scores came out")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print("\nrecipes check passed")


if __name__ == "__main__":
    main()
