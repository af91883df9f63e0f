"""Time to quality on checkerboard: fmexp's recipe against a plain flow_matching-library loop, side by side.

    python benchmarks/time_to_quality.py        # needs the bench extra: pip install -c constraints.txt -e '.[bench]'

The anchor is the plain loop of the flow_matching library's 2-D example: ``AffineProbPath(CondOTScheduler())``,
an MLP 3x256 SiLU on ``[x, t]``, batch 1024, Adam at 1e-3, no EMA, uniform t, 20k steps. fmexp runs
``train()`` with the recipe that ``params.yaml`` sets for checkerboard's ``fm_ot`` at a ladder of step
budgets (a decaying schedule ends with its budget, so each budget is its own run). Both are scored
alike: exact NLL of the same 2,000 held-out points, dopri5 at rtol = atol = 1e-5, by
``fmexp.flow.likelihood``. Training seconds exclude the scoring.

Prints both NLL-against-seconds curves and the ratio of the time fmexp needs to reach the anchor's
final NLL to the anchor's time; writes them to ``benchmarks/results/time_to_quality.{csv,png}``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn

from fmexp.config.load import load_params, run_config, run_for
from fmexp.config.plan import build_method, model_spec
from fmexp.data.datasets import load_dataset
from fmexp.flow.likelihood import log_likelihood
from fmexp.networks.models import build_model
from fmexp.training.loop import train

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
ANCHOR_STEPS = 20_000
ANCHOR_EVALS = (2_500, 5_000, 10_000, 15_000, 20_000)
BUDGETS = (
    4_000,
    6_000,
    8_000,
    10_000,
    12_000,
)  # fmexp step budgets around the crossing; the recipe's train.steps is 6000


def nll(v, test: Tensor, prior_std: float = 1.0) -> float:
    return float(-log_likelihood(v, test, prior_std=prior_std, rtol=1e-5, atol=1e-5).logp.mean())


class AnchorMLP(nn.Module):
    """The flow_matching example's field: an MLP 3x256 SiLU on the concatenation ``[x, t]``."""

    def __init__(self, dim: int = 2, width: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim + 1, width),
            nn.SiLU(),
            nn.Linear(width, width),
            nn.SiLU(),
            nn.Linear(width, width),
            nn.SiLU(),
            nn.Linear(width, dim),
        )

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.net(torch.cat([x, t.reshape(-1, 1).expand(len(x), 1)], dim=1))


def anchor(train_data: Tensor, test: Tensor) -> list[dict[str, float]]:
    from flow_matching.path import AffineProbPath
    from flow_matching.path.scheduler import CondOTScheduler

    torch.manual_seed(0)
    path, model = AffineProbPath(scheduler=CondOTScheduler()), AnchorMLP()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rows, seconds = [], 0.0
    for step in range(1, ANCHOR_STEPS + 1):
        start = time.perf_counter()
        x_1 = train_data[torch.randint(len(train_data), (1024,))]
        x_0, t = torch.randn_like(x_1), torch.rand(len(x_1))
        sample = path.sample(x_0=x_0, x_1=x_1, t=t)
        loss = (model(sample.x_t, sample.t) - sample.dx_t).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        seconds += time.perf_counter() - start
        if step in ANCHOR_EVALS:
            rows.append({"who": "anchor", "steps": step, "seconds": seconds, "nll": nll(model.eval(), test)})
            model.train()
            print(f"anchor  {step:6d} steps {seconds:7.1f} s  NLL {rows[-1]['nll']:.3f}", flush=True)
    return rows


def fmexp_recipe(data, test: Tensor) -> list[dict[str, float]]:
    run = run_for(load_params(ROOT / "params.yaml"), "checkerboard", "fm_ot", 0)
    rows = []
    for steps in BUDGETS:
        cfg = run_config(run, [f"train.steps={steps}", "train.eval_every=1000000000"], __file__).train
        torch.manual_seed(0)
        spec = model_spec(run.model, data)
        method = build_method(run, data)
        result = train(method, build_model(**spec), data.train, cfg, seed=0, progress=False)
        rows.append(
            {
                "who": "fmexp",
                "steps": cfg.steps,
                "seconds": result.seconds,
                "nll": nll(method.velocity(result.ema), test, method.path.prior_std),
            }
        )
        print(
            f"fmexp   {cfg.steps:6d} steps {result.seconds:7.1f} s  NLL {rows[-1]['nll']:.3f}  "
            f"(batch {cfg.batch_size}, lr {cfg.lr} {cfg.lr_schedule}, EMA {cfg.ema_decay}, t {cfg.time_sampler})",
            flush=True,
        )
    return rows


def main() -> None:
    data = load_dataset("checkerboard", n_train=50_000, n_test=2_000, seed=0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; exact NLL of 2,000 held-out points, "
        "dopri5 1e-5;"
        " checkerboard entropy log 32 = 3.466 nats"
    )
    rows = fmexp_recipe(data, data.test) + anchor(data.train, data.test)
    df = pd.DataFrame(rows)
    target = df[df.who == "anchor"].iloc[-1]
    reached = df[(df.who == "fmexp") & (df.nll <= target.nll)]
    OUT.mkdir(parents=True, exist_ok=True)
    df.to_csv(OUT / "time_to_quality.csv", index=False)
    if len(reached):
        first = reached.iloc[0]
        print(
            f"time to the anchor's NLL {target.nll:.3f}: fmexp {first.seconds:.1f} s against the anchor's "
            f"{target.seconds:.1f} s,"
            f" ratio {first.seconds / target.seconds:.2f} (goal <= 0.25)"
        )
    else:
        best = df[df.who == "fmexp"].nll.min()
        print(f"fmexp did not reach the anchor's NLL {target.nll:.3f} in these budgets (best {best:.3f})")
    _plot(df, OUT / "time_to_quality.png")


def _plot(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for who, part in df.groupby("who"):
        ax.plot(part.seconds, part.nll, marker="o", label=who)
    ax.axhline(3.466, color="grey", ls=":", label="data entropy (log 32)")
    ax.set(
        xlabel="training seconds (2 CPU cores)", ylabel="held-out NLL (nats)", title="checkerboard: NLL against time"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
