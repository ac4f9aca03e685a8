"""``rnnseq demo``: grapheme-to-phoneme on CMUdict, from data to test scores in minutes.

Trains on a deterministic word-level split of the CMU Pronouncing Dictionary (all
pronunciations of a word on one side; see :func:`rnnseq.data.builtin.split_of`), then reports
the test set's SER (a word is wrong unless it matches one of its pronunciations: the "WER" of
G2P papers) and PER (phoneme edit rate against the closest pronunciation).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from .config import Config

log = logging.getLogger("rnnseq")

DEMO_STEPS = 7000
EXAMPLES = ["python", "sequence", "recurrent", "tokenizer", "photosynthesis"]


def demo_config(workdir: Path, steps: int, quick: bool) -> Config:
    raw = {
        "data": {
            "train_tsv": str(workdir / "train.tsv"), "valid_tsv": str(workdir / "dev.tsv"),
            "src_tokenizer": "char", "tgt_tokenizer": "word", "src_lowercase": True,
            "max_len": 40,
        },
        "model": {
            "cell": "lstm", "layers": 1, "hidden_size": 256, "embedding_size": 64,
            "dropout": 0.2, "bidirectional": True, "attention": "luong_general",
            "input_feeding": False,
        },
        "train": {
            "out_dir": str(workdir / "model"), "seed": 1, "batch_size": 128,
            "max_steps": steps, "lr": 3e-3, "schedule": "inverse_sqrt", "warmup_steps": 200,
            "clip_norm": 5.0, "label_smoothing": 0.1, "valid_every": max(steps // 4, 1),
            "valid_metric": "ser", "valid_beam_size": 1, "log_every": 100,
        },
        "decode": {"beam_size": 5, "length_penalty": 0.0, "batch_size": 256},
    }
    if quick:
        raw["model"].update(hidden_size=32, embedding_size=16)
        raw["train"].update(valid_every=steps, log_every=max(steps // 2, 1))
    return Config.from_dict(raw, "demo config")


def write_splits(workdir: Path, quick: bool = False, stress: bool = True,
                 dev_limit: int | None = 1000) -> dict:
    """Write the CMUdict split into ``workdir``: ``train.tsv`` (every pronunciation of each
    training word), ``dev.tsv`` (every pronunciation of the first ``dev_limit`` dev words, for
    validation while training, which scores a word against all its lines),
    ``dev.words``/``dev.prons`` and ``test.words``/``test.prons`` (each word with all its
    pronunciations, tab-separated)."""
    from .data.builtin import cmudict_splits

    splits = cmudict_splits(stress=stress)
    if quick:
        splits = {name: dict(list(words.items())[:300]) for name, words in splits.items()}
    dev = dict(list(splits["dev"].items())[:dev_limit])
    write_split_files(workdir, splits["train"], dev, splits["test"])
    return splits


def write_split_files(workdir: Path, train: dict[str, list[str]], dev: dict[str, list[str]],
                      test: dict[str, list[str]]) -> None:
    """Write a word -> pronunciations split as the G2P recipes read it: ``train.tsv`` and
    ``dev.tsv`` (a ``word<TAB>pronunciation`` line per pronunciation), ``dev.words`` /
    ``dev.prons`` and ``test.words`` / ``test.prons`` (a word per line; its pronunciations on
    the same line of ``.prons``, tab-separated)."""
    from .fileio import atomic_write_text

    def pairs(words: dict[str, list[str]]) -> str:
        return "".join(f"{w}\t{p}\n" for w, prons in words.items() for p in prons)

    workdir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(workdir / "train.tsv", pairs(train))
    atomic_write_text(workdir / "dev.tsv", pairs(dev))
    for name, words in (("dev", dev), ("test", test)):
        atomic_write_text(workdir / f"{name}.words", "".join(f"{w}\n" for w in words))
        atomic_write_text(workdir / f"{name}.prons",
                          "".join("\t".join(p) + "\n" for p in words.values()))


def command_name() -> str:
    """``rnnseq`` if that is on PATH and is this installation, else its full path."""
    import shutil
    import sys

    here = Path(sys.executable).parent / "rnnseq"
    found = shutil.which("rnnseq")
    if found and here.exists() and Path(found).resolve() == here.resolve():
        return "rnnseq"
    return str(here) if here.exists() else "rnnseq"


def fresh_model_dir(workdir: Path) -> Path:
    """``workdir/model``, or ``model-2``, ``model-3``... so a re-run keeps earlier models."""
    candidate, n = workdir / "model", 1
    while candidate.exists():
        n += 1
        candidate = workdir / f"model-{n}"
    return candidate


def run_demo(workdir: Path, steps: int | None = None, quick: bool = False) -> int:
    from .inference.translator import load
    from .metrics import score
    from .training.trainer import train

    steps = steps or (60 if quick else DEMO_STEPS)
    start = time.perf_counter()
    log.info("reading CMUdict and writing a deterministic word-level split to %s", workdir)
    splits = write_splits(workdir, quick)
    sizes = {k: len(v) for k, v in splits.items()}
    log.info("words: %d train, %d dev (validation uses the first 1000), %d test",
             sizes["train"], sizes["dev"], sizes["test"])
    config = demo_config(workdir, steps, quick)
    config.train.out_dir = str(fresh_model_dir(workdir))
    train(config)
    model_dir = Path(config.train.out_dir) / "best"
    translator = load(str(model_dir))
    words = list(splits["test"])
    refs = list(splits["test"].values())
    t0 = time.perf_counter()
    hyps = translator.translate(words)
    decode_s = time.perf_counter() - t0
    ser = score("ser", hyps, refs)
    per = score("wer", hyps, refs)
    total = time.perf_counter() - start
    print()
    print(f"CMUdict G2P test set: {len(words)} words (beam {config.decode.beam_size}, "
          f"decoded in {decode_s:.1f} s)")
    print(f"  SER (word error rate of G2P papers): {ser.value:5.2f} %  ({ser.detail})")
    print(f"  PER (phoneme error rate):            {per.value:5.2f} %  ({per.detail})")
    print("examples (the dictionary's pronunciations in brackets; test words were never seen):")
    examples = EXAMPLES + words[:5]
    from .data.builtin import read_cmudict

    known = read_cmudict()
    for word, pron in zip(examples, translator.translate(examples), strict=True):
        mark = "" if pron in known.get(word, []) else "  x"
        reference = " | ".join(known.get(word, [])) or "not in the dictionary"
        print(f"  {word.upper():<16} -> {pron:<36} [{reference}]{mark}")
    print(f"total time {total / 60:.1f} min")
    exe = command_name()
    print(f"model saved in {model_dir}; use it with:")
    print(f"  echo python | {exe} translate {model_dir}")
    print(f"  {exe} translate {model_dir} -i words.txt -o prons.txt --beam 5")
    return 0
