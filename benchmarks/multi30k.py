"""Multi30k data for benchmarks: the lowercased, punctuation-split text of the peers' preset.

Reads the raw files in ``../shared/data/multi30k`` and writes ``{train,val,test2016}.{de,en}``
lowercased with punctuation split off words, the way the Moses tokenizer splits it for these
sentences (``man's`` -> ``man 's``, ``t-shirt`` stays one word, ``3.5`` stays one number).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "multi30k"
SPLITS = ("train", "val", "test2016")

_TOKEN = re.compile(r"\d+(?:[.,]\d+)+|\w+(?:[-']\w+)*|'\w+|[^\w\s]", re.UNICODE)


def tokenize(line: str) -> str:
    """Lowercase and split punctuation: 'A man's hat.' -> 'a man 's hat .'"""
    text = line.strip().lower()
    tokens = []
    for tok in _TOKEN.findall(text):
        # split English clitics the way Moses does: man's -> man 's, don't -> do n't
        m = re.fullmatch(r"(\w+)('s|'re|'ve|'ll|'d|'m)", tok)
        if m:
            tokens += [m.group(1), m.group(2)]
        elif tok.endswith("n't") and len(tok) > 3:
            tokens += [tok[:-3], "n't"]
        else:
            tokens.append(tok)
    return " ".join(tokens)


def prepare(out_dir: Path, source: Path = SHARED) -> Path:
    """Write the tokenized splits into ``out_dir`` (skipped when already there)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        for lang in ("de", "en"):
            target = out_dir / f"{split}.{lang}"
            if target.exists():
                continue
            raw = (source / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()
            target.write_text("".join(tokenize(line) + "\n" for line in raw), encoding="utf-8")
    return out_dir


def available(source: Path = SHARED) -> bool:
    return all((source / f"{s}.{lang}").exists() for s in SPLITS for lang in ("de", "en"))


if __name__ == "__main__":
    print(prepare(Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/multi30k")))
