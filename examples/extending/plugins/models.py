"""A model of one's own: any ``torch.nn.Module`` whose ``forward(x, t)`` takes t of shape (B,).

fmexp passes ``dim`` (flat data), or ``in_channels`` and ``resolution`` (images), when the
constructor takes them; the other arguments come from the ``_target_`` mapping in ``params.yaml``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ResidualMLP(nn.Module):
    """``blocks`` residual blocks of width ``width``, with t fed to every block."""

    def __init__(self, dim: int, width: int = 64, blocks: int = 2) -> None:
        super().__init__()
        self.inp = nn.Linear(dim + 1, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.SiLU(), nn.Linear(width + 1, width), nn.SiLU(), nn.Linear(width, width))
            for _ in range(blocks)
        )
        self.out = nn.Linear(width, dim)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        t = t.reshape(-1, 1).expand(x.shape[0], 1).to(x.dtype)
        h = self.inp(torch.cat([x, t], dim=1))
        for block in self.blocks:
            h = h + block(torch.cat([h, t], dim=1))
        return self.out(h)
