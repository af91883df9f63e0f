from __future__ import annotations

import pytest
import torch

from fmexp.models import ACTIVATIONS, MODELS, build_model


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_mlp_shapes_and_gradients(activation: str) -> None:
    model = build_model("mlp", dim=2, width=32, depth=2, activation=activation, time_embed_dim=8)
    x, t = torch.randn(5, 2), torch.rand(5)
    out = model(x, t)
    assert out.shape == (5, 2)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_time_embedding_makes_the_field_depend_on_t() -> None:
    torch.manual_seed(0)
    model = build_model("mlp", dim=2)
    x = torch.randn(3, 2)
    assert not torch.allclose(model(x, torch.zeros(3)), model(x, torch.ones(3)))


def test_registry_errors() -> None:
    assert "mlp" in MODELS
    with pytest.raises(ValueError, match=r"unknown model 'resnet'"):
        build_model("resnet", dim=2)
    with pytest.raises(ValueError, match=r"unknown activation 'swish'"):
        build_model("mlp", dim=2, activation="swish")
