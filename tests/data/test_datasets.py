"""2-D datasets: deterministic, fixed splits, on the paper's scale."""

from __future__ import annotations

import pytest
import torch

from fmexp.data.datasets import load_dataset, max_pairwise_distance
from fmexp.registry import names


@pytest.mark.parametrize("name", names("toy_dataset"))
def test_deterministic_with_a_fixed_split(name: str) -> None:
    a = load_dataset(name, n_train=500, n_test=200, seed=3)
    b = load_dataset(name, n_train=500, n_test=200, seed=3)
    assert torch.equal(a.train, b.train) and torch.equal(a.test, b.test)
    assert a.train.shape == (500, 2) and a.test.shape == (200, 2) and a.train.dtype == torch.float32
    assert not torch.equal(a.train[:200], a.test)
    bigger = load_dataset(name, n_train=1000, n_test=200, seed=3)
    assert torch.equal(bigger.test, a.test)  # the test split does not move with the train size
    other = load_dataset(name, n_train=500, n_test=200, seed=4)
    assert not torch.equal(other.train, a.train)
    limit = 8.0 if name.endswith("_tcfm") else 6.0  # torchcfm's 8 Gaussians: radius 5, std 0.56
    assert float(a.train.abs().max()) < limit and float(a.train.std()) > 0.5


def test_checkerboard_occupies_eight_alternate_squares() -> None:
    """Points lie in [-4, 4]^2 on squares of side 2 where floor(x/2) + floor(y/2) is odd... or even, one colour only."""
    x = load_dataset("checkerboard", n_train=20_000, n_test=10).train
    assert float(x.abs().max()) <= 4.0
    parity = (torch.floor(x[:, 0] / 2) + torch.floor(x[:, 1] / 2)) % 2
    assert torch.all(parity == parity[0])
    cells = {(int(a), int(b)) for a, b in torch.floor(x / 2).tolist()}
    assert len(cells) == 8
    # uniform over area 32: the mean squared radius is E[x^2 + y^2] = 2 * 16/3
    assert float((x**2).sum(1).mean()) == pytest.approx(32 / 3, rel=0.02)


def test_unknown_dataset_and_bad_sizes() -> None:
    with pytest.raises(ValueError, match=r"unknown dataset 'checkers'.*checkerboard"):
        load_dataset("checkers")
    with pytest.raises(ValueError, match="positive"):
        load_dataset("moons", n_train=0)


def test_max_pairwise_distance() -> None:
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]])
    assert max_pairwise_distance(x) == pytest.approx(5.0)


def test_entropy_of_the_2d_data_against_quadrature() -> None:
    """The checkerboard is uniform on area 32: log 32 exactly. The 8 Gaussians' entropy by Monte Carlo
    matches a Riemann sum of -q log q on a fine grid, and lies below log 8 + H(one component), the
    value it would have if the components did not overlap."""
    import math

    import numpy as np

    from fmexp.data.toy import LOG_DENSITIES, entropy

    assert entropy("checkerboard") == (pytest.approx(math.log(32), abs=1e-12), 0.0)
    h, se = entropy("8gaussians", n=400_000)
    grid = np.linspace(-6, 6, 1201)
    xx, yy = np.meshgrid(grid, grid)
    log_q = LOG_DENSITIES["8gaussians"](np.stack([xx.ravel(), yy.ravel()], axis=1))
    quadrature = float(-(np.exp(log_q) * log_q).sum() * (grid[1] - grid[0]) ** 2)
    assert abs(h - quadrature) < 4 * se
    var = (0.5 / math.sqrt(2)) ** 2
    assert quadrature < math.log(8) + 1 + math.log(2 * math.pi * var)
