"""Which events repeat an id the same user sent before: the pure part of ``transforms.dedupe``.

A user's memory maps each event id to the event time of its copy counted
last. An event repeats an earlier one when its id is in the memory and its
event time is within ``horizon`` of that copy's, either side (retries carry
the same bytes, so the same time). The answer depends on event times, not on
when the memory was last pruned, for every copy the user's timeline can
still take: a copy later than the allowed lateness may find its id
forgotten in a live run and be counted, and the timeline then dead-letters
it as late; a batch replay, whose watermark waits for the whole input,
drops it here.

An id may be forgotten once the watermark has passed
``time + horizon + allowed_lateness``. Pruning runs on one timer per user,
due ``sweep`` after the latest expiry in the memory when it is armed, so a
user's memory is swept about once per horizon while the user is active (a
batch replay sweeps each user twice, at its end) and an id is kept at most
about one horizon and a sweep past its expiry.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DedupeParams:
    horizon_ms: int
    lateness_ms: int = 0

    @property
    def sweep_ms(self) -> int:
        """How long after the expiry it waits for the pruning timer fires (a quarter horizon)."""
        return max(self.horizon_ms // 4, 1)


def remember(params: DedupeParams, memory: dict, event_id: str, time_ms: int) -> bool:
    """True if the event is new (and remembered); False if it repeats an id in ``memory``.

    >>> memory, p = {}, DedupeParams(horizon_ms=1000)
    >>> remember(p, memory, "e1", 5000), remember(p, memory, "e1", 5000)
    (True, False)
    >>> remember(p, memory, "e1", 5999), remember(p, memory, "e1", 4001)
    (False, False)
    >>> remember(p, memory, "e1", 6000), memory
    (True, {'e1': 6000})
    """
    first = memory.get(event_id)
    if first is not None and abs(time_ms - first) < params.horizon_ms:
        return False
    memory[event_id] = time_ms
    return True


def unique(params: DedupeParams, events) -> list[dict]:
    """A user's events that repeat none before them, in event-time order (time, then id).

    What ``remember`` keeps of the events arriving in that order: the way a
    bounded input, all of whose events are known, is deduplicated. Copies that
    are retries of the same bytes give the same events whatever their order.

    >>> p = DedupeParams(horizon_ms=1000)
    >>> events = [{"event_id": i, "timestamp": t} for i, t in [("b", 9), ("a", 5), ("b", 9)]]
    >>> [(e["event_id"], e["timestamp"]) for e in unique(p, events)]
    [('a', 5), ('b', 9)]
    """
    memory: dict = {}
    return [
        event
        for event in sorted(events, key=_order)
        if remember(params, memory, event["event_id"], event["timestamp"])
    ]


def _order(event: dict) -> tuple:
    return event["timestamp"], event["event_id"]


def expires_at(params: DedupeParams, first_ms: int) -> int:
    """The watermark after which an id first seen at ``first_ms`` may be forgotten."""
    return first_ms + params.horizon_ms + params.lateness_ms


def prune(params: DedupeParams, memory: dict, watermark_ms: int) -> None:
    """Forget, in place, every id whose expiry the watermark has reached.

    >>> memory, p = {"a": 0, "b": 500, "c": 2000}, DedupeParams(horizon_ms=1000)
    >>> prune(p, memory, 1500); memory
    {'c': 2000}
    """
    for event_id in [e for e, first in memory.items() if expires_at(params, first) <= watermark_ms]:
        del memory[event_id]


def next_sweep(params: DedupeParams, memory: dict) -> int | None:
    """When the pruning timer should fire next (None: nothing is remembered).

    At the latest expiry, not the earliest: a bounded replay's watermark only
    moves at its end, and every firing before that would be a round of timers
    that prunes nothing.

    >>> next_sweep(DedupeParams(horizon_ms=1000, lateness_ms=100), {"a": 0, "b": 300})
    1650
    >>> next_sweep(DedupeParams(horizon_ms=1000), {}) is None
    True
    """
    if not memory:
        return None
    return expires_at(params, max(memory.values())) + params.sweep_ms
