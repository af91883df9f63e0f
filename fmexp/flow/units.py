"""The one table of the metrics the score stage writes for each kind of data: what a study may
optimize, what DVC tracks as metrics, the report's table columns, and the units for printing and axes."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

__all__ = [
    "CONDITIONAL_METRICS",
    "Metric",
    "EULER_STEPS",
    "REFLOW_STEPS",
    "SCORED",
    "UNITS",
    "dvc_metrics",
    "table_columns",
    "data_kind",
]


@dataclass(frozen=True)
class Metric:
    """One number the score stage writes for each seed of a run."""

    unit: str = ""
    column: str | None = None  # its column in the report's method table (None: not in the table)
    dvc: bool = False  # a DVC metric in metrics.json, as mean and std over seeds: science, not timings


_SHARED = {
    "nfe": Metric("NFE", "NFE", dvc=True),  # dopri5's field evaluations for sampling
    "nfe_nll": Metric("NFE", dvc=True),  # and for the likelihood
    "train_seconds": Metric("s"),
    "few_step": Metric(""),  # the quality (distance, FID on images) of score.few_step at score.few_step_nfe
}

EULER_STEPS = (1, 2, 4)
"""A pair's few-step budgets: W2 after this many Euler steps, read from the sample stage's NFE ladder."""

REFLOW_STEPS = (1, 2, 4, 8)
"""A reflow round's few-step budgets: W2 after this many Euler steps, its own and the model's it came from."""

SCORED: dict[str, dict[str, Metric]] = {
    "flat": {
        "nll": Metric("nats", "NLL (nats)", dvc=True),  # per held-out point
        "nll_se": Metric("nats", dvc=True),  # its standard error over the points
        "distance": Metric("", "distance", dvc=True),  # score.distance to held-out data, under its own name
        **_SHARED,
    },
    "reflow": {  # a reflow round on flat data (Liu et al. 2022): against the model it came from, at equal NFE
        "nll": Metric("nats", "NLL (nats)", dvc=True),
        "nll_se": Metric("nats", dvc=True),
        "distance": Metric("", "distance", dvc=True),
        **{f"w2_euler_{k}": Metric("", f"W2 ({k} Euler)", dvc=True) for k in REFLOW_STEPS},
        **{f"before_w2_euler_{k}": Metric("", dvc=True) for k in REFLOW_STEPS},  # the model it came from
        **{f"w2_to_before_euler_{k}": Metric("", dvc=True) for k in REFLOW_STEPS},  # to that model's dopri5 samples
        "straightness": Metric("", "straightness", dvc=True),
        "before_straightness": Metric("", dvc=True),
        "before_nfe": Metric("NFE", dvc=True),
        "couples_nfe": Metric("NFE", dvc=True),  # the dopri5 NFE per solve of the round's couples
        **_SHARED,
    },
    "image": {
        "bpd": Metric("bits/dim", "NLL (bits/dim)", dvc=True),  # the paper's Table 1
        "bpd_se": Metric("bits/dim", dvc=True),
        "fid": Metric("", "FID", dvc=True),  # over all of a seed's samples
        "fid_equal_n": Metric(""),  # at the held-out split's n, beside the floor at the same n
        "fid_inf": Metric("", "FID∞", dvc=True),  # extrapolated to infinitely many samples
        **_SHARED,
        # a class-conditional run's (train.label_dropout set; docs/guidance.md): bpd is then -log p(x | y)
        "bpd_null": Metric("bits/dim", dvc=True),  # under the null label: the unconditional field's density
        "accuracy": Metric("", dvc=True),  # the classifier's, on the dopri5 samples against their requested labels
        "guided_fid": Metric("", dvc=True),  # FID at score.guidance_scale (sample.guidance_sampler, guidance_nfe)
        "guided_accuracy": Metric("", dvc=True),  # and the accuracy there
        "nll": Metric("nats"),  # per image
        "nll_se": Metric("nats"),
        "distance": Metric(""),
    },
    "pair": {  # a data-to-data flow (Tong et al. 2023): no density, so no NLL
        "w2": Metric("", "W2", dvc=True),  # exact, dopri5 samples to the target's held-out split
        **{f"w2_euler_{k}": Metric("", f"W2 ({k} Euler)", dvc=True) for k in EULER_STEPS},
        "npe": Metric("", "NPE", dvc=True),  # normalized path energy, |PE - W2^2| / W2^2
        "path_energy": Metric(""),
        "nfe": _SHARED["nfe"],
        "train_seconds": _SHARED["train_seconds"],
        "few_step": _SHARED["few_step"],
    },
}
"""The numeric metrics of a run's scores by kind of data (``fmexp.pipeline.stages.score``), in the order
DVC and the report show them."""

CONDITIONAL_METRICS = ("bpd_null", "accuracy", "guided_fid", "guided_accuracy")
"""The image metrics that only a class-conditional run writes."""

UNITS = {name: m.unit for kind in SCORED.values() for name, m in kind.items()}


def dvc_metrics(kind: str) -> list[str]:
    """The metrics of ``kind`` that ``metrics.json`` holds, in order."""
    return [name for name, m in SCORED[kind].items() if m.dvc]


def table_columns(kind: str) -> dict[str, str]:
    """The report's method-table columns for ``kind``: metric name to header."""
    return {name: m.column for name, m in SCORED[kind].items() if m.column is not None}


def data_kind(dataset: str, pairs: Collection[str] = ()) -> str:
    """``pair`` for one of ``pairs``, ``image`` for a registered image dataset, else ``flat``: the key of
    ``SCORED``."""
    from fmexp.registry import names

    if dataset in pairs:
        return "pair"
    return "image" if dataset in names("image_dataset") else "flat"
