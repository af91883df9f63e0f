"""Data-parallel training over the processes of a ``torchrun`` launch (``torch.distributed``, DDP).

Every rank draws the whole global batch, its times and its noise from the shared training generator,
and keeps its own rows (``World.share``): a run on N ranks makes the draws of a one-process run, and
DDP's gradient average over the ranks is the gradient of the global batch's mean loss. The two differ
only in the order of the floating-point sums. Only rank 0 writes files and evaluates the curve.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from fmexp.training.launch import World, world

__all__ = ["process_group", "mean_over_ranks", "from_main"]

T = TypeVar("T")


@contextmanager
def process_group(device: torch.device) -> Iterator[World]:
    """Join the launch's process group for the duration (NCCL on GPUs, gloo on CPU); with one process,
    nothing to join. On GPUs each process takes the GPU of its local rank as its current device, which
    ``torch.device("cuda")`` then means."""
    w = world()
    if w.size == 1 or dist.is_initialized():
        yield w
        return
    _die_with_launcher()
    if device.type == "cuda":
        torch.cuda.set_device(w.local_rank)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield w
    finally:
        dist.destroy_process_group()


def _die_with_launcher() -> None:
    """Ask Linux to SIGKILL this rank when its parent, the torchrun agent, dies. torchrun starts each
    rank in a session of its own, so ``kill -9`` of the agent (or of DVC's process group) would leave the
    ranks training, and writing checkpoints, beside the rerun."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the agent died before the request took hold
        os.kill(os.getpid(), signal.SIGKILL)


def mean_over_ranks(x: Tensor, w: World) -> Tensor:
    """The mean of a per-rank value over the ranks (a copy; ``x`` itself with one process)."""
    if w.size == 1:
        return x
    total = x.detach().clone()
    dist.all_reduce(total)  # SUM: gloo has no AVG
    return total / w.size


def from_main(obj: T, w: World) -> T:
    """Rank 0's ``obj`` on every rank (a picklable value; ``obj`` itself with one process): what rank 0
    alone computed, such as the outcome of evaluating the curve, so that every rank acts on it alike."""
    if w.size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
