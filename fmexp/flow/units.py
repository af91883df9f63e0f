"""The unit of each metric that the score stage writes and a study can optimize, for printing and axes."""

from __future__ import annotations

__all__ = ["UNITS"]

UNITS = {"nll": "nats", "nfe": "NFE", "nfe_nll": "NFE", "train_seconds": "s", "distance": "", "bpd": "bits/dim"}
"""``nll`` is per data point (per image for images, whose ``bpd`` divides it by the dimension); the
sample ``distance`` is the one ``score.distance`` names, unitless like the data."""
