"""Attention scorers over encoder memory: Bahdanau (additive) and Luong dot/general/concat.

Each scorer splits its work in two: :meth:`keys` projects the memory once per source sentence,
and :meth:`forward` scores any number of queries against those keys.
"""

from __future__ import annotations

import torch
from torch import nn


class Attention(nn.Module):
    """Scores ``query (B, T, Hq)`` against memory ``(B, S, Hm)``.

    ``forward`` returns ``context (B, T, Hm)`` and ``weights (B, T, S)``; the weights of each
    query sum to 1 over real positions and are exactly 0 on padding (``mask`` False). A row
    with no real position (an empty source) gets all-zero weights and a zero context.
    """

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        return memory

    def score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.score(query, keys)  # (B, T, S)
        scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        # An empty source gives softmax over all -inf = NaN; make those rows zero.
        weights = weights.masked_fill(~mask[:, None, :], 0.0)
        return torch.bmm(weights, memory), weights


class DotAttention(Attention):
    """Luong dot: ``score = q · m`` (needs equal sizes)."""

    def score(self, query, keys):
        return torch.bmm(query, keys.transpose(1, 2))


class GeneralAttention(Attention):
    """Luong general: ``score = q · (W m)``; ``W m`` is computed once per source."""

    def __init__(self, query_size: int, memory_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(memory_size, query_size, bias=False)

    def keys(self, memory):
        return self.proj(memory)

    def score(self, query, keys):
        return torch.bmm(query, keys.transpose(1, 2))


class AdditiveAttention(Attention):
    """Additive (Bahdanau; Luong concat): ``score = v · tanh(W_q q + W_m m)``."""

    def __init__(self, query_size: int, memory_size: int, attn_size: int) -> None:
        super().__init__()
        self.key_proj = nn.Linear(memory_size, attn_size, bias=False)
        self.query_proj = nn.Linear(query_size, attn_size, bias=True)
        self.v = nn.Linear(attn_size, 1, bias=False)

    def keys(self, memory):
        return self.key_proj(memory)

    def score(self, query, keys):
        q = self.query_proj(query)  # (B, T, A)
        return self.v(torch.tanh(q[:, :, None, :] + keys[:, None, :, :])).squeeze(-1)


def make_attention(kind: str, query_size: int, memory_size: int) -> Attention | None:
    if kind == "none":
        return None
    if kind == "luong_dot":
        if query_size != memory_size:
            raise ValueError("luong_dot attention needs equal decoder and encoder sizes")
        return DotAttention()
    if kind == "luong_general":
        return GeneralAttention(query_size, memory_size)
    if kind in ("luong_concat", "bahdanau"):
        return AdditiveAttention(query_size, memory_size, query_size)
    raise ValueError(f"unknown attention {kind!r}")
