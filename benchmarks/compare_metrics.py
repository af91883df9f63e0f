"""Whether a rerun reproduced the committed metrics: every number of each ``runs/*/*/metrics.json`` of one
checkout against another's, to a relative tolerance (3e-6: the project's promise for a clean-clone
``make repro``).

    python benchmarks/compare_metrics.py <committed checkout> <rerun checkout> [rtol]

Prints each metric that moved or went missing, and the count; exits 1 if any did.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd


def flat(d: dict[str, Any]) -> dict[str, Any]:
    """``{"fid": {"mean": 1}}`` as ``{"fid.mean": 1}`` (pandas' ``json_normalize``)."""
    return pd.json_normalize(d).iloc[0].to_dict() if d else {}


def differences(committed: Path, rerun: Path, rtol: float) -> list[str]:
    out = []
    for path in sorted(committed.glob("runs/*/*/metrics.json")):
        rel = path.relative_to(committed)
        if not (rerun / rel).exists():
            out.append(f"{rel}: missing")
            continue
        old, new = flat(json.loads(path.read_text())), flat(json.loads((rerun / rel).read_text()))
        for key, a in old.items():
            b = new.get(key)
            close = isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(b - a) <= rtol * abs(a)
            if a != b and not close:
                out.append(f"{rel}: {key} {a} -> {b}")
    return out


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    found = differences(Path(argv[0]), Path(argv[1]), float(argv[2]) if len(argv) == 3 else 3e-6)
    print("\n".join(found + [f"differences: {len(found)}"]))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
