"""The prepare stage: each dataset's fixed splits in ``data/<dataset>.pt``."""

from __future__ import annotations

from pathlib import Path

from fmexp import artifacts
from fmexp.config import Params, to_plain
from fmexp.layout import data_file
from fmexp.plan import load_data

__all__ = ["prepare"]


def prepare(params: Params, data_dir: str | Path = "data") -> None:
    """Store each dataset's fixed splits in ``data/<dataset>.pt``; for digits, with the FID feature
    classifier trained on its training split, and that classifier's test accuracy."""
    for name in params.pipeline.datasets:
        ds = load_data(params.data, name)
        payload = {"train": ds.train, "test": ds.test, "levels": ds.levels, "config": to_plain(params.data)}
        if name == "digits":
            payload.update(_train_classifier())
        artifacts.save_torch(data_file(data_dir, name), payload)


def _train_classifier() -> dict[str, object]:
    from fmexp.features import train_digits_classifier

    model, accuracy = train_digits_classifier(seed=0)
    return {"classifier": model.state_dict(), "classifier_accuracy": accuracy}
