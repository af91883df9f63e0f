"""What each stage of `make repro` cost, per dataset, from the seconds each seed's stage reported.

    make repro 2>&1 | tee repro.log
    python benchmarks/repro_cost.py repro.log

Every stage of a seed ends with the line ``<stage> <dataset>/<method> seed <s>: done in <x> s``
(``fmexp.pipeline.stages.aggregate``). This sums them per dataset and stage, over methods and seeds, as
docs/performance.md gives them. The seeds run side by side in ``pipeline.workers`` one-thread processes,
so a seed's seconds are about 1.5x its share of 2 cores: the totals are work, not wall time. The wall
time is the stage's own line, ``<stage> <dataset>/<method>: done in <x> s``, summed the same way. Runs
are told apart by the shipped names: ``_reflow<k>`` a reflow round, ``_cfg`` a class-conditional cell.

Neither counts what each stage costs before its work starts and after it ends: DVC's bookkeeping (it
re-reads and rewrites ``dvc.lock`` after every stage), the command's start (``import torch``, loading
params.yaml, checking that ``dvc.yaml`` is current) and its exit. The last table gives that fixed cost:
the seconds from one stage's "done in" line to the next one's first line (``... seeds [...]``), by the
log's clock (whole seconds).
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

STAGES = ("reflow", "train", "sample", "score")
LINE = re.compile(r"\b(?P<stage>\w+) (?P<dataset>[^/\s]+)/(?P<method>\S+) seed \d+: done in (?P<seconds>[\d.]+) s")
WALL = re.compile(r"\b(?P<stage>\w+) (?P<dataset>[^/\s]+)/(?P<method>\S+): done in (?P<seconds>[\d.]+) s")
CLOCK = re.compile(r"^(?P<h>\d\d):(?P<m>\d\d):(?P<s>\d\d) \w+ [^/\s]+/\S+: (?P<what>seeds|done in)", re.M)


def _part(method: str) -> str:
    return "reflow rounds" if "_reflow" in method else "conditional cells" if method.endswith("_cfg") else "cells"


def stage_seconds(log: str, line: re.Pattern[str] = LINE) -> dict[tuple[str, str], dict[str, float]]:
    """Seconds by (dataset, kind of run) and stage, summed over methods (and seeds: ``LINE``; ``WALL``: the
    stages' wall times)."""
    out: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for m in line.finditer(log):
        if m["stage"] in STAGES:
            out[m["dataset"], _part(m["method"])][m["stage"]] += float(m["seconds"])
    return out


def gaps(log: str) -> list[int]:
    """The seconds between each stage's end ("done in") and the next stage's start ("seeds"), by the
    log's clock (a run that passes midnight wraps)."""
    out, end = [], None
    for m in CLOCK.finditer(log):
        at = int(m["h"]) * 3600 + int(m["m"]) * 60 + int(m["s"])
        if m["what"] == "done in":
            end = at
        elif end is not None:
            out.append((at - end) % 86400)
            end = None
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    log = Path(argv[0]).read_text()
    for title, line in (("work (the seeds' seconds)", LINE), ("wall time (the stages' seconds)", WALL)):
        table = stage_seconds(log, line)
        print(f"{title}\n\n| dataset | runs | " + " | ".join(STAGES) + " | all |")
        print("|---|---|" + "---|" * (len(STAGES) + 1))
        for (dataset, part), stages in table.items():
            cells = " | ".join(f"{stages.get(s, 0.0):.1f} s" for s in STAGES)
            print(f"| {dataset} | {part} | {cells} | {sum(stages.values()):.1f} s |")
        print(f"\nall stages: {sum(sum(s.values()) for s in table.values()):.1f} s\n")
    between = sorted(gaps(log))
    if between:
        print(
            f"between stages (DVC, and each command's start and exit): {len(between)} gaps, {sum(between)} s in all,"
            f" median {between[len(between) // 2]} s, range {between[0]}-{between[-1]} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
