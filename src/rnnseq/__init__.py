"""rnnseq: recurrent sequence-to-sequence models (RNN, LSTM, GRU encoder-decoders).

Public API::

    import rnnseq
    translator = rnnseq.load("model/best")
    translator.translate(["ein kleines Haus"])       # -> ["a small house"]

    config = rnnseq.Config.load("config.yaml")
    rnnseq.train(config)

Imports are lazy, so ``import rnnseq`` does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Config", "Translator", "load", "train", "__version__"]

if TYPE_CHECKING:
    from .config import Config
    from .inference.translator import Translator, load
    from .training.trainer import train


def __getattr__(name: str) -> Any:
    if name == "Config":
        from .config import Config

        return Config
    if name in ("Translator", "load"):
        from .inference import translator

        return getattr(translator, name)
    if name == "train":
        from .training.trainer import train

        return train
    raise AttributeError(f"module 'rnnseq' has no attribute {name!r}")
