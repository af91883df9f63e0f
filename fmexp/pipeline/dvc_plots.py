"""An HTML template for ``dvc plots show`` that works offline.

DVC's own page loads vega, vega-lite and vega-embed from a CDN, so it is blank on a machine without
internet. This template inlines them instead, from the bundle that vl-convert-python ships (the
``plots`` extra); DVC fills its ``{plot_divs}``. ``write_offline_template`` writes it to
``.dvc/plots/offline.html`` and makes it the repository's default (``dvc config --local
plots.html_template``), which ``make install`` does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fmexp.errors import ConfigError
from fmexp.runtime import artifacts

__all__ = ["VEGA_LITE", "offline_template", "write_offline_template"]

VEGA_LITE = "5.21"  # the major version of DVC's templates' $schema (vega-lite v5)

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC plots (fmexp, offline)</title>
    <script>/* vega-embed, vega-lite VEGA_LITE and vega, inlined from vl-convert-python */
BUNDLE
    </script>
    <style>table { border-spacing: 15px; } body { font-family: sans-serif; }</style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def offline_template() -> str:
    """The page, with the vega scripts inlined (no ``{scripts}`` placeholder: DVC adds no CDN tags)."""
    try:
        import vl_convert
    except ImportError as e:
        raise ConfigError("the offline template needs vl-convert-python: pip install -e '.[plots]'") from e
    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE)  # type: ignore[call-arg]  # the stub wrongly requires snippet
    if "</script" in bundle or "{plot_divs}" in bundle:  # either would break the page or DVC's filling of it
        raise RuntimeError("vl-convert's bundle cannot be inlined as it is")
    return PAGE.replace("VEGA_LITE", VEGA_LITE).replace("BUNDLE", bundle)


def write_offline_template(repo: str | Path = ".") -> Path:
    """Write ``.dvc/plots/offline.html`` in ``repo`` and set it as the local default of ``dvc plots``."""
    dvc_dir = Path(repo) / ".dvc"
    if not dvc_dir.is_dir():
        raise ConfigError(f"{Path(repo).resolve()} is not a DVC repository (no .dvc folder)")
    path = dvc_dir / "plots" / "offline.html"
    artifacts.write_text(path, offline_template())
    subprocess.run(
        [sys.executable, "-m", "dvc", "config", "--local", "plots.html_template", "plots/offline.html"],
        cwd=repo,
        check=True,
        capture_output=True,
    )
    return path
