"""Write the data of the small-data G2P recipe: a reproducible sample of training words.

    python recipes/g2p-small/prepare.py OUT --train-words 8000 --seed 1 --no-stress   # CMUdict
    python recipes/g2p-small/prepare.py OUT --tsv my-lexicon.tsv                     # your data

From CMUdict (the default): the word-level split of the CMUdict recipe (test 5 %, dev 2 % by a
SHA-256 hash of the word), of whose training words ``--train-words`` are drawn at random with
``--seed``; every pronunciation of a chosen word is kept. The test set is the CMUdict recipe's
full test set, so the numbers compare with it.

From your own ``word<TAB>pronunciation`` file (``--tsv``; one line per pronunciation, a word
may repeat): the words are split the same way, by a hash of the word, with ``--test-percent``
and ``--dev-percent`` (default 10 % each: small data needs a test set big enough to mean
something), and ``--train-words`` (default: all) are drawn from the rest.

Writes ``train.tsv`` (word<TAB>pronunciation per line), ``dev.tsv`` (at most ``--dev-words``
dev words, drawn with a fixed seed that is the same for every ``--seed``, for validation while
training; a word is scored against all its lines),
``dev.words``/``dev.prons`` and ``test.words``/``test.prons`` (a word per line, its
pronunciations tab-separated: an output is right if it matches any of them) and
``sample.json`` (what was drawn, with which seed, from which data).

Also ``train.p2g.tsv`` / ``dev.p2g.tsv``: the same pairs turned around, pronunciation<TAB>the
word's letters separated by spaces (``K AE T<TAB>c a t``), for phoneme-to-grapheme as an
auxiliary task (``python recipes/run.py g2p-small-p2g``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import unicodedata
from collections import OrderedDict
from pathlib import Path

from rnnseq.data.builtin import cmudict_splits, split_lexicon
from rnnseq.data.corpus import read_lines
from rnnseq.demo import write_split_files
from rnnseq.errors import DataError
from rnnseq.fileio import atomic_write_text


def read_lexicon(path: Path) -> OrderedDict[str, list[str]]:
    """word -> its pronunciations, from ``word<TAB>pronunciation`` lines (errors name the line)."""
    lexicon: OrderedDict[str, list[str]] = OrderedDict()
    for number, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        if line.count("\t") != 1:
            raise DataError(f"{path}:{number}: expected word<TAB>pronunciation, found "
                            f"{line.count(chr(9))} tabs")
        # composed and decomposed spellings of a word are one word (on one side of the split)
        word, pron = (unicodedata.normalize("NFC", part.strip()) for part in line.split("\t"))
        if not word or not pron:
            raise DataError(f"{path}:{number}: empty {'word' if not word else 'pronunciation'}")
        prons = lexicon.setdefault(word, [])
        if pron not in prons:
            prons.append(pron)
    if not lexicon:
        raise DataError(f"{path}: no entries")
    return lexicon


def sample_words(words: OrderedDict[str, list[str]], n: int | None,
                 seed: int) -> OrderedDict[str, list[str]]:
    """``n`` words drawn at random (all of them when ``n`` is None), in dictionary order."""
    if n is None or n >= len(words):
        return words
    chosen = set(random.Random(seed).sample(sorted(words), n))
    return OrderedDict((w, p) for w, p in words.items() if w in chosen)


def phoneme_to_grapheme(words: OrderedDict[str, list[str]]) -> str:
    """``pronunciation<TAB>w o r d`` lines: the pairs turned around, the word's letters as the
    target's tokens (its tokenizer splits on spaces)."""
    return "".join(f"{pron}\t{' '.join(word)}\n" for word, prons in words.items()
                   for pron in prons)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="output folder")
    parser.add_argument("--train-words", type=int, metavar="N",
                        help="training words to draw (default: all)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the draw (default 1)")
    parser.add_argument("--tsv", type=Path, help="your own word<TAB>pronunciation file "
                        "(default: CMUdict)")
    parser.add_argument("--no-stress", action="store_true",
                        help="CMUdict: remove the stress digits (AH0 -> AH)")
    parser.add_argument("--test-percent", type=int, help="with --tsv (default 10)")
    parser.add_argument("--dev-percent", type=int, help="with --tsv (default 10)")
    parser.add_argument("--dev-words", type=int, default=1000,
                        help="at most this many dev words for validation and selection "
                        "(default 1000)")
    args = parser.parse_args()
    if args.train_words is not None and args.train_words < 1:
        parser.error(f"--train-words must be at least 1 (got {args.train_words})")
    if args.tsv is None and (args.test_percent is not None or args.dev_percent is not None):
        parser.error("--test-percent/--dev-percent apply to --tsv; the CMUdict split is fixed "
                     "(test 5 %, dev 2 %)")
    if args.tsv is not None and args.no_stress:
        parser.error("--no-stress applies to CMUdict; strip stress marks from your own file")
    try:
        if args.tsv is None:
            splits = cmudict_splits(stress=not args.no_stress)
            source = f"CMUdict ({'without' if args.no_stress else 'with'} stress)"
        else:
            test_pct = 10 if args.test_percent is None else args.test_percent
            dev_pct = 10 if args.dev_percent is None else args.dev_percent
            if not (0 < test_pct and 0 < dev_pct and test_pct + dev_pct < 100):
                parser.error("--test-percent and --dev-percent must be positive and leave "
                             "words for training")
            splits = split_lexicon(read_lexicon(args.tsv), test_pct, dev_pct)
            source = str(args.tsv)
    except DataError as err:
        sys.exit(f"error: {err}")
    available = len(splits["train"])
    if args.train_words is not None and args.train_words > available:
        print(f"note: --train-words {args.train_words}, but there are {available:,} training "
              "words; using them all", file=sys.stderr)
    splits["train"] = sample_words(splits["train"], args.train_words, args.seed)
    dev = sample_words(splits["dev"], args.dev_words, seed=0)  # one dev set for every draw
    write_split_files(Path(args.out), splits["train"], dev, splits["test"])
    for name, words in (("train", splits["train"]), ("dev", dev)):
        atomic_write_text(Path(args.out) / f"{name}.p2g.tsv", phoneme_to_grapheme(words))
    info = {"source": source, "train_words": len(splits["train"]),
            "train_pronunciations": sum(len(p) for p in splits["train"].values()),
            "drawn_from": available, "seed": args.seed,
            "dev_words": len(dev),
            "test_words": len(splits["test"])}
    atomic_write_text(Path(args.out) / "sample.json", json.dumps(info, indent=2) + "\n")
    print(f"{args.out}: {info['train_words']:,} training words ({info['train_pronunciations']:,} "
          f"pronunciations) drawn from {available:,} with seed {args.seed}; "
          f"{info['dev_words']:,} dev and {info['test_words']:,} test words; {source}")


if __name__ == "__main__":
    main()
