"""A process-wide tally of what a job's steps have done, for a progress line.

Beam's counters reach the caller only when a run ends. A replay whose SDK
workers run in the submitting process (the FnApiRunner, and Prism or Flink
with LOOPBACK workers) reads this tally while it runs to show progress;
workers in other processes leave it at zero there, and it never feeds a
result: the run summary comes from Beam's counters. Written by hand because
Beam offers no live view of a running job's metrics to its submitter.
"""

from __future__ import annotations

TALLY: dict[str, int] = {}


def add(name: str, n: int = 1) -> None:
    """Count ``n`` more of ``name`` (only a display reads it)."""
    TALLY[name] = TALLY.get(name, 0) + n


def read() -> dict[str, int]:
    """A copy of the tally."""
    return dict(TALLY)


def reset() -> None:
    """Start counting anew (a new run in the same process)."""
    TALLY.clear()
