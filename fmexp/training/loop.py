"""The training loop: AdamW, linear warmup then a decay schedule, gradient clipping, EMA weights (with
a warmup of the decay), checkpoints, curve rows.

A run is resumable bit for bit on CPU: its checkpoint is its ``TrainState`` (``fmexp.training.state``):
the weights, the EMA weights, the optimizer and scheduler, the step, both RNG states, the curve rows
so far and the sums of the row in progress.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from fmexp.config.schema import TrainConfig
from fmexp.errors import SolverError, TrainingDiverged
from fmexp.flow.guidance import ClassLabels, Guided
from fmexp.flow.methods import Method
from fmexp.training.distributed import from_main, mean_over_ranks
from fmexp.training.launch import World
from fmexp.training.state import RowSums, TrainState, read_checkpoint

__all__ = ["DIVERGENCE_FACTOR", "EvalFn", "TrainResult", "train"]

EvalFn = Callable[[int, nn.Module], dict[str, float]]
"""Called at each eval step with the EMA model; returns extra columns for the curve row."""

DIVERGENCE_FACTOR = 100.0
log = logging.getLogger(__name__)
_AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class TrainResult:
    """The trained weights, their EMA (used for sampling), the curve rows and the wall time."""

    model: nn.Module
    ema: nn.Module
    rows: list[dict[str, float]]
    seconds: float
    steps_run: int

    @property
    def steps_per_second(self) -> float | None:
        """None for a run that had no step left to take."""
        return self.steps_run / self.seconds if self.steps_run and self.seconds > 0 else None


def _val_loss(method: Method, model: nn.Module, val: Tensor, seed: int, labels: ClassLabels | None = None) -> float:
    """The loss on a fixed held-out batch with fixed noise, so successive rows are comparable (a
    class-conditional model's under the batch's own labels)."""
    gen = torch.Generator(device=val.device).manual_seed(seed)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        field = model if labels is None else Guided(model, labels.val[: len(val)], labels.null)
        loss = float(method.loss(field, val, gen).mean())
    model.train(was_training)
    return loss


@dataclass
class _Step:
    """One optimizer step of ``train``: the batch drawn from the state's generator, the loss (the global
    batch's mean under DDP), the backward pass, clipping, the update and the EMA."""

    method: Method
    net: nn.Module
    data: Tensor
    config: TrainConfig
    share: slice | None
    transform: Callable[[Tensor, torch.Generator], Tensor] | None
    world: World
    labels: ClassLabels | None = None

    def __post_init__(self) -> None:
        self.params = [p for p in self.net.parameters() if p.requires_grad]

    def __call__(self, state: TrainState) -> None:
        cfg, gen, device = self.config, state.generator, self.data.device
        index = torch.randint(len(self.data), (cfg.batch_size,), generator=gen, device=device)
        batch = self.data[index]
        if self.transform is not None:
            batch = self.transform(batch, gen)
        field: Callable[[Tensor, Tensor], Tensor] = self.net
        if self.labels is not None:  # the batch's labels, some dropped to null: the conditional and null fields
            guided = self.labels.bind(self.net, index, gen)
            field = guided if self.share is None else Guided(self.net, guided.y[self.share], guided.null)
        amp_dtype = _AUTOCAST[cfg.precision]
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss_here = self.method.loss(field, batch, gen, self.share).float().mean()
        loss = mean_over_ranks(loss_here, self.world)  # the global batch's: every rank sees the same value
        step = state.step + 1
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"non-finite loss {loss.item()} at step {step}; lower train.lr or set train.grad_clip"
            )
        if step == 1:
            state.initial_loss = loss.item()
        opt, scaler, sums = state.optimizer, state.scaler, state.sums
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss_here).backward()  # DDP averages the ranks' gradients
        scaler.unscale_(opt)
        norm = nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None], foreach=True)
        if cfg.grad_clip > 0:
            nn.utils.clip_grads_with_norm_(self.params, cfg.grad_clip, norm, foreach=True)
            sums.clipped += norm > cfg.grad_clip
        scaler.step(opt)
        scaler.update()
        state.scheduler.step()
        state.ema.update()
        sums.loss += loss.detach()
        sums.norm += norm
        sums.count += 1
        state.step = step


