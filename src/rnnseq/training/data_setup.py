"""The data a training run learns from, as ids: tokenizers and vocabularies (built from the
training corpus, or read back from the run being resumed) and the training and validation sets;
with tasks (``data.tasks``), one sampler over every task's examples and each task's own
validation set.

Under ``torchrun`` the main process builds the tokenizers and vocabularies and the others
receive them, so every process encodes with the same ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config
from ..data.dataset import (
    Dataset,
    TokenizedCorpus,
    Vocabulary,
    build_tokenizers,
    encode_corpus,
    load_training_data,
    tokenize_corpus,
    vocabulary_from_tokens,
)
from ..data.tasks import (
    Task,
    TaskSampler,
    encode_tasks,
    load_tasks,
    merge_tokens,
    merged,
    tokenize_tagged,
)
from ..data.tokenizers import load_tokenizer
from ..data.vocab import Vocab
from .distributed import Distributed

log = logging.getLogger("rnnseq")


@dataclass
class TrainingData:
    """``valid`` is the first task's validation set with tasks; ``task_valid`` the other
    tasks' (their loss is logged); ``sampler`` draws each epoch's examples across tasks."""

    vocab: Vocabulary
    train: Dataset
    valid: Dataset | None
    sampler: TaskSampler | None = None
    task_valid: dict[str, Dataset] = field(default_factory=dict)


def prepare_data(config: Config, dist: Distributed, resume_from: Path | None) -> TrainingData:
    """Reads, tokenizes and encodes ``config.data``; ``resume_from`` (a checkpoint directory)
    supplies the tokenizers and vocabularies of a resumed run."""
    d = config.data
    tasks = load_tasks(d) if d.tasks else None
    if tasks:
        train_corpus, valid_corpus = merged([task.train for task in tasks]), None
    else:
        train_corpus, valid_corpus = load_training_data(d)

    def tokenized(src_tok, tgt_tok) -> list[TokenizedCorpus]:
        if tasks:  # each task's sources behind its tag
            return [tokenize_tagged(task.train, src_tok, tgt_tok, task.tag) for task in tasks]
        return [tokenize_corpus(train_corpus, src_tok, tgt_tok)]

    if resume_from is not None:
        vocab = Vocabulary(
            load_tokenizer(d, resume_from, "src"), load_tokenizer(d, resume_from, "tgt"),
            Vocab.load(resume_from / "src_vocab.json"), Vocab.load(resume_from / "tgt_vocab.json"),
        )
        parts = tokenized(vocab.src_tokenizer, vocab.tgt_tokenizer)
    else:
        built = None
        if dist.is_main:  # one process builds; the others receive the same
            log.info("building tokenizers and vocabularies from %s", train_corpus.origin)
            src_tok, tgt_tok = build_tokenizers(d, train_corpus)
            parts = tokenized(src_tok, tgt_tok)
            built = vocabulary_from_tokens(d, merge_tokens(parts) if tasks else parts[0],
                                           src_tok, tgt_tok)
        vocab = dist.broadcast(built)
        if not dist.is_main:
            parts = tokenized(vocab.src_tokenizer, vocab.tgt_tokenizer)
    log.info("vocabulary: %d source, %d target types", len(vocab.src_vocab), len(vocab.tgt_vocab))
    return _encode(config, vocab, parts, tasks, valid_corpus)


def _encode(config: Config, vocab: Vocabulary, parts: list[TokenizedCorpus],
            tasks: list[Task] | None, valid_corpus) -> TrainingData:
    """The training and validation data as ids (and, with tasks, their sampler)."""
    d, copy = config.data, config.model.copy_attention
    if not tasks:
        train = encode_corpus(parts[0], vocab, d, "training data", copy)
        valid = (encode_corpus(valid_corpus, vocab, None, "validation data", copy)
                 if valid_corpus is not None else None)
        return TrainingData(vocab, train, valid)
    train, ranges = encode_tasks(parts, [task.name for task in tasks], vocab, d, copy)
    sampler = TaskSampler(ranges, [task.weight for task in tasks], config.train.seed)
    log.info("tasks: %s", ", ".join(
        f"{task.name} ({len(r):,} pairs, {share:.0%} of each epoch)"
        for task, r, share in zip(tasks, ranges, sampler.shares(), strict=True)))
    task_valid = {}
    for task in tasks:
        if task.valid is not None:
            tokens = tokenize_tagged(task.valid, vocab.src_tokenizer, vocab.tgt_tokenizer,
                                     task.tag)
            task_valid[task.name] = encode_corpus(tokens, vocab, None,
                                                  f"validation data ({task.name})", copy)
    valid = task_valid.pop(tasks[0].name, None)
    return TrainingData(vocab, train, valid, sampler, task_valid)
