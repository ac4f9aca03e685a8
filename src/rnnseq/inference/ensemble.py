"""Ensembles: several models decode as one (``rnnseq translate A B C``).

At each step every member takes the same previous token and its own state, and their
next-token distributions are combined (Hinton's product vs. mixture of experts; for NMT see
e.g. Sutskever et al. 2014, Freitag et al. 2017, "Ensemble Distillation for NMT"):

* ``probability`` (default): the mean of the members' probabilities,
  ``log p(y) = logsumexp_m log p_m(y) - log M``;
* ``log-linear``: the normalised geometric mean, ``log p(y) = log_softmax(mean_m log p_m(y))``.

:class:`EnsembleState` is a second implementation of :class:`~rnnseq.inference.search.SearchState`
(a tuple of the members' states moved together), so greedy search, beam search, sampling and
every decoding rule work unchanged. The attention an ensemble reports is the mean of its
members' that have attention. Members must read and write text alike (same tokenizers and
target vocabulary); cells, sizes, attention, copy attention may differ. With copy attention in
some members only, the others give the copied (out-of-vocabulary) ids probability 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..config import MIXTURES
from ..config import EnsembleMixture as Mixture


@dataclass(frozen=True)
class EnsembleState:
    states: tuple

    @property
    def arrays(self):
        return self.states[0].arrays

    @property
    def batch_size(self) -> int:
        return self.states[0].batch_size

    def index_select(self, index: torch.Tensor) -> EnsembleState:
        return EnsembleState(tuple(s.index_select(index) for s in self.states))

    def reorder(self, index: torch.Tensor) -> EnsembleState:
        return EnsembleState(tuple(s.reorder(index) for s in self.states))


class EnsembleDecoder:
    """The members' decoders stepped together (a :class:`~rnnseq.inference.search.StepDecoder`)."""

    def __init__(self, decoders: list, mixture: Mixture = "probability") -> None:
        if mixture not in MIXTURES:
            raise ValueError(f"mixture must be one of {', '.join(MIXTURES)}, got {mixture!r}")
        self.decoders, self.mixture = decoders, mixture

    def step(self, prev: torch.Tensor, state: EnsembleState):
        outs = [d.step(prev, s) for d, s in zip(self.decoders, state.states, strict=True)]
        size = max(lp.shape[-1] for lp, _, _ in outs)
        lps = torch.stack([torch.nn.functional.pad(lp.float(), (0, size - lp.shape[-1]),
                                                   value=float("-inf")) for lp, _, _ in outs])
        if self.mixture == "probability":
            lp = torch.logsumexp(lps, dim=0) - math.log(len(outs))
        else:
            lp = torch.log_softmax(lps.mean(dim=0), dim=-1)
        weights = [w.float() for _, _, w in outs if w is not None]
        attention = torch.stack(weights).mean(dim=0) if weights else None
        return lp, EnsembleState(tuple(s for _, s, _ in outs)), attention


def check_members(bundles: list, paths: list[str]) -> None:
    """Refuse an ensemble whose members would read or write text differently, naming the two
    directories that disagree and how."""
    from ..config import task_tags
    from ..errors import UsageError

    first, first_path = bundles[0], paths[0]
    for bundle, path in zip(bundles[1:], paths[1:], strict=True):
        if bundle.tgt_vocab.itos != first.tgt_vocab.itos:
            raise UsageError(f"an ensemble's models must share the target vocabulary: {path} "
                             f"has {len(bundle.tgt_vocab)} target types, {first_path} "
                             f"{len(first.tgt_vocab)}" + _first_difference(
                                 first.tgt_vocab.itos, bundle.tgt_vocab.itos))
        if task_tags(bundle.config.data) != task_tags(first.config.data):
            raise UsageError(f"an ensemble's models must do the same tasks: {path} has "
                             f"{task_tags(bundle.config.data) or 'one task'}, {first_path} "
                             f"{task_tags(first.config.data) or 'one task'}")
        for side in ("src", "tgt"):
            a, b = getattr(first, f"{side}_tokenizer"), getattr(bundle, f"{side}_tokenizer")
            if _tokenizer_identity(a) != _tokenizer_identity(b):
                raise UsageError(f"an ensemble's models must tokenize alike: the "
                                 f"{'source' if side == 'src' else 'target'} tokenizer of "
                                 f"{path} ({_describe(b)}) differs from {first_path}'s "
                                 f"({_describe(a)})")


def _tokenizer_identity(tokenizer) -> tuple:
    return (type(tokenizer).__name__, getattr(tokenizer, "normalizer", None),
            getattr(tokenizer, "model_proto", None))


def _describe(tokenizer) -> str:
    name, normalizer, proto = _tokenizer_identity(tokenizer)
    extra = ", its own SentencePiece model" if proto is not None else ""
    return f"{name}, {normalizer}{extra}"


def _first_difference(a: list[str], b: list[str]) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"; id {i} is {x!r} in one, {y!r} in the other"
    return ""
