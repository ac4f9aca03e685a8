"""Tokenizers behind one interface: ``encode(text) -> tokens`` and ``decode(tokens) -> text``.

Every tokenizer first passes its input through its side's
:class:`~rnnseq.data.normalize.TextNormalizer` (strip, lowercase if configured, Unicode normal
form), and recomposes decoded text when that form decomposes; below, ``x`` is normalized text.

* ``char``: every character is a token (spaces included); ``decode(encode(x)) == x``.
* ``word``: whitespace-separated tokens; decoding joins with single spaces.
* ``sentencepiece``: a SentencePiece model trained on the training data and saved in the model
  directory. It is trained with identity normalisation (ours comes first), so
  ``decode(encode(x)) == x`` for text whose characters were seen in training (and for any text
  when byte fallback is on, which it is for vocabularies of 512 pieces or more).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from ..config import DataConfig
from ..fileio import atomic_write_bytes
from .normalize import DEFAULT, TextNormalizer, side_normalizer


class Tokenizer(Protocol):
    kind: str
    normalizer: TextNormalizer

    def encode(self, text: str) -> list[str]: ...

    def decode(self, tokens: list[str]) -> str: ...

    def save(self, directory: Path, side: str) -> None: ...


class CharTokenizer:
    kind = "char"

    def __init__(self, normalizer: TextNormalizer = DEFAULT) -> None:
        self.normalizer = normalizer

    def encode(self, text: str) -> list[str]:
        return list(self.normalizer(text))

    def decode(self, tokens: list[str]) -> str:
        return self.normalizer.recompose("".join(tokens))

    def save(self, directory: Path, side: str) -> None:
        """Nothing to save: the config says all there is."""


class WordTokenizer:
    kind = "word"

    def __init__(self, normalizer: TextNormalizer = DEFAULT) -> None:
        self.normalizer = normalizer

    def encode(self, text: str) -> list[str]:
        return self.normalizer(text).split()

    def decode(self, tokens: list[str]) -> str:
        return self.normalizer.recompose(" ".join(tokens))

    def save(self, directory: Path, side: str) -> None:
        """Nothing to save: the config says all there is."""


class SentencePieceTokenizer:
    kind = "sentencepiece"

    def __init__(self, model_proto: bytes, normalizer: TextNormalizer = DEFAULT) -> None:
        import sentencepiece as spm

        self.model_proto = model_proto
        self.normalizer = normalizer
        self.processor = spm.SentencePieceProcessor(model_proto=model_proto)

    def __getstate__(self) -> dict:  # the processor itself cannot be pickled
        return {"model_proto": self.model_proto, "normalizer": self.normalizer}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["model_proto"], state["normalizer"])

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        model_type: str = "unigram",
        normalizer: TextNormalizer = DEFAULT,
        seed_sentencepiece_size: int = 1_000_000,
    ) -> SentencePieceTokenizer:
        import io

        import sentencepiece as spm

        texts = [t for t in map(normalizer, texts) if t]
        if not texts:
            raise ValueError("cannot train SentencePiece on empty data")
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_writer=model,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=1.0,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            byte_fallback=vocab_size >= 512,
            hard_vocab_limit=False,
            bos_id=-1,
            eos_id=-1,
            unk_id=0,
            pad_id=-1,
            input_sentence_size=2_000_000,
            shuffle_input_sentence=True,
            seed_sentencepiece_size=seed_sentencepiece_size,
            num_threads=2,
            minloglevel=2,
        )
        return cls(model.getvalue(), normalizer)

    def encode(self, text: str) -> list[str]:
        return self.processor.encode(self.normalizer(text), out_type=str)

    def decode(self, tokens: list[str]) -> str:
        return self.normalizer.recompose(self.processor.decode_pieces(list(tokens)))

    def save(self, directory: Path, side: str) -> None:
        atomic_write_bytes(directory / spm_filename(side), self.model_proto)


def spm_filename(side: str) -> str:
    return f"spm.{side}.model"


def build_tokenizer(
    kind: str,
    texts: Iterable[str] = (),
    *,
    normalizer: TextNormalizer = DEFAULT,
    vocab_size: int = 8000,
    model_type: str = "unigram",
) -> Tokenizer:
    """Make a tokenizer of ``kind``; SentencePiece is trained on ``texts`` (as normalized)."""
    if kind == "char":
        return CharTokenizer(normalizer)
    if kind == "word":
        return WordTokenizer(normalizer)
    if kind == "sentencepiece":
        return SentencePieceTokenizer.train(texts, vocab_size, model_type, normalizer)
    raise ValueError(f"unknown tokenizer {kind!r}; expected char, word or sentencepiece")


def load_tokenizer(cfg: DataConfig, directory: Path, side: str) -> Tokenizer:
    """Load the tokenizer of one side (``src``/``tgt``) of the model directory ``directory``
    whose data settings are ``cfg``."""
    kind = cfg.src_tokenizer if side == "src" else cfg.tgt_tokenizer
    normalizer = side_normalizer(cfg, side)
    if kind == "sentencepiece":
        path = directory / spm_filename(side)
        try:
            proto = path.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: SentencePiece model missing") from None
        try:
            return SentencePieceTokenizer(proto, normalizer)
        except RuntimeError as err:
            raise ValueError(f"{path}: not a valid SentencePiece model ({err})") from None
    return build_tokenizer(kind, normalizer=normalizer)
