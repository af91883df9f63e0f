"""``fmexp COMMAND [flags] [key=value ...]``: the one command (also ``python -m fmexp``).

Pipeline stages: ``prepare``, ``train``, ``sample``, ``score``, ``report`` (what ``dvc.yaml`` runs);
``sweep STUDY`` runs an Optuna study (``python -m fmexp.sweep STUDY`` is the same command);
``smoke`` times the paper's CIFAR-10 profile on a GPU; ``config`` prints a resolved config;
``dvc-yaml`` writes ``dvc.yaml`` from ``params.yaml``; ``offline-plots`` makes ``dvc plots show``
work without internet. ``fmexp COMMAND --help`` describes each.

Overrides use Hydra's grammar (``train.lr=1e-3``), the same as ``dvc exp run -S``.

Exit status: 2 for bad input (``fmexp.errors.UserError``: the message names the file, the key and the
allowed values), 1 for a run that failed on its own account (``fmexp.errors.RunError``: a diverged
training or a failed ODE solve; the message names the stage, the run and the seed), with no traceback
for either.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from fmexp.config.load import load_params
from fmexp.config.overrides import read_yaml
from fmexp.config.schema import Params
from fmexp.errors import RunError, UserError
from fmexp.pipeline.dvc_yaml import dvc_yaml_text
from fmexp.runtime import plugins

__all__ = ["COMMANDS", "main"]

Handler = Callable[[argparse.Namespace, argparse.ArgumentParser], int]


def _params_flags(p: argparse.ArgumentParser, *, overrides: bool = True) -> None:
    p.add_argument("--params", default="params.yaml", type=Path, help="the params file (default params.yaml)")
    if overrides:
        p.add_argument("overrides", nargs="*", help="Hydra-grammar overrides of the params file, e.g. train.lr=1e-3")


def _run_flags(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("--dataset", required=required, help="a dataset of pipeline.datasets")
    p.add_argument("--method", required=required, help="a method of params.yaml's methods")


def _folder_flags(p: argparse.ArgumentParser, *names: str) -> None:
    for name in names:
        p.add_argument(f"--{name}-dir", default=name, type=Path, help=f"where the {name} folder is (default {name}/)")


def _load(args: argparse.Namespace, datasets: Sequence[str] | None = None) -> Params:
    """The params with the command line's overrides; a warning for each base-section change since the
    last commit that ``per_dataset`` shadows for one of ``datasets`` (all the pipeline's: None)."""
    from fmexp.config.shadow import shadowed

    params = load_params(args.params, args.overrides)
    baseline = _committed(args.params, args.overrides)
    if baseline is not None:
        for s in shadowed(params, baseline, params.pipeline.datasets if datasets is None else datasets):
            print(f"warning: {args.params}: {s}", file=sys.stderr)
    return params


def _committed(path: Path, overrides: Sequence[str]) -> Params | None:
    """``path`` as git's HEAD has it (where ``dvc exp run`` starts from), or None outside git, and where
    neither the file nor ``overrides`` change it: then nothing can be shadowed."""
    import subprocess
    import tempfile

    try:
        shown = subprocess.run(
            ["git", "show", f"HEAD:./{path.name}"], cwd=path.resolve().parent, capture_output=True, text=True
        )
    except OSError:  # no git
        return None
    if shown.returncode != 0:  # not a repository, or the file is not committed
        return None
    if not overrides and shown.stdout == path.read_text():
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(shown.stdout)
        f.flush()
        try:
            return load_params(f.name)
        except UserError:  # the committed file is invalid: nothing to compare against
            return None


def _prepare(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from fmexp.config.overrides import not_one_of
    from fmexp.config.validate import dataset_names
    from fmexp.errors import ConfigError
    from fmexp.pipeline.stages.prepare import prepare
    from fmexp.runtime.artifacts import ensure_writable

    params = _load(args)
    if args.dataset is not None:
        datasets = dataset_names(params.datasets, params.pairs)
        if args.dataset not in datasets:
            raise ConfigError(not_one_of("--dataset", args.dataset, datasets))
    ensure_writable(args.data_dir)
    prepare(params, args.data_dir, None if args.dataset is None else [args.dataset])
    return 0


def _stage(stage: str) -> Handler:
    def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        from fmexp.config.load import run_for
        from fmexp.pipeline.stages.aggregate import run_stage
        from fmexp.training.launch import launched, torchrun_command

        params = _load(args, [args.dataset])
        nproc = (
            run_for(params, args.dataset, args.method, params.pipeline.seeds[0]).train.nproc if stage == "train" else 1
        )
        if nproc > 1 and not launched():  # this process becomes torchrun's, which runs this command N times
            os.execv(sys.executable, torchrun_command(nproc, args.argv))
        run_stage(stage, params, args.dataset, args.method, data_dir=args.data_dir, runs_dir=args.runs_dir)
        return 0

    return run


def _report(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from fmexp.report.page import build_report
    from fmexp.runtime.artifacts import ensure_writable

    params = _load(args)
    ensure_writable(args.reports_dir)
    build_report(params, args.params, runs_dir=args.runs_dir, reports_dir=args.reports_dir)
    return 0


def _sweep(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import signal

    from fmexp.runtime.artifacts import ensure_writable
    from fmexp.runtime.signals import exit_on_sigterm
    from fmexp.sweep.runner import run_study
    from fmexp.sweep.study import find_study, load_study, study_warnings

    if args.workers < 1:
        parser.error(f"--workers: must be at least 1, got {args.workers}")
    signal.signal(signal.SIGTERM, exit_on_sigterm)  # a queue's or DVC's stop: the running trial goes back in the queue
    start = time.perf_counter()
    path, name = find_study(args.study)
    study = load_study(path, storage=args.storage, n_trials=args.n_trials, reports_dir=args.reports_dir, name=name)
    for warning in study_warnings(study):
        print(f"warning: {warning}", file=sys.stderr)
    ensure_writable(args.reports_dir / "sweeps")
    ostudy = run_study(study, archive_changed=args.archive_changed, workers=args.workers)
    if not any(t.state.name == "COMPLETE" for t in ostudy.trials):
        raise RunError(
            f"every trial of study {study.config.study!r} failed (reasons in {study.folder}/trials.csv,"
            " column user_attrs_error)"
        )
    print(f"  wall time {time.perf_counter() - start:.1f} s")
    return 0


def _smoke(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from fmexp.pipeline.smoke import smoke

    return smoke(args.params, args.overrides, args.out)


def _config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import yaml

    from fmexp.config.load import run_for, to_plain

    if (args.dataset is None) != (args.method is None):
        parser.error("config takes both --dataset and --method (one run), or neither (all of params.yaml)")
    params = _load(args, None if args.dataset is None else [args.dataset])
    resolved = run_for(params, args.dataset, args.method, params.pipeline.seeds[0]) if args.dataset else params
    print(yaml.safe_dump(to_plain(resolved), sort_keys=False), end="")
    return 0


def _check_dvc_yaml(params_path: Path, dvc_yaml: Path) -> None:
    """``UserError`` unless ``dvc_yaml`` is what ``fmexp dvc-yaml`` generates from ``params_path``."""
    text = dvc_yaml_text(load_params(params_path), COMMANDS, read_yaml(params_path))
    if not dvc_yaml.exists() or dvc_yaml.read_text() != text:
        raise UserError(
            f"{dvc_yaml} is not what `fmexp dvc-yaml` generates from {params_path}: its stages or their dependencies"
            f" are stale (a changed pipeline.datasets, methods, cells, studies or per_dataset entry). Run"
            f" `fmexp dvc-yaml`, then `dvc repro` (or `dvc exp run`) again"
        )


def _dvc_yaml(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from fmexp.runtime.artifacts import write_text

    if args.check:
        _check_dvc_yaml(args.params, args.out)
        return 0
    text = dvc_yaml_text(_load(args), COMMANDS, read_yaml(args.params))
    write_text(args.out, text)
    print(f"wrote {args.out}")
    return 0


def _offline_plots(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from fmexp.pipeline.dvc_plots import write_offline_template

    print(f"wrote {write_offline_template()}; `dvc plots show` now uses it")
    return 0


def _build_prepare(p: argparse.ArgumentParser) -> None:
    _params_flags(p)
    p.add_argument("--dataset", help="one dataset (default: every dataset of pipeline.datasets)")
    _folder_flags(p, "data")


def _build_stage(p: argparse.ArgumentParser) -> None:
    _params_flags(p)
    _run_flags(p, required=True)
    _folder_flags(p, "data", "runs")


def _build_report(p: argparse.ArgumentParser) -> None:
    _params_flags(p)
    _folder_flags(p, "runs", "reports")


def _build_sweep(p: argparse.ArgumentParser) -> None:
    from fmexp.sweep.storage import STORAGE_ENV

    p.add_argument("study", help="a study file (studies/ot_vs_vp.yaml), or a study's name under studies/ (ot_vs_vp)")
    p.add_argument(
        "--storage",
        help=f"an Optuna storage shared by workers (or ${STORAGE_ENV}): postgresql://...,"
        " sqlite:///FILE or journal:///FILE; default: a journal file under reports/sweeps/<study>/",
    )
    p.add_argument("--n-trials", type=int, help="the study's total number of trials (overrides the file)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes on this machine, each with cores // N torch threads (default 1)",
    )
    _folder_flags(p, "reports")
    p.add_argument(
        "--archive-changed",
        action="store_true",
        help="when the stored study (under reports/sweeps/<study>/) was made from a different definition,"
        " move it and its trials to reports/sweeps/<study>/archive/<time>/ and start afresh; without it,"
        " such a study is refused (the pipeline's sweep stage sets it)",
    )


def _build_smoke(p: argparse.ArgumentParser) -> None:
    _params_flags(p)
    p.add_argument("--out", default="smoke", type=Path, help="the run's own folder (emptied first)")


def _build_config(p: argparse.ArgumentParser) -> None:
    _params_flags(p)
    _run_flags(p, required=False)


def _build_dvc_yaml(p: argparse.ArgumentParser) -> None:
    _params_flags(p, overrides=False)
    p.set_defaults(overrides=[])
    p.add_argument("--out", default="dvc.yaml", type=Path, help="the file to write (default dvc.yaml)")
    p.add_argument(
        "--check", action="store_true", help="write nothing; exit 2 if the file differs from the generated one"
    )


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {
    "prepare": ("write each dataset's fixed splits to data/<dataset>.pt", _build_prepare, _prepare),
    "reflow": (
        "draw a reflow round's couples (noise, the previous round's samples), every seed",
        _build_stage,
        _stage("reflow"),
    ),
    "train": ("train one dataset and method, every seed of pipeline.seeds", _build_stage, _stage("train")),
    "sample": ("sample the trained models of one dataset and method", _build_stage, _stage("sample")),
    "score": ("score the samples of one dataset and method (NLL, distance, FID, NFE)", _build_stage, _stage("score")),
    "report": ("write reports/summary.html, its tables, figures and DVC's plot data", _build_report, _report),
    "sweep": ("run a declarative Optuna study of fmexp runs", _build_sweep, _sweep),
    "smoke": ("the paper's CIFAR-10 profile for a few minutes on one GPU: throughput and memory", _build_smoke, _smoke),
    "config": ("print the resolved config of params.yaml, or of one run", _build_config, _config),
    "dvc-yaml": (
        "write dvc.yaml from params.yaml: the pipeline's stages and their exact dependencies",
        _build_dvc_yaml,
        _dvc_yaml,
    ),
    "offline-plots": ("make `dvc plots show` work without internet", lambda p: None, _offline_plots),
}


PIPELINE_STAGES = ("prepare", "reflow", "train", "sample", "score", "sweep", "report")
"""The commands that ``dvc.yaml`` runs: under DVC each first checks that ``dvc.yaml`` is current."""


def _top_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="flow matching experiments: the pipeline's stages, studies and tools",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {n:<14} {h}" for n, (h, _, _) in COMMANDS.items()),
    )
    parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "fmexp") -> int:
    """Run one command; return its exit status (0, 1 for a failed run, 2 for bad input)."""
    from fmexp.registry import did_you_mean

    args_list = list(sys.argv[1:] if argv is None else argv)
    plugins.enable(os.environ.get("DVC_ROOT", "."))  # the project's own code (_target_), here and in every child
    top = _top_parser(prog)
    if not args_list or args_list[0] in ("-h", "--help"):
        top.print_help()
        return 0 if args_list else 2
    command = args_list[0]
    if command not in COMMANDS:
        top.print_usage(sys.stderr)
        print(
            f"{prog}: error: unknown command {command!r}; choose one of "
            f"{list(COMMANDS)}{did_you_mean(command, COMMANDS)}",
            file=sys.stderr,
        )
        return 2
    help_text, build, handler = COMMANDS[command]
    parser = argparse.ArgumentParser(
        prog=prog if prog.endswith(command) else f"{prog} {command}", description=help_text
    )
    build(parser)
    args = parser.parse_intermixed_args(args_list[1:])
    args.argv = args_list
    if argv is None:  # the command, not a call from Python: progress lines on stderr
        from fmexp.runtime.processes import log_to_stderr

        log_to_stderr()
    try:
        if command in PIPELINE_STAGES and "DVC_STAGE" in os.environ:  # run by dvc repro: refuse a stale dvc.yaml
            root = Path(os.environ.get("DVC_ROOT", "."))
            _check_dvc_yaml(root / "params.yaml", root / "dvc.yaml")
        return handler(args, parser)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RunError as e:  # a fault of the run, not bad input: status 1, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 1
