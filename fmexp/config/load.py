"""Reading ``params.yaml`` into the typed schema, with overrides, and the config of one run.

``load_params`` fails at load time on an unknown key, a wrong type or an out-of-range value, with
the file and the dotted key in the message. Overrides use Hydra's override grammar
(``train.lr=1e-3``, ``+methods.fm_ot2={objective: fm, path: ot}``; ``fmexp.config.overrides``), the
same syntax that ``dvc exp run -S`` writes into params.yaml.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from fmexp.config.overrides import (
    apply_overrides,
    not_one_of,
    parse_overrides,
    read_text,
    read_yaml,
    structured,
    to_object,
)
from fmexp.config.schema import (
    PER_DATASET_SECTIONS,
    PairConfig,
    Params,
    ReflowRun,
    RunConfig,
    parse_reflow,
    reflow_name,
    straight,
)
from fmexp.config.validate import dataset_names, validate_params, validate_run
from fmexp.errors import ConfigError
from fmexp.runtime.signals import held

__all__ = ["load_params", "run_for", "run_config", "pair_specs", "to_plain"]


def load_params(path: str | Path = "params.yaml", overrides: Sequence[str] = ()) -> Params:
    """Load, override and validate ``params.yaml``.

    ``overrides`` win over the file's ``per_dataset`` entries and the methods' ``overrides`` too:
    ``train.steps=10`` on the command line sets 10 steps for every run, whatever
    ``per_dataset.digits`` says.

    Validated once per process for one text of the file and one list of overrides (a stage that
    ``dvc repro`` runs loads params.yaml twice: to check ``dvc.yaml``, and to run); each call gets its
    own copy.
    """
    text = read_text(path)
    key = (str(Path(path).resolve()), text, tuple(overrides))
    params = _LOADED.get(key)
    if params is None:
        params = _validated(path, text, overrides)
        _LOADED.clear()  # one entry: the file a process works from
        _LOADED[key] = params
    return copy.deepcopy(params)


_LOADED: dict[tuple[str, str, tuple[str, ...]], Params] = {}


def _validated(path: str | Path, text: str, overrides: Sequence[str]) -> Params:
    """``load_params`` of the file's ``text``."""
    cfg = structured(Params, read_yaml(path, text), str(path))
    apply_overrides(cfg, overrides, f"{path} overrides")
    params: Params = to_object(cfg, str(path))
    given = [ov.key_or_group for ov in parse_overrides(overrides, f"{path} overrides")]

    def kept(entries: list[str], source: str) -> list[str]:
        parsed = parse_overrides(entries, f"{path}: {source}")
        return [
            e
            for e, ov in zip(entries, parsed, strict=True)
            if not any(ov.key_or_group == g or ov.key_or_group.startswith(g + ".") for g in given)
        ]

    for dataset, entries in params.per_dataset.items():
        params.per_dataset[dataset] = kept(entries, f"per_dataset.{dataset}")
    for name, method in params.methods.items():
        for dataset, entries in method.overrides.items():
            method.overrides[dataset] = kept(entries, f"methods.{name}.overrides.{dataset}")
    params.reflow.overrides = kept(params.reflow.overrides, "reflow.overrides")
    errors = validate_params(params) or _per_dataset_errors(params) or _cell_errors(params)
    if errors:
        raise ConfigError(f"{path}: " + "; ".join(errors))
    return params


def run_for(params: Params, dataset: str, method: str, seed: int, *, own: bool = True) -> RunConfig:
    """The config of one pipeline run: one dataset, one named method, one seed, with the dataset's
    ``per_dataset`` overrides applied, then (with ``own``) the method's own for that dataset
    (``methods.<m>.overrides``); without, the shared recipe."""
    if dataset not in dataset_names(params.datasets, params.pairs):
        raise ConfigError(not_one_of("dataset", dataset, dataset_names(params.datasets, params.pairs)))
    if method not in params.methods and (reflowed := parse_reflow(method)) is not None:
        return _reflow_round(params, dataset, *reflowed, seed)
    if method not in params.methods:
        raise ConfigError(not_one_of("method", method, [*sorted(params.methods), *params.rounds_of(dataset)]))
    pair = params.pairs.get(dataset)
    run = RunConfig(
        dataset=dataset,
        dataset_spec=params.datasets.get(dataset),
        pair=pair,
        pair_specs=pair_specs(params, pair),
        method_name=method,
        method=params.methods[method],
        seed=seed,
        data=params.data,
        model=params.model,
        train=params.train,
        sample=params.sample,
        score=params.score,
    )
    for source, overrides in (
        (f"per_dataset.{dataset}", params.per_dataset.get(dataset, [])),
        (f"methods.{method}.overrides.{dataset}", params.methods[method].overrides.get(dataset, []) if own else []),
    ):
        if overrides:
            run = run_config(run, overrides, source)
    if errors := validate_run(run):  # the run's own rules: a pair's bind every method on it, guidance needs labels
        raise ConfigError(f"cell {dataset}/{method}: " + "; ".join(errors))
    return run


