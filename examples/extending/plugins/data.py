"""A dataset of one's own: a callable ``(n, numpy Generator) -> (n, d) array``, its arguments from the
``_target_`` mapping. fmexp draws the train and test splits from two independent streams of
``data.seed``, as for its own 2-D datasets."""

from __future__ import annotations

import numpy as np


def ring(n: int, rng: np.random.Generator, radius: float = 2.0, width: float = 0.1) -> np.ndarray:
    """Points on a circle of ``radius``, blurred radially by Gaussian noise of std ``width``."""
    angle = rng.uniform(0.0, 2.0 * np.pi, n)
    r = radius + width * rng.standard_normal(n)
    return np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)
