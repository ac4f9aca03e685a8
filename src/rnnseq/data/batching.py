"""Length-bucketed batches by sentence count or token budget, and collation into tensors.

Bucketing is plain Python (the torch-free runtime uses it too); torch is imported where
tensors are made."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .vocab import BOS_ID, EOS_ID, PAD_ID

if TYPE_CHECKING:
    import torch


@dataclass
class Batch:
    """A padded batch. Shapes: ``src (B, S)``, ``src_lengths (B,)``, ``tgt_in``/``tgt_out (B, T)``.

    ``tgt_in`` is ``<s> y1 .. yn`` and ``tgt_out`` is ``y1 .. yn </s>``; ``index`` maps each row
    back to its position in the dataset. For copy attention, ``src_map (B, S)`` holds the source
    tokens' extended-vocabulary ids and ``tgt_out`` the target's (``rnnseq.data.extended``).
    """

    src: torch.Tensor
    src_lengths: torch.Tensor
    tgt_in: torch.Tensor | None
    tgt_out: torch.Tensor | None
    index: list[int]
    src_map: torch.Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return Batch(move(self.src), self.src_lengths, move(self.tgt_in), move(self.tgt_out),
                     self.index, move(self.src_map))

    @property
    def n_tgt_tokens(self) -> int:
        return 0 if self.tgt_out is None else int((self.tgt_out != PAD_ID).sum())

    def __len__(self) -> int:
        return len(self.index)


def pad(seqs: Sequence[Sequence[int]], min_len: int = 1) -> torch.Tensor:
    import torch

    width = max(min_len, max((len(s) for s in seqs), default=0))
    out = torch.full((len(seqs), width), PAD_ID, dtype=torch.long)
    for row, seq in enumerate(seqs):
        if seq:
            out[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return out


def collate(
    src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]] | None, index: list[int],
    src_map: Sequence[Sequence[int]] | None = None,
    tgt_ext: Sequence[Sequence[int]] | None = None,
) -> Batch:
    """Pad id sequences into a :class:`Batch`. Source rows may be empty (length 0). With copy
    attention, ``src_map`` and ``tgt_ext`` are both sides in extended-vocabulary ids."""
    import torch

    src_lengths = torch.tensor([len(s) for s in src], dtype=torch.long)
    tgt_in = tgt_out = None
    if tgt is not None:
        tgt_in = pad([[BOS_ID, *t] for t in tgt])
        tgt_out = pad([[*t, EOS_ID] for t in (tgt if tgt_ext is None else tgt_ext)])
    return Batch(pad(src), src_lengths, tgt_in, tgt_out, index,
                 None if src_map is None else pad(src_map))


def make_batches(
    src_lens: Sequence[int],
    tgt_lens: Sequence[int] | None,
    batch_size: int,
    batch_type: str = "sentences",
    shuffle: bool = False,
    seed: int = 0,
) -> list[list[int]]:
    """Group example indices into length-bucketed batches.

    Examples are sorted by length (target first, then source; ties broken at random when
    shuffling) and cut into batches of ``batch_size`` sentences, or of at most ``batch_size``
    padded tokens (``batch_type='tokens'``, counting the longer side). With ``shuffle`` the order
    of the batches is random, seeded by ``seed``, so a given seed always gives the same batches.
    """
    rng = random.Random(seed)
    n = len(src_lens)
    t_lens = tgt_lens if tgt_lens is not None else [0] * n
    noise = [rng.random() for _ in range(n)] if shuffle else [0.0] * n
    order = sorted(range(n), key=lambda i: (t_lens[i], src_lens[i], noise[i]))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        size = max(src_lens[i], t_lens[i] + 1, 1)
        if current:
            if batch_type == "tokens":
                full = max(longest, size) * (len(current) + 1) > batch_size
            else:
                full = len(current) >= batch_size
            if full:
                batches.append(current)
                current, longest = [], 0
        current.append(i)
        longest = max(longest, size)
    if current:
        batches.append(current)
    if shuffle:
        rng.shuffle(batches)
    return batches
