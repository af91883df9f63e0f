"""The training loop: AdamW, linear warmup then a decay schedule, gradient clipping, EMA weights (with
a warmup of the decay), checkpoints, eval rows.

A run is resumable bit for bit on CPU: a checkpoint holds the weights, the EMA weights, the
optimizer and scheduler, the step, both RNG states and the curve rows so far.
"""

from __future__ import annotations

import copy
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from fmexp import artifacts
from fmexp.config import ConfigError, TrainConfig
from fmexp.distributed import mean_over_ranks
from fmexp.launch import World
from fmexp.methods import Method
from fmexp.ode import SolverError
from fmexp.registry import check_name

__all__ = ["LR_SCHEDULES", "DIVERGENCE_FACTOR", "EMA", "TrainingDiverged", "TrainResult", "ema_decay_at", "lr_factor", "train", "load_model"]

LR_SCHEDULES = ("constant", "cosine", "linear")

EvalFn = Callable[[int, nn.Module], dict[str, float]]
"""Called at each eval step with the EMA model; returns extra columns for the curve row."""


class TrainingDiverged(RuntimeError):
    """Training diverged at a known step: a non-finite loss, a loss grown past ``DIVERGENCE_FACTOR``
    times its value at the first step (the untrained network's), or a solver failure while evaluating the
    curve."""


