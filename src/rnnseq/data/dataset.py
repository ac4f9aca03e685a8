"""From configured files to id sequences: read, tokenize, filter, build vocabularies."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..config import DataConfig
from .batching import Batch, collate
from .corpus import DataError, ParallelCorpus, filter_pairs, load_corpus
from .extended import extend_target, source_map
from .normalize import side_normalizer
from .tokenizers import Tokenizer, build_tokenizer
from .vocab import Vocab

log = logging.getLogger("rnnseq")


@dataclass
class Vocabulary:
    """Tokenizers and vocabularies of both sides."""

    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    src_vocab: Vocab
    tgt_vocab: Vocab


@dataclass
class Dataset:
    """Id sequences (no ``<s>``/``</s>``) with the strings they came from; for copy attention
    also both sides in extended-vocabulary ids (``rnnseq.data.extended``)."""

    src: list[list[int]]
    tgt: list[list[int]]
    src_text: list[str]
    tgt_text: list[str]
    src_map: list[list[int]] | None = None
    tgt_ext: list[list[int]] | None = None

    def __len__(self) -> int:
        return len(self.src)

    def batch(self, index: list[int]) -> Batch:
        """The examples at ``index`` as a padded :class:`Batch`."""
        pick = lambda rows: None if rows is None else [rows[i] for i in index]  # noqa: E731
        return collate(pick(self.src), pick(self.tgt), index, pick(self.src_map),
                       pick(self.tgt_ext))


@dataclass
class TokenizedCorpus:
    """A corpus with both sides tokenized, before filtering."""

    corpus: ParallelCorpus
    src: list[list[str]]
    tgt: list[list[str]]


def tokenize_corpus(
    corpus: ParallelCorpus, src_tokenizer: Tokenizer, tgt_tokenizer: Tokenizer
) -> TokenizedCorpus:
    return TokenizedCorpus(corpus, [src_tokenizer.encode(s) for s in corpus.src],
                           [tgt_tokenizer.encode(t) for t in corpus.tgt])


def build_tokenizers(cfg: DataConfig, corpus: ParallelCorpus) -> tuple[Tokenizer, Tokenizer]:
    """Source and target tokenizers; SentencePiece models are trained on ``corpus``."""
    kw = dict(vocab_size=cfg.spm_vocab_size, model_type=cfg.spm_model_type)
    src_norm, tgt_norm = side_normalizer(cfg, "src"), side_normalizer(cfg, "tgt")
    if cfg.shared_vocab:  # the config insists both sides normalize alike
        shared = build_tokenizer(cfg.src_tokenizer, corpus.src + corpus.tgt,
                                 normalizer=src_norm, **kw)
        return shared, shared
    return (build_tokenizer(cfg.src_tokenizer, corpus.src, normalizer=src_norm, **kw),
            build_tokenizer(cfg.tgt_tokenizer, corpus.tgt, normalizer=tgt_norm, **kw))


def build_vocabulary(cfg: DataConfig, corpus: ParallelCorpus) -> Vocabulary:
    """Train tokenizers (SentencePiece) and build vocabularies from the training corpus."""
    src_tok, tgt_tok = build_tokenizers(cfg, corpus)
    return vocabulary_from_tokens(cfg, tokenize_corpus(corpus, src_tok, tgt_tok), src_tok,
                                  tgt_tok)


def vocabulary_from_tokens(
    cfg: DataConfig, tokens: TokenizedCorpus, src_tok: Tokenizer, tgt_tok: Tokenizer
) -> Vocabulary:
    """Vocabularies over the pairs that survive filtering (``min_freq``, ``max_vocab``)."""
    keep, _ = filter_pairs(tokens.src, tokens.tgt, cfg.max_len, cfg.max_src_len, cfg.max_tgt_len)
    src_tokens = [tokens.src[i][: cfg.max_src_len] for i in keep]
    tgt_tokens = [tokens.tgt[i][: cfg.max_tgt_len] for i in keep]
    if cfg.shared_vocab:
        src_vocab = tgt_vocab = Vocab.build(src_tokens + tgt_tokens, cfg.min_freq, cfg.max_vocab)
    else:
        src_vocab = Vocab.build(src_tokens, cfg.min_freq, cfg.max_vocab)
        tgt_vocab = Vocab.build(tgt_tokens, cfg.min_freq, cfg.max_vocab)
    return Vocabulary(src_tok, tgt_tok, src_vocab, tgt_vocab)


def encode_corpus(
    corpus: ParallelCorpus | TokenizedCorpus, vocab: Vocabulary, limits: DataConfig | None,
    what: str, copy: bool = False,
) -> Dataset:
    """Map to ids (tokenizing first if needed); drop (and log) empty pairs, and pairs longer
    than ``limits.max_len`` or truncate them to ``max_src_len`` / ``max_tgt_len`` (no limits:
    ``None``, as for validation data, which is scored whole). ``copy``: also map both sides
    to extended-vocabulary ids, for copy attention."""
    tokens = (corpus if isinstance(corpus, TokenizedCorpus)
              else tokenize_corpus(corpus, vocab.src_tokenizer, vocab.tgt_tokenizer))
    raw = tokens.corpus
    max_len, max_src, max_tgt = ((limits.max_len, limits.max_src_len, limits.max_tgt_len)
                                 if limits is not None else (None, None, None))
    keep, report = filter_pairs(tokens.src, tokens.tgt, max_len, max_src, max_tgt)
    log.info("%s (%s): %s", what, raw.origin, report)
    if not keep:
        raise DataError(f"{what} ({raw.origin}): no usable pairs left after filtering "
                        f"({report})")
    src = [tokens.src[i][:max_src] for i in keep]
    tgt = [tokens.tgt[i][:max_tgt] for i in keep]
    data = Dataset([vocab.src_vocab.encode(s) for s in src],
                   [vocab.tgt_vocab.encode(t) for t in tgt],
                   [raw.src[i] for i in keep], [raw.tgt[i] for i in keep])
    if copy:
        data.src_map, data.tgt_ext = [], []
        for s, t in zip(src, tgt, strict=True):
            ids, oov = source_map(s, vocab.tgt_vocab)
            data.src_map.append(ids)
            data.tgt_ext.append(extend_target(t, vocab.tgt_vocab, oov))
    return data


def load_training_data(cfg: DataConfig) -> tuple[ParallelCorpus, ParallelCorpus | None]:
    train = load_corpus(cfg.train_src, cfg.train_tgt, cfg.train_tsv, "training data")
    valid = None
    if cfg.valid_src or cfg.valid_tgt or cfg.valid_tsv:
        valid = load_corpus(cfg.valid_src, cfg.valid_tgt, cfg.valid_tsv, "validation data")
    return train, valid
