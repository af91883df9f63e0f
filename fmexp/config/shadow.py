"""Settings that a change to params.yaml's base sections cannot reach, because ``per_dataset`` or a
method's ``overrides`` sets them.

The precedence, lowest first (docs/pipeline.md#precedence): the schema's defaults, the base sections
of params.yaml (``model``, ``train``, ``sample``, ``score``), ``per_dataset.<dataset>``, a method's
own ``methods.<m>.overrides.<dataset>``, then the overrides of the command line or of a study's
trial. ``dvc exp run -S train.steps=300`` edits the base section, so for a dataset whose
``per_dataset`` entry sets ``train.steps`` it changes nothing. That is the precedence working, but a
researcher who asked for it must hear so: ``shadowed`` finds each such key, against the baseline
params (the committed params.yaml), and the commands warn.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import reduce
from typing import Any

from fmexp.config.overrides import parse_overrides
from fmexp.config.schema import Params

__all__ = ["Shadowed", "shadowed"]


@dataclass(frozen=True)
class Shadowed:
    """Base ``key`` was changed to ``base``, but ``source`` (``per_dataset.<dataset>``, or a method's
    ``overrides.<dataset>``) keeps it at ``in_effect`` for ``runs`` (a dataset, or a method on one)."""

    runs: str
    source: str
    key: str
    base: Any
    in_effect: Any

    def __str__(self) -> str:
        return (
            f"{self.key}={self.base!r} does not apply to {self.runs}: {self.source} sets"
            f" {self.key}={self.in_effect!r}, the value in effect (edit that entry, or pass {self.key} on the"
            " command line, which wins over it)"
        )


def _get(params: Params, key: str) -> Any:
    return reduce(getattr, key.split("."), params)


def shadowed(params: Params, baseline: Params, datasets: Iterable[str]) -> list[Shadowed]:
    """The base-section keys whose value differs from ``baseline``'s, and which ``per_dataset`` or a
    method's ``overrides`` sets for one of ``datasets``."""
    out = []
    for d in datasets:
        sources = [(d, f"per_dataset.{d}", params.per_dataset.get(d, []))]
        sources += [
            (f"{m} on {d}", f"methods.{m}.overrides.{d}", c.overrides.get(d, [])) for m, c in params.methods.items()
        ]
        for runs, source, entries in sources:
            for ov in parse_overrides(entries, source):
                key = ov.key_or_group
                if _get(params, key) != _get(baseline, key):
                    out.append(Shadowed(runs, source, key, _get(params, key), ov.value()))
    return out
