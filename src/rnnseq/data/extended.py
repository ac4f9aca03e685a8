"""The extended vocabulary of copy attention (``model.copy_attention``; :mod:`rnnseq.model.copy`).

Each sentence extends the target vocabulary (``V`` ids) with its own source tokens that the
target vocabulary lacks, in order of first occurrence: the first such token gets id ``V``, the
next ``V + 1``, and so on. A source token the target vocabulary holds keeps its target id, so
attention to it adds to the same output as generating it. Tokens are matched by their text,
so this works with separate vocabularies too, whenever both sides tokenize a word alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from .vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Vocab


def source_map(src_tokens: Sequence[str], tgt_vocab: Vocab) -> tuple[list[int], list[str]]:
    """The extended ids of ``src_tokens`` and the sentence's out-of-vocabulary tokens (those
    with id ``len(tgt_vocab) + i`` are ``oov[i]``)."""
    ids = tgt_vocab.encode(src_tokens)
    oov: dict[str, int] = {}
    for pos, (token, i) in enumerate(zip(src_tokens, ids, strict=True)):
        if i == UNK_ID:
            ids[pos] = oov.setdefault(token, len(tgt_vocab) + len(oov))
    return ids, list(oov)


def extend_target(tgt_tokens: Sequence[str], tgt_vocab: Vocab, oov: Sequence[str]) -> list[int]:
    """Target ids in the sentence's extended vocabulary: a token outside the target vocabulary
    that the source holds gets its copy id; one the source lacks stays ``<unk>``."""
    copy_id = {token: len(tgt_vocab) + i for i, token in enumerate(oov)}
    return [copy_id.get(t, UNK_ID) if i == UNK_ID else i
            for t, i in zip(tgt_tokens, tgt_vocab.encode(tgt_tokens), strict=True)]


def decode_extended(ids: Sequence[int], tgt_vocab: Vocab, oov: Sequence[str]) -> list[str]:
    """Output ids (extended) to tokens: the target vocabulary's, or the copied source token's;
    like :meth:`Vocab.decode`, stops at ``</s>`` and skips ``<pad>`` and ``<s>``."""
    size = len(tgt_vocab)
    out: list[str] = []
    for i in ids:
        if i == EOS_ID:
            break
        if i not in (PAD_ID, BOS_ID):
            out.append(tgt_vocab.itos[i] if i < size else oov[i - size])
    return out