DIVERGENCE_FACTOR = 100.0
log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """The trained weights, their EMA (used for sampling), the curve rows and the wall time."""

    model: nn.Module
    ema: nn.Module
    rows: list[dict[str, float]]
    seconds: float
    steps_run: int

    @property
    def steps_per_second(self) -> float:
        return self.steps_run / self.seconds if self.seconds > 0 else float("nan")


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """The learning rate of step ``step`` (0-based) as a fraction of the peak: a linear warmup over
    ``warmup`` steps, then ``constant``, or a ``cosine`` or ``linear`` decay reaching 0 after ``total`` steps."""
    check_name("lr schedule", schedule, LR_SCHEDULES)
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    progress = (step - warmup) / (total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress


def ema_decay_at(decay: float, n: int) -> float:
    """The EMA decay for update ``n`` (0-based): ``min(decay, (1 + n) / (10 + n))``. The warmup keeps a
    short run's average from being dominated by its initial weights: with a fixed 0.999, the average
    after 1000 steps still holds exp(-1) of the initialization."""
    return min(decay, (1 + n) / (10 + n))


class EMA:
    """An exponential moving average of a model's floating-point parameters and buffers, updated in place
    by one ``torch._foreach_lerp_`` per step (no per-tensor Python loop)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.updates = decay, 0
        self._pairs = [(a, b) for a, b in zip(self._tensors(self.module), self._tensors(model))]

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


def _val_loss(method: Method, model: nn.Module, val: Tensor, seed: int) -> float:
    """The loss on a fixed held-out batch with fixed noise, so successive rows are comparable."""
    gen = torch.Generator(device=val.device).manual_seed(seed)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        loss = float(method.loss(model, val, gen).mean())
    model.train(was_training)
    return loss


def train(
    method: Method,
    model: nn.Module,
    data: Tensor,
    config: TrainConfig,
    *,
    seed: int = 0,
    val_data: Tensor | None = None,
    evaluate: EvalFn | None = None,
    checkpoint: str | Path | None = None,
    model_spec: dict[str, Any] | None = None,
    resume: bool = False,
    progress: bool | None = None,
    transform: Callable[[Tensor, torch.Generator], Tensor] | None = None,
    world: World = World(),
) -> TrainResult:
    """Minimize ``method.loss`` over minibatches of ``data`` for ``config.steps`` steps.

    Each curve row holds the mean training loss, the mean global gradient norm (before clipping) and
    the fraction of steps clipped since the previous row, and the validation loss of the EMA weights.

    ``checkpoint`` is written every ``config.checkpoint_every`` steps and at the end; with ``resume``
    and an existing checkpoint, training continues from it exactly. ``model_spec`` (the model's
    name and constructor args) is stored in the checkpoint for ``load_model``. ``progress``
    defaults to showing a tqdm bar when stderr is a terminal. ``transform(batch, generator)`` maps
    each batch before the loss (the dequantization of images), drawing from the training generator.

    In a process group of several ranks (``world``; ``fmexp.distributed``), the model trains under
    DistributedDataParallel: each rank draws the global batch of ``config.batch_size`` and puts its share
    through the model, and only rank 0 evaluates and writes the checkpoint.
    """
    device = data.device
    gen = torch.Generator(device=device).manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: lr_factor(i, config.warmup_steps, config.steps, config.lr_schedule))
    ema = EMA(model, config.ema_decay)
    amp_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[config.precision]
    scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")
    rows: list[dict[str, float]] = []
    start, initial_loss = 0, math.nan

    def zero() -> Tensor:
        return torch.zeros((), device=device)

    # Sums over the steps since the last row, kept on the device: the finiteness check is the one host
    # synchronisation per step. A checkpoint holds them, so a resumed run writes the same rows.
    loss_sum, norm_sum, clipped, loss_count = zero(), zero(), zero(), 0
    if resume and checkpoint is not None and Path(checkpoint).exists():
        state = artifacts.load_torch(checkpoint, map_location=device)
        model.load_state_dict(state["model_state"])
        ema.load_state_dict(state["ema_state"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if state.get("scaler"):  # empty for a disabled (fp32 or bf16) scaler
            scaler.load_state_dict(state["scaler"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        rows, start = list(state["rows"]), int(state["step"])
        if world.main:
            log.info("resuming seed %d from step %d of %s", seed, start, checkpoint)
        initial_loss = float(state.get("initial_loss", math.nan))
        if "sums" in state:
            loss_sum, norm_sum, clipped = (x.to(device) for x in state["sums"]["tensors"])
            loss_count = int(state["sums"]["count"])
    net = model if world.size == 1 else nn.parallel.DistributedDataParallel(model, device_ids=[torch.cuda.current_device()] if device.type == "cuda" else None)
    share = None if world.size == 1 else world.share(config.batch_size)
    val = (val_data if val_data is not None else data)[: config.val_batch]
    if transform is not None:
        val = transform(val, torch.Generator(device=device).manual_seed(seed + 1))

    def save(step: int) -> None:
        if checkpoint is None or not world.main:
            return
        artifacts.save_torch(checkpoint, {
            "model_spec": model_spec or {},
            "model_state": model.state_dict(),
            "ema_state": ema.state_dict(),
            "ema_weights": ema.module.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "scaler": scaler.state_dict(),
            "generator": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "step": step,
            "rows": rows,
            "initial_loss": initial_loss,
            "sums": {"tensors": [loss_sum, norm_sum, clipped], "count": loss_count},
        })

    net.train()
    show = (sys.stderr.isatty() if progress is None else progress) and world.main
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, disable=not show, desc="train")
    params = [p for p in model.parameters() if p.requires_grad]
    t_start = time.perf_counter()
    for i in bar:
        step = i + 1
        batch = data[torch.randint(len(data), (config.batch_size,), generator=gen, device=device)]
        if transform is not None:
            batch = transform(batch, gen)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss_here = method.loss(net, batch, gen, share).float().mean()
        loss = mean_over_ranks(loss_here, world)  # the global batch's: every rank sees the same value
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"non-finite loss {loss.item()} at step {step}; lower train.lr or set train.grad_clip")
        if step == 1:  # the untrained network's loss: the scale that a diverging run leaves behind
            initial_loss = loss.item()
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss_here).backward()  # DDP averages the ranks' gradients
        scaler.unscale_(opt)
        grads = [p.grad for p in params if p.grad is not None]
        norm = nn.utils.get_total_norm(grads, foreach=True)
        if config.grad_clip > 0:
            nn.utils.clip_grads_with_norm_(params, config.grad_clip, norm, foreach=True)
            clipped += norm > config.grad_clip
        scaler.step(opt)
        scaler.update()
        sched.step()
        ema.update()
        loss_sum += loss.detach()
        norm_sum += norm
        loss_count += 1
        if step % config.eval_every == 0 or step == config.steps:
            row = {"step": step, "train_loss": float(loss_sum) / loss_count, "grad_norm": float(norm_sum) / loss_count,
                   "clipped": float(clipped) / loss_count, "val_loss": _val_loss(method, ema.module, val, seed + 1)}
            if row["train_loss"] > DIVERGENCE_FACTOR * initial_loss:
                raise TrainingDiverged(f"the training loss grew to {row['train_loss']:.4g} at step {step}, over {DIVERGENCE_FACTOR:g}"
                                       f" times its value at initialization, {initial_loss:.4g}; lower train.lr")
            if evaluate is not None and world.main:
                ema.module.eval()
                try:
                    row.update(evaluate(step, ema.module))
                except SolverError as e:
                    raise TrainingDiverged(f"evaluating the curve at step {step}: {e}; lower train.lr") from e
            rows.append(row)
            bar.set_postfix(loss=f"{row['train_loss']:.4f}", val=f"{row['val_loss']:.4f}")
            if not show and world.main:  # no bar (stderr is no terminal: DVC, CI, a queue): a log line per row
                extra = "".join(f" {k} {row[k]:.4g}" for k in ("nll", "nfe") if k in row)
                log.info("train seed %d step %d/%d: loss %.4g, val %.4g%s (%.1f s)", seed, step, config.steps, row["train_loss"],
                         row["val_loss"], extra, time.perf_counter() - t_start)
            loss_sum, norm_sum, clipped, loss_count = zero(), zero(), zero(), 0
        if config.checkpoint_every and step % config.checkpoint_every == 0 and step != config.steps:
            save(step)
    seconds = time.perf_counter() - t_start
    save(config.steps)
    ema.module.eval()
    return TrainResult(model=model, ema=ema.module, rows=rows, seconds=seconds, steps_run=config.steps - start)


def load_model(path: str | Path, map_location: str | torch.device = "cpu", *, steps: int | None = None) -> nn.Module:
    """Rebuild a checkpoint's model from its stored spec and load its EMA weights, in eval mode. With
    ``steps``, a checkpoint trained for fewer steps is refused with ``ConfigError``."""
    from fmexp.models import build_model

    state = artifacts.load_torch(path, map_location=map_location)
    if steps is not None and int(state.get("step", steps)) < steps:
        raise ConfigError(f"{path} was trained for {state['step']} steps, short of train.steps={steps}: its run was cut short"
                          " or the config changed since. Rerun the train stage (`dvc repro`, or `python -m fmexp train`)")
    spec = dict(state["model_spec"])
    model = build_model(spec.pop("name"), **spec)
    model.load_state_dict(state["ema_weights"])
    return model.to(map_location).eval()
