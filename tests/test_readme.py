"""The README: its quick start runs as printed (with a shorter training budget), its results table is
the one the report stage wrote, and it stays a front page."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_readme_quick_start_runs(capsys) -> None:
    code = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)[0]
    assert "steps=6000" in code and "from fmexp import" in code
    exec(compile(code.replace("steps=6000", "steps=30"), "README.md", "exec"), {})
    assert re.search(
        r"NLL -?\d+\.\d{3} nats \(the data's entropy: log 32 = 3\.466\), sampling NFE \d+", capsys.readouterr().out
    )


def test_readme_results_table_is_the_reports() -> None:
    """Copied from reports/tables/checkerboard.md, which the report stage writes: it cannot drift."""
    assert (ROOT / "reports" / "tables" / "checkerboard.md").read_text().strip() in README.read_text()


def test_readme_is_a_front_page() -> None:
    assert len(README.read_text().splitlines()) <= 200
