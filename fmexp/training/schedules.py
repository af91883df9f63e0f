"""Learning-rate schedules and the EMA decay's warm-up: pure functions of the step.

The lr schedules are registered by name (``lr_schedule`` in ``fmexp.registry``): each maps the
progress through the steps after the warm-up, in [0, 1], to a fraction of the peak rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from fmexp.registry import resolve

__all__ = ["constant", "cosine", "linear", "lr_factor", "ema_decay_at"]


def constant(progress: float) -> float:
    """The peak rate throughout."""
    return 1.0


def cosine(progress: float) -> float:
    """Half a cosine from the peak to 0 (Loshchilov and Hutter 2017)."""
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def linear(progress: float) -> float:
    """A straight line from the peak to 0."""
    return 1.0 - progress


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """The learning rate of step ``step`` (0-based) as a fraction of the peak: a linear warmup over
    ``warmup`` steps, then the registered ``schedule`` of the progress, reaching its end at ``total``."""
    decay: Callable[[float], float] = resolve("lr_schedule", schedule)
    if step < warmup:
        return (step + 1) / warmup
    if total <= warmup:
        return 1.0
    return decay((step - warmup) / (total - warmup))


def ema_decay_at(decay: float, n: int) -> float:
    """The EMA decay for update ``n`` (0-based): ``min(decay, (1 + n) / (10 + n))``. The warmup keeps a
    short run's average from being dominated by its initial weights: with a fixed 0.999, the average
    after 1000 steps still holds exp(-1) of the initialization."""
    return min(decay, (1 + n) / (10 + n))
