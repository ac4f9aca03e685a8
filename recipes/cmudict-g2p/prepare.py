"""Write the CMUdict split used by the G2P recipe (and by ``rnnseq demo``).

    python recipes/cmudict-g2p/prepare.py OUT_DIR [--no-stress]

The split is by word, deterministic and independent of the dictionary's other entries: a word
goes to test (5 %), dev (2 %) or train by a SHA-256 hash of its spelling, so every pronunciation
of a word is on one side. Writes ``train.tsv`` (word<TAB>pronunciation, one line per
pronunciation), ``dev.tsv`` (likewise for dev words; validation scores a word against all its
lines), ``dev.words``/``dev.prons`` and ``test.words``/``test.prons`` (all of a word's
pronunciations, tab-separated: a word counts as right if it matches any). ``--no-stress``
removes the stress digits (AH0 -> AH), the setting of the G2P literature.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rnnseq.demo import write_splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="output folder")
    parser.add_argument("--no-stress", action="store_true", help="remove stress digits")
    args = parser.parse_args()
    splits = write_splits(Path(args.out), stress=not args.no_stress, dev_limit=None)
    sizes = ", ".join(f"{len(words):,} {name} words" for name, words in splits.items())
    print(f"{args.out}: {sizes} ({'without' if args.no_stress else 'with'} stress)")


if __name__ == "__main__":
    main()
