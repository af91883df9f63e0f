"""A figure of the report: its title and caption, and its PNG, written under ``reports/figures/`` and
inlined in the page (so that the page stands alone)."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt

from fmexp.runtime import artifacts

plt.switch_backend("Agg")  # files only, never a window

__all__ = ["Figure", "png"]


@dataclass
class Figure:
    title: str
    caption: str
    name: str
    data_uri: str


def png(fig: plt.Figure, path: Path) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    data = buf.getvalue()
    with artifacts.atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return "data:image/png;base64," + base64.b64encode(data).decode()
