"""The training loop: it learns, it resumes bit for bit, it refuses NaN, it writes atomically."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fmexp.config.schema import TrainConfig
from fmexp.data.datasets import load_dataset
from fmexp.errors import TrainingDiverged
from fmexp.flow.methods import make_method
from fmexp.networks.models import build_model
from fmexp.runtime import artifacts
from fmexp.training.loop import train
from fmexp.training.state import load_model

SPEC = {"_target_": "mlp", "dim": 2, "width": 64, "depth": 2}


def fresh_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(SPEC)


@pytest.fixture(scope="module")
def checkerboard():
    return load_dataset("checkerboard", n_train=4096, n_test=512, seed=0)


def test_short_run_lowers_the_loss(checkerboard) -> None:
    method = make_method("fm", "ot")
    cfg = TrainConfig(steps=300, batch_size=256, lr=2e-3, warmup_steps=10, eval_every=50, ema_decay=0.9)
    with torch.no_grad():
        untrained = float(method.loss(fresh_model(), checkerboard.test, torch.Generator().manual_seed(1)).mean())
    res = train(method, fresh_model(), checkerboard.train, cfg, val_data=checkerboard.test)
    assert [r["step"] for r in res.rows] == [50, 100, 150, 200, 250, 300]
    assert res.rows[-1]["val_loss"] < res.rows[0]["val_loss"] < untrained
    assert res.rows[-1]["train_loss"] < res.rows[0]["train_loss"]
    assert res.steps_run == 300 and res.steps_per_second == 300 / res.seconds  # its definition


@pytest.mark.parametrize("objective,path", [("fm", "ot"), ("sm", "vp")])
def test_resume_reproduces_an_uninterrupted_run(tmp_path: Path, checkerboard, objective: str, path: str) -> None:
    method = make_method(objective, path)
    cfg = TrainConfig(steps=40, batch_size=64, warmup_steps=5, eval_every=10, ema_decay=0.9)
    full = train(method, fresh_model(), checkerboard.train, cfg, seed=7, val_data=checkerboard.test)

    ckpt = tmp_path / "model.pt"
    half = TrainConfig(**{**cfg.__dict__, "steps": 20})
    train(
        method,
        fresh_model(),
        checkerboard.train,
        half,
        seed=7,
        val_data=checkerboard.test,
        checkpoint=ckpt,
        model_spec=SPEC,
    )
    other_init = fresh_model(seed=123)  # the checkpoint, not the new init, must decide the weights
    resumed = train(
        method,
        other_init,
        checkerboard.train,
        cfg,
        seed=7,
        val_data=checkerboard.test,
        checkpoint=ckpt,
        model_spec=SPEC,
        resume=True,
    )

    assert resumed.steps_run == 20
    assert resumed.rows == full.rows
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values(), strict=False):
        assert torch.equal(a, b)
    for a, b in zip(full.ema.state_dict().values(), load_model(ckpt).state_dict().values(), strict=False):
        assert torch.equal(a, b)


def test_nan_loss_stops_with_the_step(checkerboard) -> None:
    data = checkerboard.train.clone()
    data[::2] = float("nan")
    cfg = TrainConfig(steps=10, batch_size=32, warmup_steps=1)
    with pytest.raises(TrainingDiverged, match=r"at step 1\b"):
        train(make_method("fm", "ot"), fresh_model(), data, cfg)


def test_eval_callback_adds_columns(checkerboard) -> None:
    seen = []

    def evaluate(step: int, model: torch.nn.Module) -> dict[str, float]:
        seen.append((step, model.training))
        return {"probe": float(step) * 2}

    cfg = TrainConfig(steps=20, batch_size=32, eval_every=10)
    res = train(make_method("fm", "vp"), fresh_model(), checkerboard.train, cfg, evaluate=evaluate)
    assert seen == [(10, False), (20, False)]
    assert [r["probe"] for r in res.rows] == [20.0, 40.0]


def test_bf16_autocast_trains(checkerboard) -> None:
    """Mixed precision (train.precision): the loss is computed under autocast and stays finite."""
    cfg = TrainConfig(steps=30, batch_size=64, eval_every=30, precision="bf16")
    res = train(make_method("fm", "ot"), fresh_model(), checkerboard.train, cfg, val_data=checkerboard.test)
    assert all(p.dtype == torch.float32 for p in res.model.parameters())  # weights stay fp32
    assert torch.isfinite(torch.tensor(res.rows[-1]["val_loss"]))


def test_ema_follows_the_warmed_up_recurrence() -> None:
    """e_{n+1} = d_n e_n + (1 - d_n) w_n with d_n = min(decay, (1 + n) / (10 + n)), checked against the
    scalar recurrence for a parameter that takes the values 1, 2, 3, ...; d_0 = 0.1, so one update
    already moves the average 90% of the way from the initial weights."""
    from fmexp.training.ema import EMA
    from fmexp.training.schedules import ema_decay_at

    assert ema_decay_at(0.999, 0) == pytest.approx(0.1) and ema_decay_at(0.5, 100) == 0.5
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema, expected = EMA(model, decay=0.99), 0.0
    for n in range(50):
        with torch.no_grad():
            model.weight.fill_(float(n + 1))
        ema.update()
        d = min(0.99, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * (n + 1)
    assert float(ema.module.weight) == pytest.approx(expected, rel=1e-6)


def test_clipping_scales_the_gradient_to_the_bound(tmp_path: Path, checkerboard) -> None:
    """After one step Adam's first moment is (1 - beta1) g, so its global norm is 0.1 min(||g||, clip):
    exactly 0.1 * 1e-3 with a clip far below the gradient's norm, and 0.1 ||g|| (recorded as grad_norm) without."""
    method = make_method("fm", "ot")

    def first_moment_norm(clip: float) -> tuple[float, float]:
        cfg = TrainConfig(steps=1, batch_size=64, warmup_steps=0, eval_every=1, grad_clip=clip)
        res = train(method, fresh_model(), checkerboard.train, cfg, seed=3, checkpoint=tmp_path / f"{clip}.pt")
        opt_state = artifacts.load_torch(tmp_path / f"{clip}.pt")["optimizer"]["state"].values()
        return float(torch.cat([s["exp_avg"].flatten() for s in opt_state]).norm()), res.rows[0]["grad_norm"]

    clipped, norm = first_moment_norm(1e-3)
    assert norm > 1e-2 and clipped == pytest.approx(1e-4, rel=1e-4)
    unclipped, norm = first_moment_norm(0.0)
    assert unclipped == pytest.approx(0.1 * norm, rel=1e-4)


