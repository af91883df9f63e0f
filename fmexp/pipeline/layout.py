"""Where every file of a run lives: ``data/<dataset>.pt``, and below ``runs/<dataset>/<method>/`` one
folder per stage and seed, ``<stage>/<seed>/``, which is what DVC tracks. The stages write through
it and the report reads through it.

What a stage computed goes into its folder, and is the same bytes whenever it is the same content.
How the computation went (wall seconds, a resume, the live curve) goes beside it, into ``log/`` and
``live/``, which DVC does not track: otherwise every rerun would change ``dvc.lock``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fmexp.config.schema import RunConfig
from fmexp.data.datasets import Dataset
from fmexp.runtime import artifacts

__all__ = ["RunFiles", "data_file", "load_prepared"]


def data_file(data_dir: str | Path, dataset: str) -> Path:
    """The prepared splits of ``dataset`` (written by the prepare stage)."""
    return Path(data_dir) / f"{dataset}.pt"


def load_prepared(data_dir: str | Path, dataset: str) -> Dataset:
    """The splits that ``prepare`` stored for ``dataset``."""
    state = artifacts.load_torch(data_file(data_dir, dataset))
    source = state.get("source")
    return Dataset(
        name=dataset,
        train=state["train"],
        test=state["test"],
        levels=state.get("levels"),
        source=None if source is None else Dataset(name=source["name"], train=source["train"], test=source["test"]),
        train_labels=state.get("train_labels"),
        test_labels=state.get("test_labels"),
    )


@dataclass(frozen=True)
class RunFiles:
    """Where one seed of one run keeps its files, below ``root`` (``runs/<dataset>/<method>`` in the pipeline)."""

    root: Path
    seed: int

    @classmethod
    def of(cls, runs_dir: str | Path, run: RunConfig) -> RunFiles:
        return cls(Path(runs_dir) / run.dataset / run.method_name, run.seed)

    def stage(self, name: str) -> Path:
        return self.root / name / str(self.seed)

    def sibling(self, method: str) -> RunFiles:
        """The same seed of ``method`` on the same dataset (a reflow round's base and previous round)."""
        return RunFiles(self.root.parent / method, self.seed)

    @property
    def couples(self) -> Path:
        """A reflow round's couples (the ``reflow`` stage): noise and the previous round's samples of it."""
        return self.stage("reflow") / "pairs.pt"

    @property
    def couples_info(self) -> Path:
        return self.stage("reflow") / "reflow.json"

    @property
    def model(self) -> Path:
        return self.stage("train") / "model.pt"

    def checkpoint(self, key: str) -> Path:
        """The resumable checkpoint of an unfinished training run whose config hashes to ``key``
        (``plan.training_key``). It lives beside the stage folders, not in ``train/``, which DVC
        deletes before it reruns the stage; a finished run moves it to ``model.pt``."""
        return self.root / "checkpoints" / f"{self.seed}-{key}.pt"

    def log(self, stage: str) -> Path:
        """How ``stage`` ran for this seed: its wall seconds and, for training, its speed and the step it
        resumed from. Not a DVC output, and not part of any result."""
        return self.root / "log" / str(self.seed) / f"{stage}.json"

    @property
    def live(self) -> Path:
        """DVCLive's folder for this seed's training curve, written while it trains (``dvc plots show``)."""
        return self.root / "live" / str(self.seed)

    @property
    def curve(self) -> Path:
        return self.stage("train") / "curve.csv"

    @property
    def train_info(self) -> Path:
        return self.stage("train") / "train.json"

    @property
    def samples(self) -> Path:
        return self.stage("sample") / "samples.pt"

    @property
    def sample_info(self) -> Path:
        return self.stage("sample") / "sample.json"

    @property
    def ladder(self) -> Path:
        return self.stage("sample") / "ladder.csv"

    @property
    def metrics(self) -> Path:
        return self.stage("score") / "metrics.json"

    @property
    def density(self) -> Path:
        return self.stage("score") / "density.pt"

    @property
    def fid_ladder(self) -> Path:
        return self.stage("score") / "fid_ladder.csv"

    @property
    def guidance(self) -> Path:
        """A class-conditional run's scores at each guidance scale of ``sample.guidance``."""
        return self.stage("score") / "guidance.csv"
