"""Masked, label-smoothed cross-entropy computed over real (non-pad) target positions only."""

from __future__ import annotations

import torch

from ..data.vocab import PAD_ID, UNK_ID


def label_smoothed_nll(
    lprobs: torch.Tensor, target: torch.Tensor, smoothing: float = 0.0,
    vocab_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``lprobs (N, V')`` (log-probabilities), ``target (N,)`` (no padding) -> (smoothed loss
    sum, NLL sum).

    The smoothed loss is ``(1 - eps) * NLL + eps * mean over the vocabulary of -log p``; the NLL
    sum (no smoothing) gives perplexity. With copy attention ``V'`` is the extended vocabulary
    and the mean runs over the first ``vocab_size`` ids, the target vocabulary: the smoothing
    mass goes to the same words in every sentence, not to a sentence's own copy-only ids.
    """
    nll = -lprobs.gather(-1, target[:, None]).squeeze(-1)
    if smoothing > 0:
        smooth = -lprobs[:, :vocab_size].mean(dim=-1)
        loss = (1.0 - smoothing) * nll + smoothing * smooth
    else:
        loss = nll
    return loss.sum(), nll.sum()


def sequence_loss(
    model, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor,
    tgt_out: torch.Tensor, smoothing: float = 0.0, src_map: torch.Tensor | None = None,
    coverage_weight: float = 0.0, scheduled=None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Teacher-forced loss of a batch: (smoothed loss sum, NLL sum, number of target tokens).

    The output layer and softmax run only on positions where ``tgt_out`` is not ``<pad>``.
    Copy attention needs ``src_map`` and ``tgt_out`` in extended ids (``Batch``). With coverage,
    ``coverage_weight`` (λ) times the coverage loss ``Σ_t Σ_i min(a_ti, c_ti)`` over real target
    positions is added to the loss (See et al. 2017, eq. 13), not to the NLL. ``scheduled``
    (:class:`~rnnseq.model.decoder.ScheduledInputs`) replaces some decoder inputs with the
    model's own predictions (scheduled sampling).
    """
    decoder = model.decoder
    enc = model.encode(src, src_lengths)
    state = decoder.init_state(enc, src_map)
    out = decoder.features(tgt_in, state, scheduled)
    mask = tgt_out != PAD_ID
    lprobs = decoder.log_probs(out, state, mask)
    loss, nll = label_smoothed_nll(lprobs, tgt_out[mask], smoothing, decoder.vocab_size)
    if out.coverage_loss is not None and coverage_weight:
        loss = loss + coverage_weight * out.coverage_loss[mask].sum()
    return loss, nll, int(mask.sum())


def word_dropout(ids: torch.Tensor, p: float, skip_first: bool = False) -> torch.Tensor:
    """``ids (B, T)`` with each real token replaced by ``<unk>`` with probability ``p``.

    Token-level dropout (Gal & Ghahramani 2016's dropout of whole embeddings; "word dropout" in
    Sennrich & Zhang 2019, "Revisiting Low-Resource Neural Machine Translation"): the model
    cannot count on any one input symbol, which regularises small-data training. On the decoder
    input it also makes the decoder lean on the source instead of its own history. Padding
    stays; ``skip_first`` keeps position 0 (the decoder's ``<s>``).
    """
    if p <= 0:
        return ids
    drop = (torch.rand(ids.shape, device=ids.device) < p) & (ids != PAD_ID)
    if skip_first:
        drop[:, 0] = False
    return ids.masked_fill(drop, UNK_ID)