class _ConditionalMLP(torch.nn.Module):
    """``v(x, t, y)`` for 1-D data: an MLP of x, t and an embedding of y (``y = 2``: the null class)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(3, 8)
        self.net = torch.nn.Sequential(torch.nn.Linear(10, 64), torch.nn.SiLU(), torch.nn.Linear(64, 1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, t[:, None], self.embed(y)], dim=1))


def test_label_dropout_trains_the_conditional_and_the_null_field() -> None:
    """Class 0 at +2, class 1 at -2 (std 0.1), half each: the field bound to label 0 carries N(0, 1) to +2,
    to label 1 to -2, and to the null label (dropped 30% of the time) to both, half each."""
    from fmexp.flow.guidance import ClassLabels, Guided
    from fmexp.flow.ode import integrate

    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(2048) % 2
    x = (2.0 - 4.0 * labels[:, None]) + 0.1 * torch.randn(2048, 1, generator=gen)
    torch.manual_seed(0)
    model = _ConditionalMLP()
    cfg = TrainConfig(steps=600, batch_size=256, lr=3e-3, warmup_steps=10, eval_every=300, ema_decay=0.9, val_batch=512)
    labelled = ClassLabels(labels, labels[:512], null=2, dropout=0.3)
    res = train(make_method("fm", "ot"), model, x, cfg, val_data=x[:512], labels=labelled)
    x_0 = torch.randn(400, 1, generator=gen)
    with torch.no_grad():
        ends = {
            y: integrate(Guided(res.ema, torch.full((400,), y), 2), x_0, method="rk4", steps=20).x.flatten()
            for y in (0, 1, 2)
        }
    assert float((ends[0] > 0).float().mean()) > 0.95 and float((ends[1] < 0).float().mean()) > 0.95
    assert 0.3 < float((ends[2] > 0).float().mean()) < 0.7  # the null field: the mixture


def test_without_label_dropout_the_null_field_is_untrained() -> None:
    """With ``dropout = 0`` the null label never occurs in training: its embedding keeps its initial
    weights, bit for bit (the reason a guidance scale w != 0 needs label dropout)."""
    from fmexp.flow.guidance import ClassLabels

    labels = torch.arange(256) % 2
    torch.manual_seed(0)
    model = _ConditionalMLP()
    null_before = model.embed.weight[2].detach().clone()
    cfg = TrainConfig(steps=20, batch_size=64, lr=1e-2, warmup_steps=0, eval_every=10, ema_decay=0.9)
    train(make_method("fm", "ot"), model, torch.randn(256, 1), cfg, labels=ClassLabels(labels, labels, null=2))
    assert torch.equal(model.embed.weight[2], null_before)
    assert not torch.equal(model.embed.weight[0], torch.nn.Embedding(3, 8).weight[0])
