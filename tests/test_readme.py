"""The README's Python example runs as printed (with a shorter training budget)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs(capsys) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    code = blocks[0]
    assert "TrainConfig(steps=2000)" in code
    exec(compile(code.replace("TrainConfig(steps=2000)", "TrainConfig(steps=30)"), "README.md", "exec"), {})
    assert re.search(r"NLL -?\d+\.\d{3} nats .* sampling NFE \d+", capsys.readouterr().out)
