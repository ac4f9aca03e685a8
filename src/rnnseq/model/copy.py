"""Copy attention: the pointer-generator's output distribution (See et al. 2017, "Get To The
Point: Summarization with Pointer-Generator Networks", eqs. 8-9; Gu et al. 2016, Vinyals et al.
2015).

At each step a generation probability, from the context ``c_t``, the decoder's top hidden state
``h_t`` and its input embedding ``x_t``::

    p_gen = sigmoid(w · [c_t; h_t; x_t] + b)

mixes the output layer's distribution with the attention over source positions::

    P(w) = p_gen P_vocab(w) + (1 - p_gen) Σ_{i : x_i = w} a_i

over an extended vocabulary: the target vocabulary (``V`` ids) followed by the sentence's
source tokens that it lacks (``rnnseq.data.extended``), so a word never seen in training can
still be written by copying it. A source token that is in the target vocabulary adds its
attention to that token's own id.
"""

from __future__ import annotations

import torch

# P(w) of an id no source position maps to is exactly p_gen P_vocab(w) > 0 inside the target
# vocabulary and 0 beyond it; the floor keeps log(0) out of the training loss only.
_FLOOR = 1e-30


def mixed_probs(
    logits: torch.Tensor, attention: torch.Tensor, p_gen: torch.Tensor, src_map: torch.Tensor,
    ext_size: int,
) -> torch.Tensor:
    """``logits (..., V)``, ``attention (..., S)``, ``p_gen (...)``, ``src_map (..., S)``
    (extended ids of the source positions) -> ``P (..., ext_size)`` in fp32, summing to 1.
    An empty source has nothing to copy from: there ``p_gen`` is 1."""
    attention = attention.float()
    nothing = attention.sum(dim=-1, keepdim=True) == 0
    gen = p_gen.float()[..., None].masked_fill(nothing, 1.0)
    probs = logits.new_zeros((*logits.shape[:-1], ext_size), dtype=torch.float32)
    probs[..., : logits.shape[-1]] = gen * torch.softmax(logits.float(), dim=-1)
    return probs.scatter_add(-1, src_map, (1.0 - gen) * attention.float())


def mixed_log_probs(
    logits: torch.Tensor, attention: torch.Tensor, p_gen: torch.Tensor, src_map: torch.Tensor,
    ext_size: int, floor: bool = True,
) -> torch.Tensor:
    """``log`` of :func:`mixed_probs`; with ``floor`` (training) no entry is ``-inf``."""
    probs = mixed_probs(logits, attention, p_gen, src_map, ext_size)
    return (probs.clamp_min(_FLOOR) if floor else probs).log()
