"""Durations as people write them in configs: ``500ms``, ``30s``, ``10m``, ``2h``, ``7d``.

Held as integer milliseconds everywhere in the core.
"""

from __future__ import annotations

import re
from typing import Any

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(value: Any) -> int:
    """A duration in milliseconds (a bare number means seconds).

    >>> parse_duration("30m"), parse_duration("500ms"), parse_duration(2)
    (1800000, 500, 2000)
    >>> parse_duration("-1s")
    Traceback (most recent call last):
    ...
    ValueError: duration must not be negative
    """
    if isinstance(value, bool):
        raise ValueError("duration must be like 30s, 10m, 2h or 7d")
    if isinstance(value, int | float):
        millis = value * 1000
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        millis = float(match.group(1)) * _UNITS_MS[match.group(2) or "s"]
    else:
        raise ValueError(f"duration must be like 30s, 10m, 2h or 7d, not {value!r}")
    if millis < 0:
        raise ValueError("duration must not be negative")
    return int(millis)
