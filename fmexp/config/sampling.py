"""Validation of how a run samples and is scored: the fixed-step samplers and time grids of the NFE
ladder, the few-step metric's rung, the likelihood's estimator, and classifier-free guidance (a time
grid that the method's path defines: ``fmexp.config.validate``)."""

from __future__ import annotations

from fmexp.config.checks import Errors
from fmexp.config.schema import RunConfig, SampleConfig, ScoreConfig
from fmexp.registry import names

__all__ = ["DIVERGENCES", "PROBES", "sample_errors", "score_errors", "guidance_errors", "few_step_error"]

DIVERGENCES = ("auto", "exact", "hutchinson")
"""``score.divergence``: ``auto`` is exact for 2-D data, Hutchinson's estimator for images (config is
imported without torch, so not ``fmexp.flow.likelihood``'s)."""
PROBES = ("rademacher", "gaussian")


def sample_errors(sample: SampleConfig) -> list[str]:
    e = Errors()
    e.one_of("sample.method", sample.method, names("adaptive_solver", "fixed_solver"))
    for key in ("rtol", "steps", "n_samples"):
        e.positive(f"sample.{key}", getattr(sample, key))
    for key in ("atol", "batch_size", "ladder_samples"):
        if getattr(sample, key) is not None:
            e.positive(f"sample.{key}", getattr(sample, key))
    for s in sample.fixed_solvers:
        e.one_of("sample.fixed_solvers", s, names("fixed_solver"))
    for g in sample.grids:
        e.one_of("sample.grids", g, names("time_grid"))
    for n in sample.nfe_ladder:
        e.positive("sample.nfe_ladder", n)
    if sample.n_trajectories < 0:
        e.append(f"sample.n_trajectories: must be >= 0, got {sample.n_trajectories}")
    return e


def score_errors(score: ScoreConfig, sample: SampleConfig) -> list[str]:
    e = Errors()
    for key in ("n_points", "dequant_draws", "probes"):
        e.positive(f"score.{key}", getattr(score, key))
    if score.batch_size is not None:
        e.positive("score.batch_size", score.batch_size)
    if score.density_grid < 0:
        e.append(f"score.density_grid: must be >= 0, got {score.density_grid}")
    if not score.density_times or not all(0.0 <= t <= 1.0 for t in score.density_times):
        e.append(f"score.density_times: must be a non-empty list of times in [0, 1], got {score.density_times}")
    e.one_of("score.divergence", score.divergence, DIVERGENCES)
    e.one_of("score.probe", score.probe, PROBES)
    e.one_of("score.fid_backend", score.fid_backend, ["auto", "none", *names("fid_backend")])
    e.one_of("score.distance", score.distance, names("distance"))
    e += _sampler_errors("score.few_step", score.few_step)
    e.positive("score.few_step_nfe", score.few_step_nfe)
    return e


def _sampler_errors(key: str, sampler: str) -> list[str]:
    """A sampler of the ladder, ``solver`` or ``solver@grid``, that names no fixed-step solver or grid."""
    solver, _, grid = sampler.partition("@")
    if solver in names("fixed_solver") and (not grid or grid in names("time_grid")):
        return []
    return [
        f"{key}: {sampler!r} must be a fixed-step solver {names('fixed_solver')}, with @<grid>"
        f" for a time grid {names('time_grid')} other than uniform"
    ]


def guidance_errors(r: RunConfig) -> list[str]:
    """A class-conditional run (``train.label_dropout`` set) on data without labels or with a coupling that
    reorders the batch; a label dropout outside [0, 1); guidance scales without the null field they need
    (``fmexp.flow.guidance.guidance_error``), or without a conditional model; a guidance sampler that is
    no fixed-step sampler at ``sample.guidance_nfe``; ``score.guidance_scale`` not among the scales."""
    from fmexp.flow.guidance import guidance_error

    e = Errors()
    p, scales = r.train.label_dropout, r.sample.guidance
    if p is None:
        if scales:
            e.append(
                f"sample.guidance: {scales} needs a class-conditional model: set train.label_dropout (e.g. 0.1),"
                " or leave sample.guidance empty"
            )
        return e
    if r.pair is not None or r.dataset not in names("image_dataset"):
        e.append(
            f"train.label_dropout: a class-conditional model needs labelled images ({names('image_dataset')});"
            f" {r.dataset} has no labels: set train.label_dropout to null"
        )
    if r.method.coupling != "independent":
        e.append(
            f"train.label_dropout: a class-conditional model's coupling must be independent (it keeps each point"
            f" with its label), got method.coupling {r.method.coupling!r}"
        )
    e += [error for w in [0.0, *scales] if (error := guidance_error(w, p))][:1]
    e += _sampler_errors("sample.guidance_sampler", r.sample.guidance_sampler)
    e.positive("sample.guidance_nfe", r.sample.guidance_nfe)
    if not e and scales and r.sample.guidance_rung.steps < 1:
        e.append(
            f"sample.guidance_nfe: {r.sample.guidance_nfe} is not a whole number (>= 1) of steps of"
            f" {r.sample.guidance_sampler}"
        )
    if scales and r.score.guidance_scale not in scales:
        e.append(f"score.guidance_scale: {r.score.guidance_scale} must be one of sample.guidance {scales}")
    return e


def few_step_error(score: ScoreConfig, sample: SampleConfig) -> str | None:
    """Why ``score.few_step`` at ``score.few_step_nfe`` is not a rung of the sample stage's NFE ladder (then
    the score stage writes ``few_step`` as null), or None."""
    from fmexp.flow.ode import Rung

    rung = Rung.parse(score.few_step_rung)
    if (
        rung.solver in sample.fixed_solvers
        and rung.grid in sample.grids
        and rung.steps >= 1
        and rung.nfe in sample.nfe_ladder
    ):
        return None
    return (
        f"score.few_step: {score.few_step} at score.few_step_nfe={score.few_step_nfe} is not a rung of the NFE"
        f" ladder: its solver must be in sample.fixed_solvers {sample.fixed_solvers}, its grid in sample.grids"
        f" {sample.grids}, and the budget in sample.nfe_ladder {sample.nfe_ladder} as whole steps"
    )
