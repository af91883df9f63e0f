from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch

from fmexp.networks.models import build_model
from fmexp.registry import names, resolve


@pytest.mark.parametrize("activation", names("activation"))
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


@pytest.mark.parametrize("name", names("model"))
def test_config_keys_are_the_constructor_arguments(name: str) -> None:
    """model.<key> in params.yaml is the constructor argument <key>: no renaming between config and model,
    and every argument but the data's is a config key."""
    from fmexp.config.plan import model_args
    from fmexp.config.schema import ModelConfig

    derived = {"mlp": {"dim"}, "unet": {"in_channels", "resolution", "num_classes"}}[name]  # from the data
    assert set(inspect.signature(resolve("model", name)).parameters) == derived | set(model_args(name))
    assert set(model_args(name)) <= {f.name for f in dataclasses.fields(ModelConfig)}


def test_registry_errors() -> None:
    assert "mlp" in names("model")
    with pytest.raises(
        ValueError, match=r"model.name: 'transformer' is not one of \['mlp', 'unet'\]; or name your own model"
    ):
        build_model("transformer", dim=2)
    with pytest.raises(ValueError, match=r"'mlpp' is not one of \['mlp', 'unet'\]; did you mean 'mlp'\?"):
        build_model("mlpp", dim=2)
    with pytest.raises(ValueError, match=r"unknown activation 'swish'"):
        build_model("mlp", dim=2, activation="swish")


@pytest.mark.parametrize(
    "args",
    [
        {"in_channels": 1, "resolution": 8, "channels": 16, "channel_mults": (1, 2), "num_res_blocks": 1},
        {
            "in_channels": 3,
            "resolution": 16,
            "channels": 16,
            "channel_mults": (1, 2, 2),
            "num_res_blocks": 2,
            "attention_resolutions": (8,),
            "dropout": 0.1,
        },
    ],
)
def test_unet_forward_backward(args: dict) -> None:
    torch.manual_seed(0)
    model = build_model("unet", **args).to(torch.float64).to(torch.float32)  # Module.to must still work
    x = torch.randn(3, args["in_channels"], args["resolution"], args["resolution"])
    out = model(x, torch.rand(3))
    assert out.shape == x.shape
    assert torch.all(out == 0)  # the output conv starts at zero, so the initial field is 0
    # one step of training moves the output conv off zero; after it gradients reach every parameter
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    (model(x, torch.rand(3)) - x).pow(2).mean().backward()
    opt.step()
    opt.zero_grad()
    loss = (model(x, torch.rand(3)) - x).pow(2).mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_unet_paper_cifar_configuration_builds() -> None:
    """The paper's CIFAR-10 model (Table 3): 256 channels, multipliers 1,2,2,2, attention at 16x16."""
    model = build_model(
        "unet",
        in_channels=3,
        resolution=32,
        channels=256,
        channel_mults=(1, 2, 2, 2),
        num_res_blocks=2,
        attention_resolutions=(16,),
        dropout=0.0,
    )
    n_params = sum(p.numel() for p in model.parameters())
    assert 50e6 < n_params < 150e6


def test_unet_attention_heads_have_head_channels_each() -> None:
    from fmexp.networks.models import SelfAttention

    model = build_model("unet", channels=16, channel_mults=(1, 2), attention_resolutions=(8,), head_channels=8)
    heads = {(m.attn.embed_dim, m.attn.num_heads) for m in model.modules() if isinstance(m, SelfAttention)}
    assert heads == {(16, 2), (32, 4)}  # the 8x8 level's 16 channels, the middle block's 32
    one = build_model("unet", channels=16, channel_mults=(1, 2), attention_resolutions=(8,))
    assert {m.attn.num_heads for m in one.modules() if isinstance(m, SelfAttention)} == {1}
    x, t = torch.randn(2, 1, 8, 8), torch.rand(2)
    assert model(x, t).shape == x.shape
    with pytest.raises(ValueError, match="head_channels=12 must divide the 16 channels"):
        build_model("unet", channels=16, channel_mults=(1, 2), attention_resolutions=(8,), head_channels=12)


def test_unet_rejects_an_indivisible_resolution() -> None:
    with pytest.raises(ValueError, match="not divisible"):
        build_model("unet", resolution=10, channel_mults=(1, 2, 2))


def test_a_conditional_unet_embeds_the_label_with_a_null_class() -> None:
    """``num_classes`` adds a label embedding with one null row, built last: the other weights are drawn
    as an unconditional U-Net's from the same seed; the null class is what ``y=None`` means."""
    torch.manual_seed(0)
    plain = build_model("unet", channels=8, channel_mults=(1, 2))
    torch.manual_seed(0)
    conditional = build_model("unet", channels=8, channel_mults=(1, 2), num_classes=3)
    shared = plain.state_dict()
    assert set(conditional.state_dict()) - set(shared) == {"label_embed.weight"}
    assert all(torch.equal(conditional.state_dict()[k], v) for k, v in shared.items())
    assert conditional.label_embed.weight.shape == (4, 4 * 8)  # 3 classes and the null one
    with torch.no_grad():  # off the zero-initialized layers, through which the label would not reach the output
        for p in conditional.parameters():
            if not p.any():
                p.normal_(std=0.1)
    x, t = torch.randn(4, 1, 8, 8), torch.rand(4)
    y = torch.tensor([0, 1, 2, 3])
    assert torch.equal(conditional(x, t, conditional.null_labels(4)), conditional(x, t))
    outs = conditional(x.repeat(4, 1, 1, 1), t.repeat(4), y.repeat_interleave(4))
    assert all(not torch.allclose(outs[i * 4 : i * 4 + 4], outs[j * 4 : j * 4 + 4]) for i in range(4) for j in range(i))
    with pytest.raises(ValueError, match="unconditional U-Net"):
        plain(x, t, y)
    with pytest.raises(ValueError, match="num_classes must be >= 0"):
        build_model("unet", num_classes=-1)
