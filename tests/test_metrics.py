from __future__ import annotations

import math

import pytest
import torch

from fmexp.metrics import DISTANCES, bits_per_dim, sample_distance


def test_bits_per_dim_of_uniform_dequantized_bytes_is_eight() -> None:
    """Bytes dequantized to [0, 256) and mapped to [-1, 1): a uniform model has density 1/2 per dim,
    so nll_y = d log 2 and the byte-level NLL is log2(256) = 8 bits per dimension."""
    d = 3 * 32 * 32
    assert bits_per_dim(d * math.log(2.0), d, scale=2 / 256) == pytest.approx(8.0)
    assert bits_per_dim(torch.tensor([d * math.log(2.0)]), d, scale=2 / 256).item() == pytest.approx(8.0)
    assert bits_per_dim(2 * math.log(2.0), 2) == pytest.approx(1.0)  # plain nats -> bits


@pytest.mark.parametrize("name", sorted(DISTANCES))
def test_distances_are_zero_on_identical_samples_and_see_a_shift(name: str) -> None:
    x = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    assert sample_distance(name, x, x) == pytest.approx(0.0, abs=1e-9)
    shifted = sample_distance(name, x, x + torch.tensor([3.0, 0.0]))
    # exact W2 of a translation by 3 is 3; a sliced W2 averages the projected shifts: 3 * sqrt(E cos^2) = 3/sqrt(2)
    expected = 3.0 if name == "w2" else 3.0 / math.sqrt(2)
    assert shifted == pytest.approx(expected, rel=0.1)


def test_unknown_distance() -> None:
    with pytest.raises(ValueError, match="unknown distance 'mmd'"):
        sample_distance("mmd", torch.zeros(2, 2), torch.zeros(2, 2))