def _curve_row(
    state: TrainState,
    method: Method,
    val: Tensor,
    seed: int,
    evaluate: EvalFn | None,
    world: World,
    labels: ClassLabels | None = None,
) -> dict[str, float]:
    """The curve row at the state's step: the training columns since the last row, the EMA weights'
    validation loss, and ``evaluate``'s columns (rank 0 only). Raises ``TrainingDiverged`` if the
    loss grew past ``DIVERGENCE_FACTOR`` times its first value, or the curve's solve failed."""
    step = state.step
    row: dict[str, float] = {
        "step": step,
        **state.sums.means(),
        "val_loss": _val_loss(method, state.ema.module, val, seed, labels),
    }
    if row["train_loss"] > DIVERGENCE_FACTOR * state.initial_loss:
        raise TrainingDiverged(
            f"the training loss grew to {row['train_loss']:.4g} at step {step}, over {DIVERGENCE_FACTOR:g}"
            f" times its value at initialization, {state.initial_loss:.4g}; lower train.lr"
        )
    failure = None
    if evaluate is not None and world.main:
        state.ema.module.eval()
        try:
            row.update(evaluate(step, state.ema.module))
        except SolverError as e:
            failure = f"evaluating the curve at step {step}: {e}; lower train.lr"
    failure = from_main(failure, world)  # every rank stops at this row with rank 0's error, or none does
    if failure is not None:
        raise TrainingDiverged(failure)
    return row


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
    on_curve: Callable[[list[dict[str, float]]], None] | None = None,
    labels: ClassLabels | None = None,
) -> TrainResult:
    """Minimize ``method.loss`` over minibatches of ``data`` for ``config.steps`` steps.

    Each curve row holds the mean training loss, the mean global gradient norm (before clipping) and
    the fraction of steps clipped since the previous row, and the validation loss of the EMA weights.

    ``checkpoint`` is written every ``config.checkpoint_every`` steps and at the end; with ``resume``
    and an existing checkpoint, training continues from it exactly. ``model_spec`` (the model's
    name and constructor args) is stored in the checkpoint for ``load_model``. ``progress``
    defaults to showing a tqdm bar when stderr is a terminal. ``transform(batch, generator)`` maps
    each batch before the loss (the dequantization of images), drawing from the training generator.
    ``on_curve(rows)`` sees the curve so far on rank 0: at the start (a resumed run's rows) and after
    each new row (a live view: ``fmexp.pipeline.live``). With ``labels``, ``model`` is class-conditional,
    ``model(x, t, y)``: each batch is bound to its points' labels, a fraction dropped to the null class
    (classifier-free guidance's training, Ho and Salimans 2022); the validation loss is under ``labels.val``.

    In a process group of several ranks (``world``; ``fmexp.training.distributed``), the model trains
    under DistributedDataParallel: each rank draws the global batch of ``config.batch_size`` and puts
    its share through the model, and only rank 0 evaluates and writes the checkpoint.
    """
    device = data.device
    state = TrainState.fresh(model, config, seed, device, model_spec)
    if resume and checkpoint is not None and Path(checkpoint).exists():
        state.load_state_dict(read_checkpoint(checkpoint, map_location=device))
        if world.main:
            log.info("resuming seed %d from step %d of %s", seed, state.step, checkpoint)
    start = state.step
    if on_curve is not None and world.main:
        on_curve(state.rows)
    net = (
        model
        if world.size == 1
        else nn.parallel.DistributedDataParallel(
            model, device_ids=[torch.cuda.current_device()] if device.type == "cuda" else None
        )
    )
    step = _Step(
        method, net, data, config, None if world.size == 1 else world.share(config.batch_size), transform, world, labels
    )
    val = (val_data if val_data is not None else data)[: config.val_batch]
    if transform is not None:
        val = transform(val, torch.Generator(device=device).manual_seed(seed + 1))

    def save() -> None:
        if checkpoint is not None and world.main:
            state.save(checkpoint)

    net.train()
    show = (sys.stderr.isatty() if progress is None else progress) and world.main
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, disable=not show, desc="train")
    t_start = time.perf_counter()
    for _ in bar:
        step(state)
        if state.step % config.eval_every == 0 or state.step == config.steps:
            row = _curve_row(state, method, val, seed + 1, evaluate, world, labels)
            state.rows.append(row)
            if on_curve is not None and world.main:
                on_curve(state.rows)
            bar.set_postfix(loss=f"{row['train_loss']:.4f}", val=f"{row['val_loss']:.4f}")
            if not show and world.main:  # no bar (stderr is no terminal: DVC, CI, a queue): a log line per row
                extra = "".join(f" {k} {row[k]:.4g}" for k in ("nll", "nfe") if k in row)
                log.info(
                    "train seed %d step %d/%d: loss %.4g, val %.4g%s (%.1f s)",
                    seed,
                    state.step,
                    config.steps,
                    row["train_loss"],
                    row["val_loss"],
                    extra,
                    time.perf_counter() - t_start,
                )
            state.sums = RowSums.zeros(device)
        if config.checkpoint_every and state.step % config.checkpoint_every == 0 and state.step != config.steps:
            save()
    seconds = time.perf_counter() - t_start
    save()
    state.ema.module.eval()
    return TrainResult(
        model=model, ema=state.ema.module, rows=state.rows, seconds=seconds, steps_run=config.steps - start
    )
