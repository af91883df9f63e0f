"""One checkpoint state: TrainState's state_dict is the checkpoint schema, and files written before the
restructure (b391f47) still load and resume (the fixture and the script that made it: tests/fixtures/)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fmexp.config.schema import TrainConfig
from fmexp.data.datasets import load_dataset
from fmexp.errors import ArtifactError
from fmexp.flow.methods import make_method
from fmexp.networks.models import build_model
from fmexp.training.loop import train
from fmexp.training.state import CHECKPOINT_KEYS, TrainState, load_model, read_checkpoint

OLD = Path(__file__).parents[1] / "fixtures" / "model_b391f47.pt"
SPEC = {
    "_target_": "mlp",
    "dim": 2,
    "width": 16,
    "depth": 2,
    "activation": "silu",
    "time_embed_dim": 8,
    "fourier_features": 0,
    "fourier_scale": 1.0,
}
CONFIG = dict(batch_size=64, eval_every=10, curve_points=0, warmup_steps=5)
X, T = torch.tensor([[0.5, -1.0], [2.0, 3.0]]), torch.tensor([0.3, 0.9])
OLD_EMA_OUTPUT = [[-0.18205593526363373, -0.1508764922618866], [-0.10448038578033447, -0.0807335153222084]]
"""What b391f47's own code printed for the EMA network of that file at (X, T) (tests/fixtures/README.md)."""


def _model() -> torch.nn.Module:
    return build_model(SPEC)


def test_a_b391f47_model_file_loads_to_the_same_network() -> None:
    with torch.no_grad():
        assert load_model(OLD)(X, T).tolist() == OLD_EMA_OUTPUT


def test_a_b391f47_checkpoint_resumes_to_the_uninterrupted_run(tmp_path: Path) -> None:
    """20 steps by the old code, then 10 by this one, give the weights of 30 uninterrupted steps here."""
    data = load_dataset("checkerboard", n_train=512, n_test=64, seed=0)
    resumed = tmp_path / "resumed.pt"
    resumed.write_bytes(OLD.read_bytes())
    cfg = TrainConfig(steps=30, **CONFIG)
    torch.manual_seed(0)
    whole = train(make_method("fm", "ot"), _model(), data.train, cfg, seed=0, model_spec=SPEC)
    torch.manual_seed(0)
    cont = train(
        make_method("fm", "ot"), _model(), data.train, cfg, seed=0, checkpoint=resumed, resume=True, model_spec=SPEC
    )
    assert cont.steps_run == 10
    for a, b in zip(whole.ema.state_dict().values(), cont.ema.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert [r["train_loss"] for r in whole.rows] == [r["train_loss"] for r in cont.rows]


def test_the_state_round_trips_through_its_checkpoint(tmp_path: Path) -> None:
    state = TrainState.fresh(_model(), TrainConfig(steps=5), seed=3, device=torch.device("cpu"), model_spec=SPEC)
    state.step, state.rows, state.initial_loss = 4, [{"step": 4.0, "train_loss": 1.5}], 2.0
    state.save(tmp_path / "c.pt")
    saved = read_checkpoint(tmp_path / "c.pt")
    assert tuple(saved) == CHECKPOINT_KEYS
    other = TrainState.fresh(_model(), TrainConfig(steps=5), seed=9, device=torch.device("cpu"))
    other.load_state_dict(saved)
    assert (other.step, other.rows, other.initial_loss) == (4, state.rows, 2.0)
    assert torch.equal(other.generator.get_state(), state.generator.get_state())


def test_a_file_that_is_no_checkpoint_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save({"model_state": _model().state_dict()}, path)
    with pytest.raises(ArtifactError, match=rf"{path}: not a fmexp checkpoint: it lacks \['model_spec'"):
        load_model(path)


def test_a_checkpoint_without_the_untrained_loss_is_refused_naming_it(tmp_path: Path) -> None:
    """The divergence check compares the loss with the untrained network's; a checkpoint that lost it
    (NaN) would resume with the check silently off."""
    state = TrainState.fresh(_model(), TrainConfig(steps=5), seed=3, device=torch.device("cpu"), model_spec=SPEC)
    state.step = 4  # initial_loss stays NaN, as if never recorded
    state.save(tmp_path / "c.pt")
    with pytest.raises(ArtifactError, match=rf"{tmp_path / 'c.pt'}: its initial_loss is nan"):
        read_checkpoint(tmp_path / "c.pt")
