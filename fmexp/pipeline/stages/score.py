"""The score stage: one seed's held-out NLL, sample distance and NFE; for images bits/dim and FID; for a
pair (a data-to-data flow) exact W2, few-step W2 and the normalized path energy."""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fmexp.config.plan import Plan, held_out
from fmexp.config.schema import RunConfig
from fmexp.data.datasets import Dataset
from fmexp.flow.guidance import Guided
from fmexp.flow.likelihood import log_likelihood, log_mean_likelihood
from fmexp.flow.methods import Method
from fmexp.flow.metrics import sample_distance
from fmexp.flow.ode import Field, chunks
from fmexp.flow.units import EULER_STEPS, REFLOW_STEPS
from fmexp.pipeline.image_scores import fid_protocol, guidance_metrics, image_metrics
from fmexp.pipeline.layout import RunFiles, data_file
from fmexp.runtime import artifacts
from fmexp.training.state import load_trained

__all__ = ["score_run", "prepared_extras"]


def _reflow_metrics(
    run: RunConfig,
    method: Method,
    v: Field,
    data: Dataset,
    files: RunFiles,
    sampled: dict[str, Any],
    gen: torch.Generator,
) -> dict[str, float]:
    """A reflow round against the flow it came from, at equal NFE (Liu et al. 2022): the exact W2 to held-out
    data after 1, 2, 4 and 8 Euler steps, the round's and the previous flow's (``before_``), and the round's
    to the previous flow's dopri5 samples; the straightness of both, from ``score.n_points`` noise points
    (64 times); the previous flow's dopri5 NFE and the couples' (``reflow`` stage)."""
    from fmexp.flow.metrics import wasserstein2
    from fmexp.flow.reflow import straightness
    from fmexp.pipeline.stages.reflow import previous_flow

    assert run.reflow is not None
    before_files = files.sibling(run.reflow.previous)
    before = artifacts.load_torch(before_files.samples)
    own, theirs = sampled["ladder"], before["ladder"]  # validate_run: euler at every REFLOW_STEPS
    starts = method.sample_source((run.score.n_points, data.dim), gen, gen.device)
    tol = run.sample.tolerances
    _, before_v = previous_flow(run, data, files)
    return {
        **{f"w2_euler_{k}": wasserstein2(own[f"euler:{k}"], data.test) for k in REFLOW_STEPS},
        **{f"before_w2_euler_{k}": wasserstein2(theirs[f"euler:{k}"], data.test) for k in REFLOW_STEPS},
        **{f"w2_to_before_euler_{k}": wasserstein2(own[f"euler:{k}"], before["samples"]) for k in REFLOW_STEPS},
        "straightness": straightness(v, starts, rtol=tol["rtol"], atol=tol["atol"]),
        "before_straightness": straightness(before_v, starts, rtol=tol["rtol"], atol=tol["atol"]),
        "before_nfe": artifacts.read_json(before_files.sample_info)["nfe"],
        "couples_nfe": artifacts.read_json(files.couples_info)["nfe"],
    }


def _on_rung(ladder: dict[str, Tensor], run: RunConfig, quality: Callable[[Tensor], float]) -> float | None:
    """``quality`` of the ladder's samples of ``score.few_step`` at ``score.few_step_nfe``: the ``few_step``
    metric; None where the ladder has no such rung (``fmexp.config.sampling.few_step_error``)."""
    key = run.score.few_step_rung
    return quality(ladder[key]) if key in ladder else None


