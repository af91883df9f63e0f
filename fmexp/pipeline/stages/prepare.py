"""The prepare stage: each dataset's fixed splits in ``data/<dataset>.pt``."""

from __future__ import annotations

import logging
from pathlib import Path

from fmexp.config.load import pair_specs, run_for, to_plain
from fmexp.config.plan import auto_fid_backend, load_data
from fmexp.config.schema import Params
from fmexp.data.datasets import Dataset
from fmexp.pipeline.layout import data_file
from fmexp.runtime import artifacts

__all__ = ["prepare"]
log = logging.getLogger(__name__)


def prepare(params: Params, data_dir: str | Path = "data", datasets: list[str] | None = None) -> None:
    """Store each dataset's fixed splits in ``data/<dataset>.pt`` (a pair's with its source's, and the W2
    between their held-out splits); for digits, with the FID feature
    classifier trained on its training split, and that classifier's test accuracy; for images, with
    the FID reference: the feature statistics of the whole training split (``fid_reference``).
    ``datasets``: these only (default: ``pipeline.datasets``)."""
    for name in params.pipeline.datasets if datasets is None else datasets:
        pair = params.pairs.get(name)
        ds = load_data(params.data, name, params.datasets.get(name), pair, pair_specs(params, pair))
        payload = {"train": ds.train, "test": ds.test, "levels": ds.levels, "config": to_plain(params.data)}
        if ds.train_labels is not None:
            payload.update(train_labels=ds.train_labels, test_labels=ds.test_labels)
        if ds.source is not None:
            payload.update(_pair_extras(ds))
        if name == "digits":
            payload.update(_train_classifier())
        if ds.levels is not None:
            payload.update(_fid_reference(params, ds, payload))
        artifacts.save_torch(data_file(data_dir, name), payload)


def _pair_extras(ds: Dataset) -> dict[str, object]:
    """A pair's source splits, and the squared exact W2 between its two held-out splits: ``W2^2(q_0, q_1)``,
    the floor of every flow's path energy and the denominator of the score stage's NPE."""
    from fmexp.flow.metrics import wasserstein2

    assert ds.source is not None
    return {
        "source": {"name": ds.source.name, "train": ds.source.train, "test": ds.source.test},
        "w2_source_target": wasserstein2(ds.source.test, ds.test),
    }


def _fid_reference(params: Params, ds: Dataset, payload: dict[str, object]) -> dict[str, object]:
    """The training split's feature statistics under the dataset's FID backend (``score.fid_backend``
    as its runs resolve it); none, with a log line, where the Inception weights are not there yet:
    the score stage then computes them itself."""
    from fmexp.data.features import backend_kwargs, reference_stats

    assert ds.levels is not None  # called for image datasets only
    run = run_for(params, ds.name, params.pipeline.methods[0], params.pipeline.seeds[0])
    backend = auto_fid_backend(run, ds)
    if backend == "none":
        return {}
    try:
        return {
            "fid_reference": reference_stats(
                backend, ds.train, ds.levels, **backend_kwargs(backend, run.score.inception_weights, payload)
            )
        }
    except (FileNotFoundError, RuntimeError) as e:  # no weights file, or no torch-fidelity
        log.warning("prepare %s: no FID reference cached (%s); the score stage will compute it", ds.name, e)
        return {}


def _train_classifier() -> dict[str, object]:
    from fmexp.data.features import train_digits_classifier

    model, accuracy = train_digits_classifier(seed=0)
    return {"classifier": model.state_dict(), "classifier_accuracy": accuracy}
