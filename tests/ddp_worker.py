"""One training run of ``fmexp.training.loop.train`` in float64, for tests/training/test_distributed.py: run it
with plain ``python -m tests.ddp_worker OUT [COUPLING] [FAIL_AT]`` (one process) or under ``torchrun
--nproc-per-node N`` (N ranks). With ``FAIL_AT``, rank 0's curve evaluation fails at that step."""

from __future__ import annotations

import sys

import torch

from fmexp.config.schema import TrainConfig
from fmexp.data.datasets import load_dataset
from fmexp.errors import SolverError, TrainingDiverged
from fmexp.flow.methods import make_method
from fmexp.networks.models import build_model
from fmexp.training.distributed import process_group
from fmexp.training.loop import train

CONFIG = TrainConfig(
    steps=30,
    batch_size=64,
    lr=1e-3,
    warmup_steps=5,
    lr_schedule="cosine",
    eval_every=10,
    val_batch=64,
    ema_decay=0.9,
    grad_clip=1.0,
    curve_points=0,
)


def _failing_at(step: int):
    """A curve evaluation whose solve fails at ``step`` (it runs on rank 0 only)."""

    def evaluate(at: int, model: torch.nn.Module) -> dict[str, float]:
        if at == step:
            raise SolverError(f"injected failure at step {at}")
        return {}

    return evaluate


def main(out: str, coupling: str = "ot", fail_at: str = "0") -> None:
    torch.manual_seed(0)
    model = build_model("mlp", dim=2, width=32, depth=2, time_embed_dim=8).double()
    data = load_dataset("checkerboard", 1000, 64, 0)
    with process_group(torch.device("cpu")) as ranks:
        try:
            result = train(
                make_method("fm", "ot", coupling, sigma_min=1e-4),
                model,
                data.train.double(),
                CONFIG,
                seed=0,
                val_data=data.test.double(),
                progress=False,
                world=ranks,
                evaluate=_failing_at(int(fail_at)) if int(fail_at) else None,
            )
        except TrainingDiverged as e:  # every rank reports what stopped it, and exits 1
            print(f"rank {ranks.rank}: {e}", flush=True)
            raise SystemExit(1) from None
    if ranks.main:
        torch.save({"model": model.state_dict(), "ema": result.ema.state_dict(), "rows": result.rows}, out)


if __name__ == "__main__":
    main(*sys.argv[1:])