def _pair_metrics(
    run: RunConfig,
    plan: Plan,
    model: torch.nn.Module,
    data: Dataset,
    files: RunFiles,
    data_dir: str | Path,
    density: bool,
) -> dict[str, float | str | None]:
    """A data-to-data flow's scores (Tong et al. 2023, Sec. 5.1): the exact W2 of the dopri5 samples to the
    target's held-out split (POT's network simplex; both ``pairs.<p>.n_test`` points), the same after 1, 2
    and 4 Euler steps (``w2_euler_<k>``), and the normalized path energy ``npe`` along dopri5 trajectories
    from ``score.n_points`` held-out source points (64 times), against the ``W2^2`` between the two
    held-out splits that ``prepare`` stored. No NLL: the source is data, with no density."""
    from fmexp.flow.metrics import normalized_path_energy, path_energy, wasserstein2

    assert data.source is not None
    method = held_out(plan.method, data)
    sampled_state = artifacts.load_torch(files.samples)
    sampled = artifacts.read_json(files.sample_info)
    ladder = sampled_state["ladder"]  # validate_run: it has euler at every EULER_STEPS
    start = time.perf_counter()
    w2_squared = _source_target_w2(data, data_dir) ** 2
    gen = torch.Generator(device=plan.device).manual_seed(plan.streams.scoring)
    starts = method.sample_source((min(run.score.n_points, len(data.source.test)), data.dim), gen, plan.device)
    tol = run.sample.tolerances
    energy = path_energy(method.velocity(model), starts, rtol=tol["rtol"], atol=tol["atol"])
    w2_of = {f"euler:{k}": wasserstein2(ladder[f"euler:{k}"], data.test) for k in EULER_STEPS}
    metrics: dict[str, float | str | None] = {
        "w2": wasserstein2(sampled_state["samples"], data.test),
        **{f"w2_euler_{k}": w2_of[f"euler:{k}"] for k in EULER_STEPS},
        "few_step": w2_of[key]
        if (key := run.score.few_step_rung) in w2_of
        else _on_rung(ladder, run, lambda x: wasserstein2(x, data.test)),
        "npe": normalized_path_energy(energy, w2_squared),
        "path_energy": energy,
        "w2_source_target": w2_squared**0.5,
        "nfe": sampled["nfe"],
    }
    if density:
        artifacts.save_torch(files.density, {})
    seconds = time.perf_counter() - start
    artifacts.write_json(files.metrics, metrics)
    artifacts.write_json(files.log("score"), {"seconds": seconds})
    trained = artifacts.read_json(files.log("train")) if files.log("train").exists() else {}
    return {**metrics, "train_seconds": trained.get("seconds")}


def _source_target_w2(data: Dataset, data_dir: str | Path) -> float:
    """The exact W2 between a pair's two held-out splits: as ``prepare`` stored it for these very splits, or
    computed here (a sweep's data, or splits unlike the stored ones)."""
    from fmexp.flow.metrics import wasserstein2

    assert data.source is not None
    path = data_file(data_dir, data.name)
    stored = artifacts.load_torch(path) if path.exists() else {}
    same = "source" in stored and all(
        torch.equal(a, b) for a, b in ((stored["source"]["test"], data.source.test), (stored["test"], data.test))
    )
    return float(stored["w2_source_target"]) if same else wasserstein2(data.source.test, data.test)


@functools.cache
def prepared_extras(data_dir: str, dataset: str) -> dict[str, object]:
    """What ``prepare`` stored besides the splits: the FID reference statistics, and for digits the FID
    classifier and its test accuracy. Without a prepared file (a sweep), the digits classifier is
    trained here, and the reference statistics are left to the score stage."""
    path = data_file(data_dir, dataset)
    state = artifacts.load_torch(path) if path.exists() else {}
    extras = {k: v for k, v in state.items() if k in ("classifier", "classifier_accuracy", "fid_reference")}
    if dataset == "digits" and "classifier" not in extras:
        from fmexp.data.features import train_digits_classifier

        model, accuracy = train_digits_classifier(seed=0)
        extras.update(classifier=model.state_dict(), classifier_accuracy=accuracy)
    return extras


def _nll_floor(dataset: str, points: Tensor) -> float | None:
    """The cross-entropy ``-mean log q(x)`` of the scored held-out points under the data's true density
    ``q``, where it has a closed form (``fmexp.data.toy.LOG_DENSITIES``): the floor of the NLL of those
    very points, which the population entropy is only on average."""
    from fmexp.data.toy import LOG_DENSITIES

    if dataset not in LOG_DENSITIES:
        return None
    return float(-LOG_DENSITIES[dataset](points.double().numpy()).mean())


def _log_likelihood(
    run: RunConfig, plan: Plan, field_of: Callable[[slice], Field], draws: list[Tensor]
) -> tuple[Tensor, float]:
    """``log p(x)`` of the held-out points (``draws``: their dequantizations, combined by log-mean-exp)
    under the field ``field_of(part)`` of each chunk ``part`` of ``score.batch_size`` points, and the
    solves' mean NFE over chunks."""
    results = [
        log_mean_likelihood(
            field_of(part),
            [d[part] for d in draws],
            probe_seed=_probe_seed(plan.streams.probes, j),
            divergence=plan.divergence,
            probe=run.score.probe,
            probes=run.score.probes,
            prior_std=plan.method.prior_std,
            **run.sample.tolerances,
        )
        for j, part in enumerate(chunks(len(draws[0]), run.score.batch_size))
    ]
    return torch.cat([r.logp for r in results]), statistics.mean(r.nfe for r in results)


def _probe_seed(seed: int, chunk: int) -> int:
    """The Hutchinson probes' seed for chunk ``chunk`` of the held-out points: the probe stream's own for
    the first, one spawned from (seed, chunk) for each other, so that no two chunks share probes."""
    return seed if chunk == 0 else int(np.random.SeedSequence([seed, chunk]).generate_state(1)[0])


