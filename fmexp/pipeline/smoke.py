"""``fmexp smoke [key=value ...]``: the CIFAR-10 profile (``per_dataset.cifar10``, the paper's
Table 3 U-Net) trained, sampled and scored for a few minutes on one GPU, in a folder of its own. It
prints training and sampling throughput (images/s) and the peak GPU memory: a check that the
paper-scale run works, and what it costs, before it is launched for days.

Without CIFAR-10 under ``data.root`` it runs the same profile on the PNG/JPEG files there
(``imagefolder``); without InceptionV3 weights at ``score.inception_weights`` (or torch-fidelity), it
scores bits/dim only and says so. Overrides use the pipeline's grammar and win over the profile.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from fmexp.config.load import load_params, run_for
from fmexp.config.schema import Params

__all__ = ["SMOKE", "smoke"]

SMOKE = (
    "train.steps=1000",
    "train.warmup_steps=100",
    "train.eval_every=500",
    "train.checkpoint_every=500",
    "train.curve_points=64",
    "sample.n_samples=2000",
    "sample.batch_size=500",
    "sample.ladder_samples=500",
    "sample.nfe_ladder=[10,20]",
    "sample.fixed_solvers=[euler,midpoint]",
    "sample.n_trajectories=0",
    "score.n_points=500",
    "score.batch_size=250",
    "pipeline.methods=[fm_ot]",
    "pipeline.seeds=[0]",
    "pipeline.workers=1",
    "sweep.studies=[]",
    "sweep.tuning=[]",
)
"""The smoke run's budget: about 1000 steps at Table 3's batch of 256, 2000 samples, 500 scored points."""


def _has_inception(weights: str | None) -> bool:
    import importlib.util

    return weights is not None and Path(weights).is_file() and importlib.util.find_spec("torch_fidelity") is not None


def smoke(params_path: Path, user_overrides: Sequence[str], out: Path) -> int:
    """Run the smoke profile into ``out`` and print its throughput line; user overrides win."""
    base = load_params(params_path, user_overrides)
    dataset = "cifar10" if (Path(base.data.root) / "cifar-10-batches-py").is_dir() else "imagefolder"
    profile = (
        [] if dataset == "cifar10" else list(base.per_dataset.get("cifar10", []))
    )  # cifar10's own entry applies to cifar10
    overrides = [*profile, *SMOKE, f"pipeline.datasets=[{dataset}]", *user_overrides]
    params = load_params(params_path, overrides)
    run = run_for(params, dataset, "fm_ot", 0)
    if run.score.fid_backend == "auto" and not _has_inception(run.score.inception_weights):
        print(
            f"smoke: no FID: InceptionV3 weights ({run.score.inception_weights}) or torch-fidelity missing", flush=True
        )
        params = load_params(params_path, [*overrides, "score.fid_backend=none"])
    return _run(params, dataset, out)


def _run(params: Params, dataset: str, out: Path) -> int:
    import torch

    from fmexp.pipeline.layout import RunFiles
    from fmexp.pipeline.stages.aggregate import run_stage
    from fmexp.pipeline.stages.prepare import prepare

    if out.exists():
        shutil.rmtree(out)
    run = run_for(params, dataset, "fm_ot", 0)
    cuda = run.train.device != "cpu" and torch.cuda.is_available()
    start = time.perf_counter()
    prepare(params, out / "data")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for stage in ("train", "sample", "score"):
        run_stage(stage, params, dataset, "fm_ot", data_dir=out / "data", runs_dir=out / "runs")
    files = RunFiles.of(out / "runs", run)
    trained, sampled = json.loads(files.train_info.read_text()), json.loads(files.sample_info.read_text())
    metrics = json.loads(files.metrics.read_text())
    speed, sampling = json.loads(files.log("train").read_text()), json.loads(files.log("sample").read_text())
    fid = (
        f"FID {metrics['fid']:.1f} ({metrics['fid_backend']}, unconverged)"
        if metrics["fid"] is not None
        else f"no FID ({metrics['fid_reason']})"
    )
    peak = f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if cuda else "n/a (no GPU)"
    print(
        f"smoke {dataset}, {trained['device']}: training "
        f"{speed['steps_per_second'] * run.train.batch_size:.0f} images/s"
        f" ({run.train.steps} steps at batch {run.train.batch_size}, {run.train.precision});"
        f" sampling {run.sample.n_samples / sampling['seconds']:.1f} images/s (dopri5, NFE {sampled['nfe']:.0f});"
        f" {metrics['bpd']:.3f} bits/dim, {fid};"
        f" peak GPU memory {peak}; {time.perf_counter() - start:.0f} s in all"
    )
    return 0
