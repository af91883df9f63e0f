"""The resumable state of one training run, and the checkpoint schema that it is.

``TrainState.state_dict()`` is what a checkpoint holds and ``load_state_dict`` what a resume reads, so
the two cannot drift apart; a new field is added here once. A finished run's checkpoint is its
``model.pt``: ``load_model`` rebuilds the network from the stored ``model_spec`` and EMA weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fmexp.config.plan import Plan, resolve
from fmexp.config.schema import RunConfig, TrainConfig
from fmexp.data.datasets import Dataset
from fmexp.errors import ArtifactError, ConfigError
from fmexp.runtime import artifacts
from fmexp.training.ema import EMA
from fmexp.training.schedules import lr_factor

__all__ = ["CHECKPOINT_KEYS", "RowSums", "TrainState", "read_checkpoint", "load_model", "load_trained"]

CHECKPOINT_KEYS = (
    "model_spec",
    "model_state",
    "ema_state",
    "ema_weights",
    "optimizer",
    "scheduler",
    "scaler",
    "generator",
    "torch_rng",
    "step",
    "rows",
    "initial_loss",
    "sums",
)
"""The keys of a checkpoint, in the order written (the same since b391f47, whose files still load)."""


@dataclass
class RowSums:
    """Sums over the steps since the last curve row, kept on the device: the finiteness check is the
    one host synchronisation per step. A checkpoint holds them, so a resumed run writes the same rows."""

    loss: Tensor
    norm: Tensor
    clipped: Tensor
    count: int = 0

    @classmethod
    def zeros(cls, device: torch.device) -> RowSums:
        return cls(torch.zeros((), device=device), torch.zeros((), device=device), torch.zeros((), device=device))

    def means(self) -> dict[str, float]:
        """The curve row's training columns: mean loss, mean gradient norm, fraction of steps clipped."""
        return {
            "train_loss": float(self.loss) / self.count,
            "grad_norm": float(self.norm) / self.count,
            "clipped": float(self.clipped) / self.count,
        }


@dataclass
class TrainState:
    """The model, its EMA, the optimizer, scheduler and gradient scaler, the training generator, the
    step, the curve rows and the row sums of one run: everything ``train`` resumes from."""

    model: nn.Module
    config: TrainConfig
    generator: torch.Generator
    model_spec: dict[str, Any] = field(default_factory=dict)
    step: int = 0
    rows: list[dict[str, float]] = field(default_factory=list)
    initial_loss: float = math.nan  # the untrained network's loss: the scale that a diverging run leaves behind

    def __post_init__(self) -> None:
        cfg, device = self.config, self.generator.device
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda i: lr_factor(i, cfg.warmup_steps, cfg.steps, cfg.lr_schedule)
        )
        self.ema = EMA(self.model, cfg.ema_decay)
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
        self.sums = RowSums.zeros(device)

    @classmethod
    def fresh(
        cls,
        model: nn.Module,
        config: TrainConfig,
        seed: int,
        device: torch.device,
        model_spec: dict[str, Any] | None = None,
    ) -> TrainState:
        """The state before step 1, its training generator seeded with ``seed``."""
        return cls(model, config, torch.Generator(device=device).manual_seed(seed), model_spec or {})

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint: every key of ``CHECKPOINT_KEYS``, with torch's global RNG state."""
        state = {
            "model_spec": self.model_spec,
            "model_state": self.model.state_dict(),
            "ema_state": self.ema.state_dict(),
            "ema_weights": self.ema.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "step": self.step,
            "rows": self.rows,
            "initial_loss": self.initial_loss,
            "sums": {"tensors": [self.sums.loss, self.sums.norm, self.sums.clipped], "count": self.sums.count},
        }
        assert tuple(state) == CHECKPOINT_KEYS
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint written by ``state_dict``."""
        device = self.generator.device
        self.model.load_state_dict(state["model_state"])
        self.ema.load_state_dict(state["ema_state"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:  # empty for a disabled (fp32 or bf16) scaler
            self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.rows, self.step = list(state["rows"]), int(state["step"])
        self.initial_loss = float(state["initial_loss"])
        loss, norm, clipped = (x.to(device) for x in state["sums"]["tensors"])
        self.sums = RowSums(loss, norm, clipped, int(state["sums"]["count"]))

    def save(self, path: str | Path) -> None:
        artifacts.save_torch(path, self.state_dict())


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint's state; ``ArtifactError`` naming the file if it is not a fmexp checkpoint."""
    state = artifacts.load_torch(path, map_location=map_location)
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise ArtifactError(f"{path}: not a fmexp checkpoint: it lacks {missing}; rerun the train stage that writes it")
    if int(state["step"]) > 0 and not math.isfinite(float(state["initial_loss"])):
        raise ArtifactError(
            f"{path}: its initial_loss is {state['initial_loss']}, not the untrained network's loss, so a resumed"
            " run could not detect divergence; delete it and rerun the train stage"
        )
    return state


def load_model(path: str | Path, map_location: str | torch.device = "cpu", *, steps: int | None = None) -> nn.Module:
    """Rebuild a checkpoint's model from its stored spec and load its EMA weights, in eval mode. With
    ``steps``, a checkpoint trained for fewer steps is refused with ``ConfigError``."""
    from fmexp.networks.models import build_model

    state = read_checkpoint(path, map_location=map_location)
    if steps is not None and int(state["step"]) < steps:
        raise ConfigError(
            f"{path} was trained for {state['step']} steps, short of train.steps={steps}: its run was cut short"
            " or the config changed since. Rerun the train stage (`dvc repro`, or `fmexp train`)"
        )
    spec = dict(state["model_spec"])
    if "name" in spec and "_target_" not in spec:  # a checkpoint written before _target_ specs: a registered name
        spec["_target_"] = spec.pop("name")
    try:
        model = build_model(spec, key=f"{path}: model_spec")
    except ConfigError as e:
        raise ConfigError(f"{e}; the checkpoint's model cannot be rebuilt: restore that code, or retrain") from None
    model.load_state_dict(state["ema_weights"])
    return model.to(map_location).eval()


def load_trained(run: RunConfig, data: Dataset, path: str | Path) -> tuple[Plan, nn.Module]:
    """The run's decisions and its trained (EMA) network from ``path``, on the run's device;
    ``ConfigError`` if the network was trained for fewer than ``train.steps`` steps."""
    plan = resolve(run, data)
    return plan, load_model(path, map_location=plan.device, steps=run.train.steps)
