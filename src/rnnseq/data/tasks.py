"""Multi-task training data (``data.tasks``): several corpora, one model.

Each task has its own files, a sampling ``weight`` and optionally a ``tag``, a token put before
each of its sources (after tokenization, so it is one token whatever the tokenizer), which
tells the model what to do with the source: the auxiliary-task setups of the seq2seq
literature (e.g. the title scaffolding of Cachola et al. 2020, "TLDR: Extreme Summarization of
Scientific Documents", or phoneme-to-grapheme beside grapheme-to-phoneme).

An epoch holds every example of the main task once and, of each other task ``i``,
``round(n_main · w_i / w_main)`` examples, so a task's share of the training examples is its
weight's share. Those are read from an endless sequence of shuffles of the task's examples
(shuffle ``k`` seeded by ``(seed, i, k)``), so what epoch ``e`` holds follows from ``e`` alone
and resuming at any batch of any epoch is exact.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..config import DataConfig, ordered_tasks
from .corpus import ParallelCorpus, load_corpus
from .dataset import Dataset, TokenizedCorpus, Vocabulary, encode_corpus, tokenize_corpus
from .tokenizers import Tokenizer


@dataclass
class Task:
    name: str
    tag: str | None
    weight: float
    train: ParallelCorpus
    valid: ParallelCorpus | None


def load_tasks(cfg: DataConfig) -> list[Task]:
    """Every task's corpora, the main task first."""
    assert cfg.tasks is not None
    out = []
    for t in ordered_tasks(cfg):
        train = load_corpus(t.train_src, t.train_tgt, t.train_tsv, f"training data ({t.name})")
        valid = None
        if t.valid_src or t.valid_tgt or t.valid_tsv:
            valid = load_corpus(t.valid_src, t.valid_tgt, t.valid_tsv,
                                f"validation data ({t.name})")
        out.append(Task(t.name, t.tag, t.weight, train, valid))
    return out


def merged(corpora: list[ParallelCorpus]) -> ParallelCorpus:
    """All corpora as one (for training tokenizers and building vocabularies)."""
    return ParallelCorpus([s for c in corpora for s in c.src], [t for c in corpora for t in c.tgt],
                          " + ".join(c.origin for c in corpora))


def tokenize_tagged(corpus: ParallelCorpus, src_tok: Tokenizer, tgt_tok: Tokenizer,
                    tag: str | None) -> TokenizedCorpus:
    """``corpus`` tokenized, with ``tag`` before every source."""
    tokens = tokenize_corpus(corpus, src_tok, tgt_tok)
    if tag is not None:
        tokens.src = [[tag, *s] for s in tokens.src]
    return tokens


def merge_tokens(parts: list[TokenizedCorpus]) -> TokenizedCorpus:
    return TokenizedCorpus(merged([p.corpus for p in parts]), [s for p in parts for s in p.src],
                           [t for p in parts for t in p.tgt])


def encode_tasks(parts: list[TokenizedCorpus], names: list[str], vocab: Vocabulary,
                 limits: DataConfig, copy: bool) -> tuple[Dataset, list[range]]:
    """The tasks' training data as one :class:`Dataset` and each task's range of indices."""
    datasets = [encode_corpus(p, vocab, limits, f"training data ({name})", copy)
                for p, name in zip(parts, names, strict=True)]
    out = Dataset([], [], [], [], [] if copy else None, [] if copy else None)
    ranges = []
    for d in datasets:
        start = len(out)
        for key in ("src", "tgt", "src_text", "tgt_text", "src_map", "tgt_ext"):
            if getattr(out, key) is not None:
                getattr(out, key).extend(getattr(d, key))
        ranges.append(range(start, len(out)))
    return out, ranges


class TaskSampler:
    """Which examples (indices into the merged :class:`Dataset`) epoch ``e`` holds."""

    def __init__(self, ranges: list[range], weights: list[float], seed: int) -> None:
        self.ranges, self.seed = ranges, seed
        n_main = len(ranges[0])
        self.per_epoch = [n_main] + [max(1, round(n_main * w / weights[0])) for w in weights[1:]]

    def epoch(self, e: int) -> list[int]:
        out: list[int] = list(self.ranges[0])
        for i in range(1, len(self.ranges)):
            out += self._take(i, e * self.per_epoch[i], self.per_epoch[i])
        return out

    def _take(self, task: int, start: int, count: int) -> list[int]:
        """Positions ``start .. start + count`` of task ``task``'s endless shuffled stream."""
        examples = list(self.ranges[task])
        out: list[int] = []
        k, offset = divmod(start, len(examples))
        while len(out) < count:
            order = examples[:]
            random.Random(f"{self.seed}/{task}/{k}").shuffle(order)
            out += order[offset : offset + count - len(out)]
            k, offset = k + 1, 0
        return out

    def shares(self) -> list[float]:
        total = sum(self.per_epoch)
        return [n / total for n in self.per_epoch]
