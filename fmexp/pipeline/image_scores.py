"""The score stage's image scores: bits/dim, FID by the standard protocol (the samples' features
against the statistics of the whole training split), and a class-conditional run's guidance scores."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, cast

import numpy as np
import torch
from torch import Tensor

from fmexp.config.plan import Plan
from fmexp.config.schema import RunConfig
from fmexp.data.datasets import Dataset
from fmexp.flow.metrics import bits_per_dim, fid_scores
from fmexp.flow.ode import Rung
from fmexp.pipeline.layout import RunFiles
from fmexp.runtime import artifacts

__all__ = ["Fid", "fid_protocol", "bits_per_dim_of", "image_metrics", "guidance_metrics"]


class Fid(NamedTuple):
    """One run's FID protocol: the feature backend, its arguments, the statistics of the whole training
    split's features (``prepare`` caches them) and ``score``, the FID of a set of images against them."""

    backend: str
    kwargs: dict[str, Any]
    reference: dict[str, Any]
    score: Callable[[Tensor], float]


def fid_protocol(run: RunConfig, plan: Plan, data: Dataset, prepared: dict[str, Any]) -> Fid | None:
    """The run's FID protocol; None where ``score.fid_backend`` is none."""
    from fmexp.data.features import backend_kwargs, fid_against

    backend, levels = plan.fid_backend, data.levels
    assert backend is not None and levels is not None  # image data: resolve() chose a backend
    if backend == "none":
        return None
    kwargs = backend_kwargs(backend, run.score.inception_weights, prepared)
    reference = _train_reference(backend, data, prepared, kwargs)
    return Fid(backend, kwargs, reference, fid_against(backend, reference, levels, **kwargs))


def bits_per_dim_of(nll: Tensor, data: Dataset) -> Tensor:
    """Each held-out image's NLL in bits per dimension, at the data's quantization (``data_scale``)."""
    from fmexp.data.images import data_scale

    assert data.levels is not None  # image data
    return torch.as_tensor(bits_per_dim(nll, data.dim, scale=data_scale(data.levels)))


def image_metrics(
    run: RunConfig,
    plan: Plan,
    data: Dataset,
    nll: Tensor,
    samples: Tensor,
    ladder: dict[str, Tensor],
    files: RunFiles,
    prepared: dict[str, Any],
    fid: Fid | None,
) -> dict[str, float | str | None]:
    """Bits/dim of the held-out images (with its standard error over points), and FID by the standard
    protocol: the uint8 samples' features against the statistics of the whole training split (``fid``).

    ``fid_scores`` gives the FID of all samples, the floor of the held-out images and the samples' FID
    at the floor's n, their noise, and both extrapolated in 1/n. Also the FID of each fixed-step sample
    set of the NFE ladder, in ``fid_ladder.csv``, and ``few_step``: that of ``score.few_step``'s rung."""
    from fmexp.data.features import features

    bpd = bits_per_dim_of(nll, data)
    likelihood = {"bpd": float(bpd.mean()), "bpd_se": float(bpd.std() / len(bpd) ** 0.5)}
    if fid is None:  # asked for: no FID, recorded as not a number
        artifacts.write_csv(files.fid_ladder, [])
        return {**likelihood, "fid": None, "fid_reason": "score.fid_backend is none", "fid_backend": "none"}
    assert data.levels is not None
    generated = features(fid.backend, samples, data.levels, **fid.kwargs).cpu().numpy()
    real = features(fid.backend, data.test, data.levels, **fid.kwargs).cpu().numpy()
    ref = np.asarray(fid.reference["mu"]), np.asarray(fid.reference["sigma"])
    out: dict[str, float | str | None] = {
        **likelihood,
        **fid_scores(generated, real, *ref, np.random.default_rng(plan.streams.reference)),
        "fid_backend": fid.backend,
        "fid_reference": f"train split, {fid.reference['n']} images",
    }
    fid_of = {Rung.parse(key): fid.score(x) for key, x in ladder.items()}
    rows = [{"solver": r.solver, "grid": r.grid, "steps": r.steps, "nfe": r.nfe, "fid": f} for r, f in fid_of.items()]
    artifacts.write_csv(files.fid_ladder, rows)
    out["few_step"] = fid_of.get(Rung.parse(run.score.few_step_rung))
    if "classifier_accuracy" in prepared and fid.backend == "digits-classifier":
        out["fid_classifier_accuracy"] = float(cast(float, prepared["classifier_accuracy"]))
    return out


def _train_reference(backend: str, data: Dataset, prepared: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The FID reference: the statistics of the whole training split's features, as ``prepare`` cached them
    (computed here where it did not, or for another backend)."""
    from fmexp.data.features import reference_stats

    assert data.levels is not None
    cached = cast(dict[str, Any] | None, prepared.get("fid_reference"))
    if cached and cached["backend"] == backend:
        return cached
    return reference_stats(backend, data.train, data.levels, **kwargs)


def guidance_metrics(
    run: RunConfig,
    data: Dataset,
    nll_null: Tensor,
    sampled: dict[str, Any],
    info: dict[str, Any],
    files: RunFiles,
    prepared: dict[str, Any],
    fid: Fid | None,
) -> dict[str, float | None]:
    """A class-conditional run's scores (Ho and Salimans 2022): bits/dim under the null label
    (``bpd_null``; ``bpd`` is under each point's own); the classifier's accuracy on the dopri5 samples
    against their requested labels (digits: the FID classifier); and, in ``guidance.csv``, per guidance
    scale w of ``sample.guidance`` (``info``: how the sample stage drew them): FID against the training
    split (the requested labels are in its class proportions) and accuracy overall and per class.
    ``guided_fid`` and ``guided_accuracy`` are those at ``score.guidance_scale``. No bits/dim for w != 0:
    the guided field's is no trained density."""
    from fmexp.data.features import backend_kwargs
    from fmexp.data.images import level_centres
    from fmexp.flow.guidance import class_accuracy

    levels, k = data.levels, data.num_classes
    assert levels is not None  # validate_run: guidance is for images
    labels, guided = sampled["labels"], sampled["guided"]
    classifier = backend_kwargs("digits-classifier", None, prepared)["classifier"] if "classifier" in prepared else None

    def accuracy(x: Tensor, requested: Tensor) -> tuple[float | None, list[float]]:
        if classifier is None:  # no classifier of these images' classes
            return None, [float("nan")] * k
        with torch.no_grad():
            predicted = torch.cat([classifier(level_centres(c, levels)).argmax(1) for c in x.split(1000)])
        return class_accuracy(predicted, requested, k)

    rows = []
    for key, x in guided.items():
        overall, per_class = accuracy(x, labels[: len(x)])
        rows.append(
            {
                "w": float(key),
                "sampler": info["sampler"],
                "nfe": info["nfe"],
                "rows_per_call": info["rows_per_call"][key],
                "samples": len(x),
                "fid": None if fid is None else fid.score(x),
                "accuracy": overall,
                **{f"accuracy_{c}": a for c, a in enumerate(per_class)},
            }
        )
    artifacts.write_csv(files.guidance, rows)
    at = next((r for r in rows if r["w"] == run.score.guidance_scale), None)
    return {
        "bpd_null": float(bits_per_dim_of(nll_null, data).mean()),
        "accuracy": accuracy(sampled["samples"], labels)[0],
        "guided_fid": None if at is None else cast(float | None, at["fid"]),
        "guided_accuracy": None if at is None else cast(float | None, at["accuracy"]),
    }
