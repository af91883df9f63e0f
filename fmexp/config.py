"""The typed schema of ``params.yaml``: one dataclass per section."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """Optimization of one run: AdamW with linear warmup, gradient clipping and EMA weights."""

    steps: int = 2000
    batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    ema_decay: float = 0.995
    eval_every: int = 500  # rows of the convergence curve; the last step always gets one
    val_batch: int = 2048  # held-out points for the validation loss
    checkpoint_every: int = 0  # 0: only at the end
