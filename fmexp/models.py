"""Velocity networks ``v(x, t)``: batch-first ``x`` of shape ``(B, ...)``, ``t`` of shape ``(B,)``.

``build_model(name, **args)`` is the one constructor; checkpoints store ``(name, args)`` so a model is
rebuilt without the config that made it (as nanoGPT does).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["ACTIVATIONS", "SinusoidalTimeEmbedding", "MLP", "MODELS", "build_model"]

ACTIVATIONS: dict[str, type[nn.Module]] = {"silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "softplus": nn.Softplus}


class SinusoidalTimeEmbedding(nn.Module):
    """Transformer-style features of ``t`` in [0, 1]: ``[sin(w_k t), cos(w_k t)]``, ``w_k`` geometric from ``max_freq`` down.

    ``max_freq`` is kept low on purpose: the ``1000 t`` scaling of diffusion codebases makes the
    field oscillate in t, and an adaptive solver pays for it (measured on checkerboard after 2k
    steps: dopri5 NFE 416 with ``max_freq=1000`` against 56 with 30, at equal loss).
    """

    def __init__(self, dim: int, max_freq: float = 30.0, max_period: float = 10_000.0) -> None:
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"time embedding dim must be even and >= 2, got {dim}")
        half = dim // 2
        freqs = max_freq * torch.exp(-math.log(max_period) * torch.arange(half) / half)
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        angles = t[:, None].to(self.freqs.dtype) * self.freqs
        return torch.cat([angles.sin(), angles.cos()], dim=1)


class MLP(nn.Module):
    """An MLP velocity field on flat data: ``[x, emb(t)] -> width x depth -> dim`` (the paper's 2-D model)."""

    def __init__(self, dim: int, width: int = 256, depth: int = 3, activation: str = "silu", time_embed_dim: int = 32) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
        if dim < 1 or width < 1 or depth < 1:
            raise ValueError(f"dim, width and depth must be positive, got {dim}, {width}, {depth}")
        self.embed = SinusoidalTimeEmbedding(time_embed_dim)
        layers: list[nn.Module] = []
        fan_in = dim + time_embed_dim
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width), ACTIVATIONS[activation]()]
            fan_in = width
        layers.append(nn.Linear(fan_in, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        h = torch.cat([x.flatten(1), self.embed(t).to(x.dtype)], dim=1)
        return self.net(h).reshape(x.shape)


MODELS: dict[str, type[nn.Module]] = {"mlp": MLP}


def build_model(name: str, **args: object) -> nn.Module:
    """Construct the registered model ``name`` from its constructor arguments."""
    try:
        cls = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}") from None
    return cls(**args)
