"""Decoding rules that any search applies on top of the model: a minimum length, n-gram
blocking and the GNMT coverage penalty (``decode.min_length``, ``decode.block_ngram_repeat``,
``decode.block_ngram_ignore``, ``decode.coverage_penalty``).

* ``min_length``: ``</s>`` is ruled out until a hypothesis has that many tokens.
* ``block_ngram_repeat: n`` (Paulus et al. 2017, "A Deep Reinforced Model for Abstractive
  Summarization"): a token that would complete an n-gram the hypothesis already holds is ruled
  out, so no n-gram occurs twice. n-grams holding an ``ignore`` token (say punctuation) are
  never blocked.
* ``coverage_penalty: β`` (Wu et al. 2016, "Google's Neural Machine Translation System", eq. 14)
  adds to a finished hypothesis' score::

      cp = β Σ_i log(min(Σ_j a_ij, 1))

  over the real source positions ``i``, where ``a_ij`` is the attention output step ``j`` paid
  to position ``i``: outputs that leave part of the source unread score lower. (A position that
  got no attention at all counts as ``1e-10``, not ``-inf``.)

None of them breaks the beam search's exact early stop: ruling tokens out never raises a
log-probability, and ``cp <= 0``, so the bound an alive beam is held to still holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..data.vocab import EOS_ID


@dataclass(frozen=True)
class Rules:
    min_length: int = 0
    block_ngram_repeat: int = 0
    block_ignore: frozenset[int] = frozenset()
    coverage_penalty: float = 0.0

    def needs_history(self, t: int) -> bool:
        """Whether :meth:`rule_out` does anything at step ``t``."""
        return bool(self.block_ngram_repeat) or t < self.min_length

    def rule_out(self, log_probs: Any, histories: list[list[int]], t: int) -> None:
        """Set ``log_probs (rows, V)`` to ``-inf`` (in place) where a rule forbids the token;
        ``histories[r]`` holds row ``r``'s output so far, ``t`` tokens long."""
        if t < self.min_length:
            log_probs[:, EOS_ID] = float("-inf")
        if self.block_ngram_repeat:
            for row, history in enumerate(histories):
                banned = self.blocked(history)
                if banned:
                    log_probs[row, list(banned)] = float("-inf")

    def blocked(self, history: list[int]) -> set[int]:
        """Tokens that would repeat an n-gram of ``history`` (``n = block_ngram_repeat``)."""
        n, ignore = self.block_ngram_repeat, self.block_ignore
        if len(history) < n - 1:
            return set()
        prefix = tuple(history[len(history) - n + 1:]) if n > 1 else ()
        if ignore.intersection(prefix):
            return set()
        banned = set()
        for i in range(len(history) - n + 1):
            gram = history[i : i + n]
            if tuple(gram[:-1]) == prefix and gram[-1] not in ignore:
                banned.add(gram[-1])
        return banned

    def penalty(self, attention_sum: Any | None, src_length: int) -> float:
        """The coverage penalty of a hypothesis whose attention summed to ``attention_sum
        (S,)`` (an array; 0 when the penalty is off)."""
        if not self.coverage_penalty or attention_sum is None or src_length == 0:
            return 0.0
        covered = attention_sum[:src_length].tolist()
        return self.coverage_penalty * math.fsum(math.log(min(max(a, 1e-10), 1.0))
                                                 for a in covered)


NO_RULES = Rules()
