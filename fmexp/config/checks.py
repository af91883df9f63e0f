"""The collector that every validator fills: ``dotted.key: reason`` strings, with the checks the
sections share."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from fmexp.config.overrides import not_one_of

__all__ = ["Errors"]


class Errors(list[str]):
    """The errors of one validation, with the checks every section uses."""

    def positive(self, key: str, value: float) -> None:
        if not (value > 0 and math.isfinite(value)):
            self.append(f"{key}: must be a positive finite number, got {value}")

    def non_negative(self, key: str, value: float) -> None:
        if not (value >= 0 and math.isfinite(value)):
            self.append(f"{key}: must be a finite number >= 0, got {value}")

    def one_of(self, key: str, value: Any, allowed: Sequence[Any]) -> None:
        if value not in allowed:
            self.append(not_one_of(key, value, allowed))

    def within(self, key: str, value: float, low: float, high: float) -> None:
        """``low <= value < high``."""
        if not low <= value < high:
            self.append(f"{key}: must lie in [{low:g}, {high:g}), got {value}")
