"""Velocity networks ``v(x, t)``: batch-first ``x`` of shape ``(B, ...)``, ``t`` of shape ``(B,)``.

``build_model(spec)`` is the one constructor; checkpoints store the spec (``_target_`` and every
argument) so a model, fmexp's or a user's, is rebuilt without the config that made it (as nanoGPT does).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmexp.registry import TARGET, Spec, build, resolve

__all__ = ["SinusoidalTimeEmbedding", "MLP", "UNet", "build_model"]


class SinusoidalTimeEmbedding(nn.Module):
    """Transformer-style features of ``t`` in [0, 1]: ``[sin(w_k t), cos(w_k t)]``, ``w_k`` geometric from
    ``max_freq`` down.

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
        self.freqs: Tensor
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        angles = t[:, None].to(self.freqs.dtype) * self.freqs
        return torch.cat([angles.sin(), angles.cos()], dim=1)


class MLP(nn.Module):
    """An MLP velocity field on flat data: ``[x, emb(t)] -> width x depth -> dim`` (the paper's 2-D model).

    ``fourier_features > 0`` adds ``[sin(2 pi B x), cos(2 pi B x)]`` to the input, with ``B`` a fixed
    Gaussian matrix of std ``fourier_scale`` (Tancik et al. 2020), drawn from a fixed seed so that the
    constructor arguments alone rebuild it: an MLP then fits sharp edges in far fewer steps.
    """

    def __init__(
        self,
        dim: int,
        width: int = 256,
        depth: int = 3,
        activation: str = "silu",
        time_embed_dim: int = 32,
        fourier_features: int = 0,
        fourier_scale: float = 1.0,
    ) -> None:
        super().__init__()
        act: type[nn.Module] = resolve("activation", activation)
        if dim < 1 or width < 1 or depth < 1 or fourier_features < 0:
            raise ValueError(
                f"dim, width and depth must be positive and fourier_features >= 0, got {dim}, {width}, {depth}, "
                f"{fourier_features}"
            )
        self.embed = SinusoidalTimeEmbedding(time_embed_dim)
        self.fourier: Tensor
        self.register_buffer(
            "fourier",
            fourier_scale * torch.randn(dim, fourier_features, generator=torch.Generator().manual_seed(0)),
            persistent=False,
        )
        layers: list[nn.Module] = []
        fan_in = dim + 2 * fourier_features + time_embed_dim
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width), act()]
            fan_in = width
        layers.append(nn.Linear(fan_in, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        flat = x.flatten(1)
        features = [flat]
        if self.fourier.shape[1]:
            angles = (2 * math.pi) * flat @ self.fourier.to(flat.dtype)
            features += [angles.sin(), angles.cos()]
        h = torch.cat([*features, self.embed(t).to(x.dtype)], dim=1)
        return self.net(h).reshape(x.shape)


def _zero(conv: nn.Conv2d) -> None:
    """Start a layer at zero: its block then starts as the identity (a residual) or the zero field."""
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _groups(channels: int) -> int:
    return next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the time embedding added in between (Ho et al. 2020)."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(_groups(c_in), c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.drop = nn.GroupNorm(_groups(c_out), c_out), nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        _zero(self.conv2)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(emb)[:, :, None, None]
        return self.skip(x) + self.conv2(self.drop(F.silu(self.norm2(h))))


class SelfAttention(nn.Module):
    """Self-attention over the pixels of a feature map, with a residual connection: heads of
    ``head_channels`` channels each (ADM's ``num_head_channels``), or one head where that is 0."""

    def __init__(self, channels: int, head_channels: int = 0) -> None:
        super().__init__()
        if head_channels < 0 or (head_channels and channels % head_channels):
            raise ValueError(f"head_channels={head_channels} must divide the {channels} channels of an attention layer")
        self.norm = nn.GroupNorm(_groups(channels), channels)
        heads = channels // head_channels if head_channels else 1
        self.attn = nn.MultiheadAttention(channels, num_heads=heads, batch_first=True)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)
        out, _ = self.attn(tokens, tokens, tokens, need_weights=False)
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class UNet(nn.Module):
    """A time-conditioned U-Net (the paper's image model, Table 3: e.g. 256 channels, multipliers 1,2,2,2).

    Each resolution has ``num_res_blocks`` residual blocks (self-attention after each where the
    resolution is in ``attention_resolutions``), then a stride-2 downsampling; the up path mirrors
    it with skip connections. ``resolution`` must be divisible by 2^(len(channel_mults) - 1).

    ``num_classes > 0`` makes it class-conditional, ``v(x, t, y)``: a learned embedding of ``y`` is added
    to the time embedding, with one more row, ``y = num_classes``, for the null class (``y`` None), so
    that one network holds the conditional and the unconditional field (Ho and Salimans 2022).
    """

    def __init__(
        self,
        in_channels: int = 1,
        resolution: int = 8,
        channels: int = 32,
        channel_mults: Sequence[int] = (1, 2),
        num_res_blocks: int = 1,
        attention_resolutions: Sequence[int] = (),
        dropout: float = 0.0,
        time_embed_dim: int = 64,
        head_channels: int = 0,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0: unconditional), got {num_classes}")
        self.head_channels, self.num_classes = head_channels, num_classes
        if resolution % 2 ** (len(channel_mults) - 1):
            raise ValueError(
                f"resolution {resolution} is not divisible by 2^{len(channel_mults) - 1} "
                f"(channel_mults={list(channel_mults)})"
            )
        emb_dim = 4 * channels
        self.embed = nn.Sequential(
            SinusoidalTimeEmbedding(time_embed_dim),
            nn.Linear(time_embed_dim, emb_dim),
            nn.SiLU(),
            nn.Linear(emb_dim, emb_dim),
        )
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.down, skips, c, res = nn.ModuleList(), [channels], channels, resolution
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                self.down.append(self._stage(c, channels * mult, emb_dim, dropout, res in attention_resolutions))
                c = channels * mult
                skips.append(c)
            if level < len(channel_mults) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(c, c, 3, stride=2, padding=1)]))
                skips.append(c)
                res //= 2
        self.mid = nn.ModuleList(
            [ResBlock(c, c, emb_dim, dropout), SelfAttention(c, head_channels), ResBlock(c, c, emb_dim, dropout)]
        )
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for _ in range(num_res_blocks + 1):
                self.up.append(
                    self._stage(c + skips.pop(), channels * mult, emb_dim, dropout, res in attention_resolutions)
                )
                c = channels * mult
            if level > 0:
                self.up.append(
                    nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 3, padding=1)])
                )
                res *= 2
        self.norm_out, self.conv_out = nn.GroupNorm(_groups(c), c), nn.Conv2d(c, in_channels, 3, padding=1)
        _zero(self.conv_out)
        # built last, so that an unconditional U-Net draws the same initial weights as before it existed
        self.label_embed = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None

    def _stage(self, c_in: int, c_out: int, emb_dim: int, dropout: float, attention: bool) -> nn.ModuleList:
        blocks: list[nn.Module] = [ResBlock(c_in, c_out, emb_dim, dropout)]
        return nn.ModuleList(blocks + [SelfAttention(c_out, self.head_channels)] if attention else blocks)

    @staticmethod
    def _run(stage: nn.Module, h: Tensor, emb: Tensor) -> Tensor:
        for layer in stage.children():
            h = layer(h, emb) if isinstance(layer, (ResBlock, SelfAttention)) else layer(h)
        return h

    def null_labels(self, n: int, device: torch.device | None = None) -> Tensor:
        """``n`` null labels: the index of the unconditional field."""
        return torch.full((n,), self.num_classes, dtype=torch.int64, device=device)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """``v(x, t)``, or with ``num_classes`` ``v(x, t, y)``: ``y`` of shape ``(B,)`` in ``0 .. num_classes``
        (``num_classes`` the null class; ``y`` None: every row null)."""
        emb = self.embed(t)
        if self.label_embed is not None:
            emb = emb + self.label_embed(self.null_labels(len(x), x.device) if y is None else y)
        elif y is not None:
            raise ValueError("labels given to an unconditional U-Net (num_classes=0)")
        h = self.conv_in(x)
        hs = [h]
        for stage in self.down:
            h = self._run(stage, h, emb)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb)
        for stage in self.up:
            if isinstance(next(stage.children()), ResBlock):
                h = torch.cat([h, hs.pop()], dim=1)
            h = self._run(stage, h, emb)
        return self.conv_out(F.silu(self.norm_out(h)))


def build_model(spec: Spec, key: str = "model.name", **args: object) -> nn.Module:
    """Construct the model ``spec`` names with ``args``: a ``_target_`` mapping with every constructor
    argument (what ``fmexp.config.plan.model_spec`` gives and checkpoints store), or a registered name,
    e.g. ``build_model("mlp", dim=2)``. A failure raises ``ConfigError`` naming ``key``."""
    full = {TARGET: spec, **args} if isinstance(spec, str) else {**spec, **args}
    model: nn.Module = build("model", full, key)
    return model
