"""Each method at its best: the settings that a tuning study chose for every method it ran, and the
report's section on each tuning study (``sweep.tuning``): one shared recipe against each method at its
best, both read from the same trials.

A tuning study searches ``method`` with other keys (``studies/tune_<dataset>.yaml``). For the keys in
its ``shared`` list one value is chosen for every method, the one whose methods' best objectives have
the best mean (each method at its best value of the other keys); for the others each method takes its
own best. ``params.yaml`` carries the result (``per_dataset`` for the shared keys,
``methods.<m>.overrides`` for the rest), and a test checks that the two agree.
"""

from __future__ import annotations

from functools import reduce
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from fmexp.config.load import run_for
from fmexp.config.schema import Params
from fmexp.report.tables import by_seed, method_table

__all__ = ["completed", "tuned_settings", "shared_recipe", "tuning_sections"]


def completed(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials of ``trials.csv`` that count: complete, and not superseded by a rerun."""
    done = trials[trials.state == "COMPLETE"]
    return done[~done.superseded.astype(bool)] if "superseded" in done else done


def tuned_settings(
    trials: pd.DataFrame, objective: str, direction: str, shared: list[str]
) -> dict[str, dict[str, Any]]:
    """Each method's chosen value of every searched key but ``method``, from a tuning study's completed
    trials (``params_<key>`` columns and the objective's mean over seeds)."""
    done = completed(trials)
    keys = [c.removeprefix("params_") for c in done if c.startswith("params_") and c != "params_method"]
    sign = 1.0 if direction == "minimize" else -1.0
    best = done.loc[
        (sign * done[objective]).groupby([done.params_method, *(done[f"params_{k}"] for k in shared)]).idxmin()
    ]
    chosen: dict[str, Any] = {}
    if shared:
        columns = [f"params_{k}" for k in shared]
        means = best.groupby(columns)[objective].agg(["mean", "size"])
        means = means[means["size"] == done.params_method.nunique()]  # only values that every method ran
        if means.empty:
            raise ValueError(f"no value of {shared} was run with every method")
        pick = (sign * means["mean"]).idxmin()
        chosen = dict(zip(shared, pick if isinstance(pick, tuple) else (pick,), strict=True))
        best = best[(best[columns] == pd.Series(chosen).set_axis(columns)).all(axis=1)]
    return {
        str(row.params_method): {k: (chosen[k] if k in chosen else row[f"params_{k}"]) for k in keys}
        for _, row in best.iterrows()
    }


def shared_recipe(params: Params, dataset: str, method: str, keys: list[str]) -> dict[str, Any]:
    """The value of each of ``keys`` in the shared recipe: params.yaml's base sections and ``per_dataset``,
    without the method's own overrides."""
    run = run_for(params, dataset, method, 0, own=False)
    return {k: reduce(getattr, k.split("."), run) for k in keys}


def _matching(trials: pd.DataFrame, values: dict[str, Any]) -> pd.DataFrame:
    keep = pd.Series(True, index=trials.index)
    for k, v in values.items():
        keep &= trials[f"params_{k}"] == v
    return trials[keep]


def tuning_sections(params: Params, reports_dir: Path) -> list[dict[str, Any]]:
    """For each tuning study with results: the settings each method chose, its objective there and at the
    shared recipe, and the shared recipe's full table in the paper's layout with its paired tests."""
    sections = []
    for name in params.sweep.tuning:
        folder = reports_dir / "sweeps" / name
        if not (folder / "trials.csv").exists():
            sections.append({"name": name, "note": f"No results: run `python -m fmexp.sweep studies/{name}.yaml`."})
            continue
        cfg = yaml.safe_load((folder / "study.yaml").read_text())["config"]
        trials = completed(pd.read_csv(folder / "trials.csv"))
        dataset, seeds, objective = cfg["dataset"], cfg["seeds"], cfg["objectives"][0]
        metric, direction = objective["metric"], objective["direction"]
        chosen = tuned_settings(trials, metric, direction, cfg.get("shared", []))
        methods = [m for m in params.pipeline.methods if m in chosen] + sorted(
            set(chosen) - set(params.pipeline.methods)
        )
        keys = [k for k in cfg["search_space"] if k != "method"]
        shared = shared_recipe(params, dataset, methods[0], keys)
        rows = []
        for m in methods:
            mine, base = _matching(trials, {"method": m, **chosen[m]}), _matching(trials, {"method": m, **shared})
            rows.append(
                {
                    "method": m,
                    **{f"best {k}": chosen[m][k] for k in keys},
                    f"{metric} at best": _mean_std(mine[f"seed{s}_{metric}"] for s in seeds),
                    f"{metric} at the shared recipe": _mean_std(base[f"seed{s}_{metric}"] for s in seeds),
                }
            )
        at_shared = _matching(trials, shared)
        _, display = method_table(by_seed(at_shared, dataset, seeds), dataset, methods)
        recipe = ", ".join(f"{k}={v}" for k, v in shared.items())
        sections.append(
            {
                "name": name,
                "dataset": dataset,
                "chosen": pd.DataFrame(rows).set_index("method"),
                "shared": display,
                "note": (
                    f"{len(trials)} trials of {len(seeds)} seeds ({', '.join(map(str, seeds))}) on {dataset}, by"
                    f" {metric} ({direction}); the grid is in studies/{name}.yaml. Chosen per method:"
                    f" {', '.join(k for k in keys if k not in cfg.get('shared', []))}"
                    + (f"; chosen once for all methods: {', '.join(cfg['shared'])}" if cfg.get("shared") else "")
                    + f". The shared recipe ({recipe}) comes from the same trials. Each seed's metrics are the"
                    " pipeline's, but for what the study leaves out (its overrides)."
                ),
            }
        )
    return sections


def _mean_std(columns: Any) -> str:
    values = pd.concat(list(columns), ignore_index=True).dropna()
    return f"{values.mean():.4g} ± {values.std(ddof=1):.2g}" if len(values) > 1 else f"{values.mean():.4g}"
