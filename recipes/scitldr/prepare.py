"""Prepare SciTLDR-A (abstract -> one-sentence TLDR) for rnnseq, and write two baselines.

    python recipes/scitldr/prepare.py runs/data/scitldr [--data ../shared/data/summarization]

Writes to OUT:

* ``train.src`` / ``train.tgt``: abstracts and their (one) TLDR, tokenized (words, with
  punctuation split off; hyphenated words and numbers kept whole);
* ``valid.src`` / ``valid.tgt``: each dev abstract once per TLDR it has, so that validation
  scores against all of them (rnnseq groups repeated sources as alternative references);
* ``dev.src`` / ``dev.refs`` and ``test.src`` / ``test.refs``: tokenized abstracts, and all
  their TLDRs as written, tab-separated (``rnnseq evaluate --metric rouge`` takes them as
  alternative references and applies the SciTLDR rule);
* ``train.title`` / ``dev.title``: each paper's title, tokenized (``dev.title`` beside
  ``dev.src``), for title generation as an auxiliary task (``python recipes/run.py
  scitldr-title``);
* ``{dev,test}.lead``: the lead baseline, each abstract's first sentence, and
  ``{dev,test}.oracle``: the single abstract sentence with the highest ROUGE-1 F1 against any
  reference, an upper bound for extracting one sentence.

ROUGE tokenizes for itself (lowercase, alphanumeric runs), so tokenized outputs and the
references as written score exactly as detokenized outputs would.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

TOKEN = re.compile(r"\w+(?:[-'’]\w+)*|[^\w\s]")
# A sentence ends at . ! or ? followed by space and an upper-case letter, digit, quote or bracket.
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
SPLITS = {"train": "train", "dev": "val", "test": "test"}


def tokenize(text: str) -> str:
    return " ".join(TOKEN.findall(text))


def sentences(abstract: str) -> list[str]:
    return SENTENCE_END.split(abstract.strip())


def read(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        sys.exit(f"{path}: not found (see ../shared/data/summarization/README.md)")


def read_refs(path: Path) -> list[list[str]]:
    refs = []
    for number, line in enumerate(read(path), 1):
        try:
            targets = json.loads(line)["targets"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            sys.exit(f"{path}:{number}: not a JSON object with 'targets' ({err})")
        refs.append([" ".join(t.split()) for t in targets])
    return refs


def oracle(abstract: str, refs: list[str], scorer) -> str:
    """The abstract's sentence with the highest ROUGE-1 F1 against any reference."""
    return max(sentences(abstract),
               key=lambda s: max(scorer.score(r, s)["rouge1"].fmeasure for r in refs))


def write(path: Path, lines: list[str]) -> None:
    if any("\n" in line for line in lines):
        raise ValueError(f"{path}: a line holds a line break")
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/summarization"))
    parser.add_argument("--limit", type=int, help="only the first N papers of each split "
                        "(a quick check)")
    args = parser.parse_args()
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, upstream in SPLITS.items():
        src = read(args.data / f"{upstream}.src")[: args.limit]
        refs = read_refs(args.data / f"{upstream}.refs.jsonl")[: args.limit]
        if len(src) != len(refs):
            sys.exit(f"{args.data}: {upstream}.src has {len(src)} lines but "
                     f"{upstream}.refs.jsonl has {len(refs)}")
        tokens = [tokenize(s) for s in src]
        if name != "test":
            titles = read(args.data / f"{upstream}.title")[: args.limit]
            if len(titles) != len(src):
                sys.exit(f"{args.data}: {upstream}.src has {len(src)} lines but "
                         f"{upstream}.title has {len(titles)}")
            write(args.out / f"{name}.title", [tokenize(t) for t in titles])
        if name == "train":
            write(args.out / "train.src", tokens)
            write(args.out / "train.tgt", [tokenize(r[0]) for r in refs])
            continue
        if name == "dev":
            pairs = [(s, tokenize(r)) for s, rs in zip(tokens, refs, strict=True) for r in rs]
            write(args.out / "valid.src", [s for s, _ in pairs])
            write(args.out / "valid.tgt", [t for _, t in pairs])
        write(args.out / f"{name}.src", tokens)
        write(args.out / f"{name}.refs", ["\t".join(rs) for rs in refs])
        write(args.out / f"{name}.lead", [sentences(s)[0] for s in src])
        write(args.out / f"{name}.oracle",
              [oracle(s, rs, scorer) for s, rs in zip(src, refs, strict=True)])
        print(f"{name}: {len(src)} papers, {sum(map(len, refs))} TLDRs")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
