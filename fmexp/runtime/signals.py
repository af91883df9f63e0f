"""SIGTERM as ``SystemExit(143)``, held back while a config is being built.

A sweep worker stops on SIGTERM (a queue's or DVC's stop) by raising ``SystemExit`` wherever the
main thread is, so that its running trial goes back in the queue at once. Raised inside OmegaConf,
that exception leaves OmegaConf's nodes half-built, and OmegaConf reports an unrelated
``AttributeError`` instead (found by signalling a loop of ``run_config`` calls). So the config
builders run ``held()``: a SIGTERM that arrives meanwhile is raised when they return.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["exit_on_sigterm", "held"]

_depth = 0
_pending: int | None = None


def exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """The SIGTERM handler: ``SystemExit(128 + signum)`` now, or when the outermost ``held()`` ends."""
    global _pending
    if _depth:
        _pending = signum
        return
    raise SystemExit(128 + signum)


@contextmanager
def held() -> Iterator[None]:
    """Hold back ``exit_on_sigterm`` until the block ends (nested blocks: the outermost)."""
    global _depth, _pending
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
    if not _depth and _pending is not None:
        signum, _pending = _pending, None
        raise SystemExit(128 + signum)
