"""What each stage of `make repro` cost, per dataset, from the seconds each seed's stage reported.

    make repro 2>&1 | tee repro.log
    python benchmarks/repro_cost.py repro.log

Every stage of a seed ends with the line ``<stage> <dataset>/<method> seed <s>: done in <x> s``
(``fmexp.pipeline.stages.aggregate``). This sums them per dataset and stage, over methods and seeds, as
docs/performance.md gives them. The seeds run side by side in ``pipeline.workers`` one-thread processes,
so a seed's seconds are about 1.5x its share of 2 cores: the totals are work, not wall time.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

STAGES = ("reflow", "train", "sample", "score")
LINE = re.compile(r"\b(?P<stage>\w+) (?P<dataset>[^/\s]+)/(?P<method>\S+) seed \d+: done in (?P<seconds>[\d.]+) s")


def stage_seconds(log: str) -> dict[tuple[str, str], dict[str, float]]:
    """Seconds by (dataset, reflow round or not) and stage, summed over methods and seeds."""
    out: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for m in LINE.finditer(log):
        part = "reflow rounds" if "_reflow" in m["method"] else "cells"
        out[m["dataset"], part][m["stage"]] += float(m["seconds"])
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    table = stage_seconds(Path(argv[0]).read_text())
    print("| dataset | runs | " + " | ".join(STAGES) + " |")
    print("|---|---|" + "---|" * len(STAGES))
    for (dataset, part), stages in table.items():
        print(f"| {dataset} | {part} | " + " | ".join(f"{stages.get(s, 0.0):.1f} s" for s in STAGES) + " |")
    print(f"\nall stages: {sum(sum(s.values()) for s in table.values()):.1f} s of work")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
