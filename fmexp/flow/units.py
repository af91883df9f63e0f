"""The metrics that the score stage writes for each kind of data, which a study can optimize, and their
units for printing and axes."""

from __future__ import annotations

__all__ = ["UNITS", "SCORED", "data_kind"]

UNITS = {
    "nll": "nats",
    "nfe": "NFE",
    "nfe_nll": "NFE",
    "train_seconds": "s",
    "distance": "",
    "bpd": "bits/dim",
    "fid": "",
    "fid_equal_n": "",
    "fid_inf": "",
}
"""``nll`` is per data point (per image for images, whose ``bpd`` divides it by the dimension); the
sample ``distance`` is the one ``score.distance`` names, unitless like the data."""

_FLAT = ("nll", "distance", "nfe", "nfe_nll", "train_seconds")
SCORED: dict[str, tuple[str, ...]] = {"flat": _FLAT, "image": (*_FLAT, "bpd", "fid", "fid_equal_n", "fid_inf")}
"""The numeric metrics of a run's scores by kind of data (``fmexp.pipeline.stages.score``): what a
study's objectives may name. ``fid`` is over all samples; ``fid_equal_n`` at the held-out split's n."""


def data_kind(dataset: str) -> str:
    """``image`` for a registered image dataset, else ``flat``: the key of ``SCORED``."""
    from fmexp.registry import names

    return "image" if dataset in names("image_dataset") else "flat"
