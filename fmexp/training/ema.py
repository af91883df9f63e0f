"""An exponential moving average of a model's weights, the weights that sample and score use."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from fmexp.training.schedules import ema_decay_at

__all__ = ["EMA"]


class EMA:
    """An exponential moving average of a model's floating-point parameters and buffers, updated in place
    by one ``torch._foreach_lerp_`` per step (no per-tensor Python loop); its decay is warmed up
    (``ema_decay_at``)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.updates = decay, 0
        self._pairs = list(zip(self._tensors(self.module), self._tensors(model), strict=True))

    @staticmethod
    def _tensors(model: nn.Module) -> list[Tensor]:
        return [t for t in (*model.parameters(), *model.buffers()) if t.dtype.is_floating_point]

    @torch.no_grad()
    def update(self) -> None:
        weight = 1.0 - ema_decay_at(self.decay, self.updates)
        torch._foreach_lerp_([a for a, _ in self._pairs], [b.detach() for _, b in self._pairs], weight)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
