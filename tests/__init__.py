"""fmexp tests (a package, so that `tests` never resolves to another distribution's top-level
`tests`: flow-matching ships one)."""

"flow-matching ships one)."
