"""Sampling: draw each output token from the model's distribution instead of taking the most
probable one (``rnnseq translate --sample``).

At each step the row's log-probabilities (after the decoding rules) are divided by the
temperature ``T``, cut to the ``top_k`` most probable tokens (Fan et al. 2018, "Hierarchical
Neural Story Generation") and then to the smallest set whose probability reaches ``top_p``
(nucleus sampling: Holtzman et al. 2020, "The Curious Case of Neural Text Degeneration"), and
renormalised:

    p'(y) ∝ exp(log p(y) / T)   for y in the kept set, 0 elsewhere

``T → 0`` approaches greedy search (``T = 0`` is greedy). Every output row has a random stream of
its own, seeded from ``(seed, input line, sample number)``, so a line's samples do not depend
on the other lines in its batch, on the batch size or on how the input was split. A sample's
score is the model's own log-probability of it (untempered, uncut), with the length penalty.
Torch is imported where a sample is drawn, so the options can be read without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Sampling:
    """How to sample: ``top_k`` (0 = no cut), ``top_p`` (1 = no cut), ``temperature`` and
    ``seed``."""

    top_k: int = 0
    top_p: float = 1.0
    temperature: float = 1.0
    seed: int = 0

    @classmethod
    def given(cls, **options) -> Sampling:
        """Sampling with the ``options`` that are not None; the others keep their defaults."""
        return cls(**{k: v for k, v in options.items() if v is not None})

    def __post_init__(self) -> None:
        from ..errors import UsageError

        if self.top_k < 0:
            raise UsageError(f"top-k must be >= 0 (0 = no cut), got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise UsageError(f"top-p must be in (0, 1], got {self.top_p}")
        if not self.temperature >= 0.0:
            raise UsageError(f"temperature must be >= 0, got {self.temperature}")


def truncate(log_probs: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """``log_probs (R, V)`` with every token outside the ``top_k`` most probable, and outside
    the smallest most-probable set whose probability reaches ``top_p``, set to ``-inf``. The
    most probable token is always kept."""
    import torch

    out = log_probs.clone()
    vocab = out.shape[-1]
    if 0 < top_k < vocab:
        kth = out.topk(top_k, dim=-1).values[:, -1:]
        out[out < kth] = float("-inf")
    if top_p < 1.0:
        ordered, order = out.sort(dim=-1, descending=True)
        probs = torch.softmax(ordered.float(), dim=-1)
        before = probs.cumsum(dim=-1) - probs  # probability of the tokens ranked above
        drop = before >= top_p
        drop[:, 0] = False
        out.scatter_(1, order, ordered.masked_fill(drop, float("-inf")))
    return out


class Sampler:
    """``choose(log_probs, rows)`` for :func:`rnnseq.inference.search.greedy_search`: one
    draw per row from that row's own generator. ``streams[r]`` is ``(input line, sample
    number)`` of starting row ``r``."""

    def __init__(self, sampling: Sampling, streams: Sequence[tuple[int, int]]) -> None:
        import torch

        self.sampling = sampling
        self.generators = []
        for line, sample in streams:
            g = torch.Generator()
            g.manual_seed(stream_seed(sampling.seed, line, sample))
            self.generators.append(g)

    def __call__(self, log_probs: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
        import torch

        s = self.sampling
        if s.temperature == 0.0:
            return log_probs.max(dim=-1).indices
        kept = truncate(log_probs.float() / s.temperature, s.top_k, s.top_p)
        cdf = torch.softmax(kept, dim=-1).cumsum(dim=-1)
        u = torch.cat([torch.rand(1, generator=self.generators[r]) for r in rows])
        u = u.to(cdf.device)[:, None] * cdf[:, -1:]
        # the first token whose cumulative probability exceeds u: never one of probability 0
        return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=cdf.shape[-1] - 1)


def stream_seed(seed: int, line: int, sample: int) -> int:
    """A 63-bit seed for one output row, the same on every machine and Python version."""
    x = (seed * 0x9E3779B97F4A7C15 + line * 0xBF58476D1CE4E5B9 + sample * 0x94D049BB133111EB)
    x ^= x >> 31
    return (x * 0xD6E8FEB86659FD93) % (1 << 63)