def _reflow_round(params: Params, dataset: str, method: str, k: int, seed: int) -> RunConfig:
    """Round ``k`` of reflowing ``method`` on ``dataset``: the cell's own run, with the straight path between
    stored couples (OT with ``sigma_min = 0``: eq. 20-22, Liu et al.'s interpolant) and ``reflow.overrides``."""
    name = reflow_name(method, k)
    if f"{dataset}/{method}" not in params.reflow.cells or not 1 <= k <= params.reflow.rounds:
        raise ConfigError(
            f"method: {name!r} is round {k} of reflowing {dataset}/{method}, which does not exist: reflow.cells"
            f" {params.reflow.cells} run rounds 1..reflow.rounds={params.reflow.rounds}"
        )
    base = run_for(params, dataset, method, seed)
    own = run_config(base, params.reflow.overrides, "reflow.overrides") if params.reflow.overrides else base
    run = dataclasses.replace(
        own,
        method_name=name,
        method=straight(),
        reflow=ReflowRun(
            of=method, round=k, n_pairs=params.reflow.n_pairs, previous_method=base.method if k == 1 else straight()
        ),
    )
    if errors := validate_run(run):  # a round's own rules: the Euler rungs that score it
        raise ConfigError(f"cell {dataset}/{name}: " + "; ".join(errors))
    return run


def _cell_errors(p: Params) -> list[str]:
    """Each cell on a pair, and each reflow round, gives a valid run: a method that can start from data, a
    ladder with the few Euler steps that score it (``validate_run``)."""
    errors = []
    for dataset, method in p.cell_list():
        if dataset in p.pairs or parse_reflow(method) is not None:
            try:
                run_for(p, dataset, method, 0)
            except ConfigError as e:
                errors.append(f"pipeline: {e}")
    return errors


def pair_specs(params: Params, pair: PairConfig | None) -> dict[str, Any]:
    """The specs of ``pair``'s datasets that are the user's (``datasets.<name>``)."""
    if pair is None:
        return {}
    return {d: params.datasets[d] for d in (pair.source, pair.target) if d in params.datasets}


def _per_dataset_errors(p: Params) -> list[str]:
    """Each ``per_dataset`` entry, and each dataset of a method's ``overrides``, must name a dataset
    and set keys of ``PER_DATASET_SECTIONS`` to values that give a valid run."""
    errors = []
    entries = [(f"per_dataset.{d}", d, o, next(iter(p.methods), None)) for d, o in p.per_dataset.items()]
    entries += [(f"methods.{m}.overrides.{d}", d, o, m) for m, c in p.methods.items() for d, o in c.overrides.items()]
    for ov in parse_overrides(p.reflow.overrides, "reflow.overrides"):
        if ov.key_or_group.split(".")[0] not in PER_DATASET_SECTIONS or ov.is_add() or ov.is_delete():
            errors.append(
                f"reflow.overrides: {ov.input_line!r} must set a key of {list(PER_DATASET_SECTIONS)} (key=value)"
            )
    for key, dataset, overrides, method in entries:
        if dataset not in dataset_names(p.datasets, p.pairs):
            errors.append(not_one_of(key, dataset, dataset_names(p.datasets, p.pairs)))
            continue
        for ov in parse_overrides(overrides, key):
            if ov.key_or_group.split(".")[0] not in PER_DATASET_SECTIONS or ov.is_add() or ov.is_delete():
                errors.append(f"{key}: {ov.input_line!r} must set a key of {list(PER_DATASET_SECTIONS)} (key=value)")
        if not errors and method is not None and dataset not in p.pairs:  # a pair's cells: _cell_errors
            try:
                run_for(p, dataset, method, 0)
            except ConfigError as e:
                errors.append(str(e))
    return errors


def run_config(base: RunConfig, overrides: Sequence[str], source: str) -> RunConfig:
    """``base`` with Hydra-grammar overrides applied and validated."""
    with held():  # a SIGTERM inside OmegaConf would surface as an unrelated error (fmexp/runtime/signals.py)
        cfg = OmegaConf.structured(base)
        apply_overrides(cfg, overrides, source)
        run: RunConfig = to_object(cfg, source)
    errors = validate_run(run)
    if errors:
        raise ConfigError(f"{source}: " + "; ".join(errors))
    return run


def to_plain(obj: Any) -> Any:
    """A dataclass config as plain dicts and lists (for JSON, checkpoints and reports)."""
    with held():
        return OmegaConf.to_container(OmegaConf.structured(obj), resolve=True)
