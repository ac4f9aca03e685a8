"""Scheduled sampling (Bengio et al. 2015, "Scheduled Sampling for Sequence Prediction with
Recurrent Neural Networks"): during training, each decoder input after ``<s>`` is the model's
own prediction at the previous position with probability ``ε(step)``, the reference otherwise,
so that the model learns to go on from its own mistakes (exposure bias).

``ε`` is 0 for ``train.scheduled_sampling_warmup`` steps, then rises towards ``m =
train.scheduled_sampling_max`` over ``S = train.scheduled_sampling_steps`` steps; with ``s`` the
steps since the warm-up (Bengio et al. decay the teacher-forcing probability ``1 - ε`` the same
three ways):

* ``linear``:          ``ε = m · min(1, s / S)``
* ``exponential``:     ``ε = m · (1 - 0.01^(s / S))``       (99 % of ``m`` at ``s = S``)
* ``inverse_sigmoid``: ``ε = m / (1 + exp(5 - 10 s / S))``  (half of ``m`` at ``s = S / 2``)

Where ``ε`` is 0 the step is plain teacher forcing (the batched decoder where the model allows
it); otherwise the decoder steps (:meth:`rnnseq.model.decoder.Decoder.features`). The draws
come from torch's global generator, whose state checkpoints keep, so resuming stays exact.
"""

from __future__ import annotations

import math

import torch

from ..config import TrainConfig
from ..data.vocab import PAD_ID
from ..errors import ConfigError
from ..model.decoder import ScheduledInputs


def sampling_rate(t: TrainConfig, step: int) -> float:
    """``ε`` at training step ``step`` (0-based: the number of updates done before it)."""
    if t.scheduled_sampling == "none":
        return 0.0
    if t.scheduled_sampling_max > 1.0:
        raise ConfigError(f"train.scheduled_sampling_max must be at most 1, got "
                          f"{t.scheduled_sampling_max}")
    s = step - t.scheduled_sampling_warmup
    if s <= 0:
        return 0.0
    m, x = t.scheduled_sampling_max, s / t.scheduled_sampling_steps
    if t.scheduled_sampling == "linear":
        return m * min(1.0, x)
    if t.scheduled_sampling == "exponential":
        return m * (1.0 - 0.01 ** x)
    return m / (1.0 + math.exp(5.0 - 10.0 * x))


def scheduled_inputs(tgt_in: torch.Tensor, rate: float, choice: str) -> ScheduledInputs | None:
    """Which of ``tgt_in (B, T)``'s inputs to replace at rate ``rate`` (never ``<s>`` or
    padding), and the uniform draws for sampled predictions; None when ``rate`` is 0."""
    if rate <= 0.0:
        return None
    draws = torch.rand(tgt_in.shape, device=tgt_in.device)
    replace = (draws < rate) & (tgt_in != PAD_ID)
    replace[:, 0] = False
    noise = torch.rand(tgt_in.shape, device=tgt_in.device) if choice == "sample" else None
    return ScheduledInputs(replace, noise)
