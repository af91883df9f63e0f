"""A name looked up among the registered ones, with the one error message for a name that is not:
``unknown path 'otp'; choose one of ['ot', 've', 'vp']; did you mean 'ot'?``."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from typing import Any, TypeVar

__all__ = ["did_you_mean", "check_name", "lookup"]

T = TypeVar("T")


def did_you_mean(value: Any, allowed: Collection[Any]) -> str:
    """``; did you mean 'value'?`` for the closest allowed name, or nothing."""
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_name(kind: str, name: str, allowed: Collection[str]) -> None:
    """Raise ``ValueError`` naming the ``kind``, the bad ``name`` and the allowed names, unless it is one."""
    if name not in allowed:
        raise ValueError(f"unknown {kind} {name!r}; choose one of {sorted(allowed)}{did_you_mean(name, allowed)}")


def lookup(kind: str, name: str, registry: Mapping[str, T]) -> T:
    """``registry[name]``, or the ``check_name`` error."""
    check_name(kind, name, registry.keys())
    return registry[name]
