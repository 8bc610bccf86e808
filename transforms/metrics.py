"""Counters by name, created the first time each name is counted (DoFns count many names)."""

from __future__ import annotations

import apache_beam as beam

NAMESPACE = "microtarget"


class Counters:
    """``counters.inc("triggers.cart_abandonment", 2)``: Beam counters in the namespace."""

    def __init__(self):
        self._made: dict = {}

    def inc(self, name: str, n: int = 1) -> None:
        counter = self._made.get(name)
        if counter is None:
            counter = self._made[name] = beam.metrics.Metrics.counter(NAMESPACE, name)
        counter.inc(n)
