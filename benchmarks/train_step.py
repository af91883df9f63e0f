"""``train()`` per step against a bare forward, backward and Adam step (issue: the step at the hardware floor).

    python benchmarks/train_step.py

Both run in this process, interleaved in rounds (bare, train, bare, train, ...), on the same network
and batch: the bare step draws ``(x_t, t, u_t)`` once and then only does ``model(x_t, t)``, the MSE,
``backward`` and ``Adam.step``; ``train()`` does all of its work (batch sampling, the path, the loss,
clipping, the schedule, EMA; for digits the dequantization). The printed ratio is the median over rounds
of train / bare; it is what the README reports. Time it on an idle machine: other load, even niced, distorts both sides.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from fmexp.config.load import load_params, run_for
from fmexp.config.plan import model_spec
from fmexp.config.schema import TrainConfig
from fmexp.data.datasets import Dataset, load_dataset
from fmexp.flow.methods import make_method
from fmexp.networks.models import build_model
from fmexp.training.loop import train

ROOT = Path(__file__).resolve().parents[1]
CASES = {  # name: (model spec, data, batch)
    "mlp 3x256, batch 256": ({"_target_": "mlp", "dim": 2, "width": 256, "depth": 3}, "checkerboard", 256),
    "mlp 3x256, batch 1024": ({"_target_": "mlp", "dim": 2, "width": 256, "depth": 3}, "checkerboard", 1024),
    "mlp 3x256, batch 4096": ({"_target_": "mlp", "dim": 2, "width": 256, "depth": 3}, "checkerboard", 4096),
}


def pipeline_case(dataset: str) -> tuple[dict, str, int]:
    """The network and batch that ``params.yaml`` trains on ``dataset`` (its ``per_dataset`` entries applied)."""
    run = run_for(load_params(ROOT / "params.yaml"), dataset, "fm_ot", 0)
    return model_spec(run.model, load_dataset(dataset, n_train=100, n_test=10)), dataset, run.train.batch_size


def bare_ms(model: torch.nn.Module, x_1: torch.Tensor, steps: int) -> float:
    """Milliseconds per step of model, MSE, backward and Adam on one fixed batch."""
    method = make_method("fm", "ot")
    g = torch.Generator().manual_seed(0)
    x_0, t = torch.randn(x_1.shape, generator=g), torch.rand(len(x_1), generator=g)
    s = method.path.sample(x_0, x_1, t)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    start = time.perf_counter()
    for _ in range(steps):
        loss = (model(s.x_t, s.t) - s.u_t).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return 1000 * (time.perf_counter() - start) / steps


def train_ms(model: torch.nn.Module, data: Dataset, batch: int, steps: int) -> float:
    cfg = TrainConfig(steps=steps, batch_size=batch, lr=1e-4, eval_every=10**9, val_batch=batch)
    transform = data.model_space if data.levels else None
    result = train(make_method("fm", "ot"), model, data.train, cfg, progress=False, transform=transform)
    return 1000 * result.seconds / steps


def main(rounds: int = 5, steps: int = 100, only: str = "") -> None:
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median over {rounds} rounds of {steps} steps")
    pipeline = {
        f"{case[1]} model of params.yaml, b{case[2]}": case for case in map(pipeline_case, ("checkerboard", "digits"))
    }
    for name, (spec, dataset, batch) in {**CASES, **pipeline}.items():
        if only not in name:
            continue
        data = load_dataset(dataset, n_train=50_000, n_test=10)
        model = build_model(spec)
        x_1 = data.model_space(data.train[:batch], torch.Generator().manual_seed(0))
        bare_ms(model, x_1, 10), train_ms(model, data, batch, 10)  # warm-up
        bare, trained = [], []
        for _ in range(rounds):
            bare.append(bare_ms(model, x_1, steps))
            trained.append(train_ms(model, data, batch, steps))
        ratio = statistics.median(t / b for t, b in zip(trained, bare, strict=False))
        print(
            f"{name:24s} bare {statistics.median(bare):7.2f} ms  train() {statistics.median(trained):7.2f} ms  "
            f"ratio {ratio:5.2f}"
        )


if __name__ == "__main__":
    import sys

    main(only=sys.argv[1] if len(sys.argv) > 1 else "")
