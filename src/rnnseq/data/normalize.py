"""Text normalization: the one function every text passes through on its way into a model.

Training and validation corpora, SentencePiece training, ``rnnseq translate`` (files and
standard input) and the Python API all tokenize through a tokenizer, and every tokenizer starts
with its side's :class:`TextNormalizer`. So ``café`` typed composed (``é``, U+00E9) or
decomposed (``e`` + U+0301, as macOS file names and many web forms give it) reaches the model
as the same symbols, and a model directory carries its normalization in ``config.yaml``.

The forms are Unicode's (UAX #15):

* ``nfc`` (default): canonical composition; ``é`` is one character.
* ``nfd``: canonical decomposition; ``é`` becomes ``e`` + combining acute and a Hangul syllable
  its 2–3 jamo, so a character model sees a few dozen symbols instead of thousands.
* ``nfkc`` / ``nfkd``: as above, and compatibility characters are folded too (``ﬁ`` → ``fi``,
  full-width ``Ａ`` → ``A``, ``²`` → ``2``): for noisy text, at the price of distinctions.
* ``none``: the text as it comes (surrounding whitespace is still stripped).

Outputs of a side normalized with a decomposing form (``nfd``, ``nfkd``) are recomposed to NFC
after decoding, since that is how people and other programs expect to read text.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import get_args

from ..config import DataConfig, Normalization

NORMALIZATIONS: tuple[str, ...] = get_args(Normalization)
DECOMPOSING = ("nfd", "nfkd")


@dataclass(frozen=True)
class TextNormalizer:
    """Strip, optionally lowercase, then bring to one Unicode normal form."""

    form: Normalization = "nfc"
    lowercase: bool = False

    def __post_init__(self) -> None:
        if self.form not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {self.form!r}; expected one of "
                             f"{', '.join(NORMALIZATIONS)}")

    def __call__(self, text: str) -> str:
        """``text`` as the model sees it."""
        text = text.strip()
        if self.lowercase:
            text = text.lower()
        if self.form != "none":
            text = unicodedata.normalize(self.form.upper(), text)
        return text

    def recompose(self, text: str) -> str:
        """Decoded text for people: composed (NFC) again if this side was decomposed."""
        return unicodedata.normalize("NFC", text) if self.form in DECOMPOSING else text

    def reference(self, text: str) -> str:
        """A reference in the form the model's outputs take, for scoring them against it."""
        return self.recompose(self(text))


DEFAULT = TextNormalizer()  # NFC, case kept: what a config that says nothing gets


def side_normalizer(cfg: DataConfig, side: str) -> TextNormalizer:
    """The normalizer of one side (``src`` or ``tgt``) as the data config sets it."""
    if side not in ("src", "tgt"):
        raise ValueError(f"side must be 'src' or 'tgt', got {side!r}")
    lowercase = cfg.src_lowercase if side == "src" else cfg.tgt_lowercase
    return TextNormalizer(cfg.normalization(side), lowercase)