def score_run(
    run: RunConfig, data: Dataset, files: RunFiles, *, density: bool = True, data_dir: str | Path = "data"
) -> dict[str, float | str | None]:
    """Write ``metrics.json``: held-out NLL (nats), sample distance, NFE, training time and speed; for
    images also bits/dim with its standard error, and FID with its feature backend. The likelihood
    solves run in chunks of ``score.batch_size`` points; ``nfe_nll`` is then the mean over chunks.

    With ``density``, also writes ``density.pt``: the log-density ``log p_t`` of the model's path at each
    time of ``score.density_times``, on a ``score.density_grid`` square over the data's range (2-D data
    only; dopri5 at 1e-4), for the paper's Fig. 4 panels.
    """
    plan, model = load_trained(run, data, files.model)
    if data.source is not None:
        return _pair_metrics(run, plan, model, data, files, data_dir, density)
    method, device = plan.method, plan.device
    v = method.velocity(model)
    gen = torch.Generator(device=device).manual_seed(plan.streams.scoring)
    points = data.test[: run.score.n_points].to(device)
    draws = [data.model_space(points, gen) for _ in range(run.score.dequant_draws if plan.images else 1)]
    conditional = run.train.label_dropout is not None
    start = time.perf_counter()
    if conditional:  # -log p(x | y) under each held-out point's own label
        assert data.test_labels is not None  # validate_run: a conditional run's data has labels
        own = data.test_labels[: run.score.n_points].to(device)
        logp, nfe_nll = _log_likelihood(
            run, plan, lambda part: method.velocity(Guided(model, own[part], data.num_classes)), draws
        )
    else:
        logp, nfe_nll = _log_likelihood(run, plan, lambda part: v, draws)
    nll_seconds = time.perf_counter() - start
    sampled_state = artifacts.load_torch(files.samples)
    samples = sampled_state["samples"]  # as Dataset.stored keeps them: image samples as uint8 levels
    sampled = artifacts.read_json(files.sample_info)
    reference = data.model_space(
        data.test, torch.Generator().manual_seed(plan.streams.reference)
    )  # the held-out split, as the model sees it
    nll = -logp.cpu()
    metrics: dict[str, float | str | None] = {
        "nll": float(nll.mean()),
        "nll_se": float(nll.std() / len(nll) ** 0.5),
        "distance": sample_distance(run.score.distance, data.unstored(samples), reference),
        "distance_name": run.score.distance,
        "few_step": _on_rung(
            sampled_state["ladder"], run, lambda x: sample_distance(run.score.distance, data.unstored(x), reference)
        ),
        "nfe": sampled["nfe"],
        "nfe_nll": nfe_nll,
    }
    if run.reflow is not None:
        straight_gen = torch.Generator(device=device).manual_seed(plan.streams.straightness)
        metrics.update(_reflow_metrics(run, method, v, data, files, sampled_state, straight_gen))
    floor = _nll_floor(data.name, points.cpu())
    if floor is not None:
        metrics["nll_floor"] = floor
    if plan.images:
        prepared = prepared_extras(str(data_dir), data.name)
        fid = fid_protocol(run, plan, data, prepared)
        ladder = sampled_state.get("ladder", {})
        metrics.update(image_metrics(run, plan, data, nll, samples, ladder, files, prepared, fid))
        if conditional:  # -log p(x) under the null label: the unconditional field's density
            nll_null = -_log_likelihood(run, plan, lambda part: v, draws)[0].cpu()
            metrics.update(
                guidance_metrics(run, data, nll_null, sampled_state, sampled["guidance"], files, prepared, fid)
            )
    if density:  # the pipeline's output; empty where it does not apply (grid 0 or data not 2-D)
        grid_n = run.score.density_grid if data.dim == 2 else 0
        payload: dict[str, Tensor] = {}
        if grid_n > 0:
            lo, hi = data.test.min(0).values - 0.5, data.test.max(0).values + 0.5
            axes = [torch.linspace(float(lo[i]), float(hi[i]), grid_n) for i in range(2)]
            grid = torch.stack(torch.meshgrid(*axes, indexing="xy"), -1).reshape(-1, 2).to(device)
            times = run.score.density_times
            logp = torch.stack(
                [log_likelihood(v, grid, prior_std=method.prior_std, rtol=1e-4, atol=1e-4, t=t).logp for t in times]
            )
            payload = {
                "x": axes[0],
                "y": axes[1],
                "t": torch.tensor(times),
                "logp": logp.reshape(len(times), grid_n, grid_n).cpu(),
            }
        artifacts.save_torch(files.density, payload)
    artifacts.write_json(files.metrics, metrics)
    artifacts.write_json(files.log("score"), {"nll_seconds": nll_seconds})
    trained = artifacts.read_json(files.log("train")) if files.log("train").exists() else {}
    return {**metrics, "nll_seconds": nll_seconds, "train_seconds": trained.get("seconds")}
