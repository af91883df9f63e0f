"""``fmexp <stage> [--dataset D --method M] [key=value ...]`` (or ``python -m fmexp``): one pipeline stage.

``config`` prints the resolved config instead: of one run with ``--dataset`` and ``--method`` (the
dataset's ``per_dataset`` entries applied), else the whole of params.yaml, like Hydra's ``--cfg job``.

``offline-plots`` makes ``dvc plots show`` work without internet (``fmexp.dvc_plots``).

``train``, ``sample`` and ``score`` run every seed of ``pipeline.seeds`` (override it to run one:
``pipeline.seeds=[0]``). With ``train.nproc`` N > 1, ``train`` runs itself under ``torchrun
--standalone --nproc-per-node N`` (one node); started by torchrun (several nodes), it trains in its
process group as launched.

Overrides use Hydra's grammar (``train.lr=1e-3``), the same as ``dvc exp run -S``.

Exit status: 2 for bad input (the message names the file, the key and the allowed values), 1 for a
seed's run that failed on its own account (its training diverged or an ODE solve failed; the message
names the stage, the run and the seed), with no traceback for either.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fmexp.config import ConfigError, load_params

STAGES = ("prepare", "train", "sample", "score", "report", "sweep", "config", "offline-plots")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fmexp", description=__doc__.split("\n")[0])
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("overrides", nargs="*", help="Hydra-grammar overrides of params.yaml, e.g. train.lr=1e-3")
    parser.add_argument("--params", default="params.yaml", type=Path)
    parser.add_argument("--dataset")
    parser.add_argument("--method")
    parser.add_argument("--study", help="sweep: run this study (studies/<name>.yaml) instead of every one in sweep.studies")
    parser.add_argument("--data-dir", default="data", type=Path)
    parser.add_argument("--runs-dir", default="runs", type=Path)
    parser.add_argument("--reports-dir", default="reports", type=Path)
    args = parser.parse_intermixed_args(argv)
    if argv is None:  # the command, not a call from Python: progress lines on stderr
        from fmexp.processes import log_to_stderr

        log_to_stderr()
    try:
        params = load_params(args.params, args.overrides)
        from fmexp.artifacts import ensure_writable

        if args.stage == "config":
            import yaml

            from fmexp.config import to_plain

            if (args.dataset is None) != (args.method is None):
                parser.error("config takes both --dataset and --method (one run), or neither (all of params.yaml)")
            resolved = params.run(args.dataset, args.method, params.pipeline.seeds[0]) if args.dataset else params
            print(yaml.safe_dump(to_plain(resolved), sort_keys=False), end="")
        elif args.stage == "offline-plots":
            from fmexp.dvc_plots import write_offline_template

            print(f"wrote {write_offline_template()}; `dvc plots show` now uses it")
        elif args.stage == "prepare":
            from fmexp.stages.prepare import prepare

            ensure_writable(args.data_dir)
            prepare(params, args.data_dir)
        elif args.stage in ("train", "sample", "score"):
            from fmexp.launch import launched, torchrun_command
            from fmexp.stages.aggregate import RunFailed, run_stage

            if args.dataset is None or args.method is None:
                parser.error(f"{args.stage} needs --dataset and --method")
            nproc = params.run(args.dataset, args.method, params.pipeline.seeds[0]).train.nproc if args.stage == "train" else 1
            if nproc > 1 and not launched():  # this process becomes torchrun's, which runs this command N times
                os.execv(sys.executable, torchrun_command(nproc, sys.argv[1:] if argv is None else argv))
            try:
                run_stage(args.stage, params, args.dataset, args.method, data_dir=args.data_dir, runs_dir=args.runs_dir)
            except RunFailed as e:  # a fault of the run, not bad input: status 1, the seed named, no traceback
                print(f"error: {e}", file=sys.stderr)
                return 1
        elif args.stage == "sweep":
            from fmexp.sweep import run_studies

            ensure_writable(args.reports_dir / "sweeps")
            run_studies([args.study] if args.study else params.sweep.studies, reports_dir=args.reports_dir)
        else:
            from fmexp.report import build_report

            ensure_writable(args.reports_dir)
            build_report(params, args.params, runs_dir=args.runs_dir, reports_dir=args.reports_dir)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
