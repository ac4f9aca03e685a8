"""Attention scorers over encoder memory: Bahdanau (additive) and Luong dot/general/concat.

Each scorer splits its work in two: :meth:`keys` projects the memory once per source sentence,
and :meth:`forward` scores any number of queries against those keys.

Coverage (Tu et al. 2016, "Modeling Coverage for Neural Machine Translation"; See et al. 2017,
"Get To The Point", eq. 11): with ``coverage=True`` the score of source position ``i`` also sees
``c_i``, the sum of the attention it received at earlier steps, through a learned vector
``w_c`` added to its key::

    score_i = score(q, k_i + c_i w_c)

For additive attention that is See et al.'s ``v · tanh(W_q q + W_m m_i + w_c c_i)``; for the
dot-product scorers it adds ``c_i (q · w_c)``, so the query decides how much past attention
counts. ``w_c`` starts at zero, so a trained model that gains coverage computes what it did.
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

    def __init__(self) -> None:
        super().__init__()
        self.register_parameter("coverage_weight", None)  # w_c (key size,): enable_coverage

    def enable_coverage(self, key_size: int) -> None:
        self.coverage_weight = nn.Parameter(torch.zeros(key_size))

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        return memory

    def score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def coverage_score(self, query: torch.Tensor, keys: torch.Tensor,
                       coverage: torch.Tensor) -> torch.Tensor:
        """Scores with ``coverage (B, S)`` added to the keys as ``c_i w_c`` (dot products:
        linear in the key, so the term is computed apart)."""
        w = self.coverage_weight.to(query.dtype)
        return self.score(query, keys) + (query @ w)[:, :, None] * coverage[:, None, :]

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor,
        coverage: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if coverage is None:
            scores = self.score(query, keys)  # (B, T, S)
        else:
            scores = self.coverage_score(query, keys, coverage.to(query.dtype))
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

    def coverage_score(self, query, keys, coverage):
        q = self.query_proj(query)  # (B, T, A); coverage enters inside the tanh
        cov = coverage[:, None, :, None] * self.coverage_weight.to(q.dtype)  # (B, 1, S, A)
        return self.v(torch.tanh(q[:, :, None, :] + keys[:, None, :, :] + cov)).squeeze(-1)


def make_attention(kind: str, query_size: int, memory_size: int,
                   coverage: bool = False) -> Attention | None:
    if kind == "none":
        return None
    if kind == "luong_dot":
        if query_size != memory_size:
            raise ValueError("luong_dot attention needs equal decoder and encoder sizes")
        attention, key_size = DotAttention(), memory_size
    elif kind == "luong_general":
        attention, key_size = GeneralAttention(query_size, memory_size), query_size
    elif kind in ("luong_concat", "bahdanau"):
        attention = AdditiveAttention(query_size, memory_size, query_size)
        key_size = query_size
    else:
        raise ValueError(f"unknown attention {kind!r}")
    if coverage:
        attention.enable_coverage(key_size)
    return attention
