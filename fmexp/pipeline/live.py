"""A training curve written as it grows, with DVCLive: ``dvc plots show`` and DVC's VS Code extension
draw a running experiment's curves from it.

Each seed has its own folder (``RunFiles.live``), beside the stage's outputs and not one of them: it
is a view of the run, not a result (``curve.csv`` is), and it must not change ``dvc.lock``. A resumed
run starts the folder afresh and writes its checkpoint's rows first, so a killed and resumed run
leaves the same files as an uninterrupted one. DVCLive neither writes ``dvc.yaml`` (fmexp generates it)
nor saves an experiment (DVC does, around the stage), and its rows carry no timestamps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["LiveCurve"]


class LiveCurve:
    """``on_curve`` for ``fmexp.training.loop.train``: logs each new row's columns at its step."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.written = folder, 0
        self._live: Any = None

    def __call__(self, rows: list[dict[str, float]]) -> None:
        if self._live is None:
            from dvclive import Live

            self._live = Live(dir=str(self.folder), resume=False, dvcyaml=False, save_dvc_exp=False, report=None)
        for row in rows[self.written :]:
            self._live.step = int(row["step"])
            for name, value in row.items():
                if name != "step":
                    self._live.log_metric(name, value)
            self._live.make_summary()
        self.written = len(rows)

    def close(self) -> None:
        if self._live is not None:
            self._live.end()
