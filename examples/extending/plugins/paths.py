"""A probability path of one's own: a subclass of ``fmexp.flow.paths.ProbabilityPath``."""

from __future__ import annotations

from torch import Tensor

from fmexp.flow.paths import ProbabilityPath


class PowerDecayPath(ProbabilityPath):
    """``a_t = t``, ``sigma_t = sigma_min + (1 - sigma_min) (1 - t)^p``: the noise decays as a power of the
    time left. ``p = 1`` is the paper's OT path (eq. 20-22); a larger ``p`` removes the noise sooner.
    The std is 1 at t=0 and ``sigma_min`` at t=1; for ``p >= 1`` the field stays finite at both ends."""

    def __init__(self, sigma_min: float = 1e-4, p: float = 2.0) -> None:
        if not 0.0 <= sigma_min < 1.0 or p < 1.0:
            raise ValueError(f"need 0 <= sigma_min < 1 and p >= 1, got sigma_min={sigma_min}, p={p}")
        self.sigma_min, self.p = float(sigma_min), float(p)

    def schedule(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        c, left = 1.0 - self.sigma_min, 1.0 - t
        sigma = self.sigma_min + c * left**self.p
        dsigma = -self.p * c * left ** (self.p - 1.0)
        return t, sigma, t.new_ones(()).expand_as(t), dsigma
