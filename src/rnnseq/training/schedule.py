"""Learning-rate schedules: constant, warmup + inverse square root, step decay, plateau, cosine.

All schedules start with an optional linear warm-up. ``plateau`` multiplies the rate by
``decay_factor`` after ``plateau_patience`` validations without improvement. ``cosine`` falls
from ``lr`` to ``min_lr`` along half a cosine between the end of the warm-up and ``max_steps``.
"""

from __future__ import annotations

import math

from ..config import TrainConfig
from ..metrics import is_better


class Schedule:
    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.plateau_scale = 1.0
        self.plateau_best: float | None = None
        self.plateau_bad = 0

    def lr(self, step: int) -> float:
        """Learning rate for optimizer step ``step`` (1-based)."""
        c = self.cfg
        warm = c.warmup_steps
        rate = c.lr
        if c.schedule == "inverse_sqrt":
            rate *= math.sqrt(max(warm, 1) / max(step, warm, 1))
        elif c.schedule == "step":
            rate *= c.decay_factor ** (max(step - warm, 0) // c.decay_every)
        elif c.schedule == "plateau":
            rate *= self.plateau_scale
        elif c.schedule == "cosine" and step >= warm:
            span = max((c.max_steps or step) - warm, 1)
            done = min(max(step - warm, 0) / span, 1.0)
            rate = c.min_lr + (rate - c.min_lr) * 0.5 * (1.0 + math.cos(math.pi * done))
        if warm and step < warm:
            rate *= step / warm
        return max(rate, c.min_lr) if step >= warm else rate

    def report(self, value: float, metric: str) -> bool:
        """Tell the schedule a validation result of ``metric``; returns True when the rate was
        decayed."""
        if self.cfg.schedule != "plateau":
            return False
        if is_better(metric, value, self.plateau_best):
            self.plateau_best, self.plateau_bad = value, 0
            return False
        self.plateau_bad += 1
        if self.plateau_bad > self.cfg.plateau_patience:
            self.plateau_scale *= self.cfg.decay_factor
            self.plateau_bad = 0
            return True
        return False

    def state_dict(self) -> dict:
        return {"plateau_scale": self.plateau_scale, "plateau_best": self.plateau_best,
                "plateau_bad": self.plateau_bad}

    def load_state_dict(self, state: dict) -> None:
        self.plateau_scale = state["plateau_scale"]
        self.plateau_best = state["plateau_best"]
        self.plateau_bad = state["plateau_bad"]
