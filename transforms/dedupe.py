"""DeduplicateEvents: drop repeated event ids with Beam's own ``DeduplicatePerKey``.

Input: events with event-time timestamps, in the global window. An event id
is remembered for ``horizon`` of event time after its first copy (Beam's
event-time timer clears it), so a retry within the horizon is dropped and
state stays bounded. The first copy to arrive wins: duplicates are expected
to be retries of the same bytes. Output: unique events; the ``unique``
counter moves for each, so ``duplicates = valid - unique``.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.transforms.deduplicate import DeduplicatePerKey
from apache_beam.utils.timestamp import Duration

NAMESPACE = "microtarget"


def _by_event_id(event: dict):
    return event["event_id"], event


class _CountUnique(beam.DoFn):
    def __init__(self):
        self._unique = beam.metrics.Metrics.counter(NAMESPACE, "unique")

    def process(self, keyed):
        self._unique.inc()
        yield keyed[1]


class DeduplicateEvents(beam.PTransform):
    """Drop events whose id was seen within the event-time horizon."""

    def __init__(self, horizon_ms: int):
        super().__init__()
        self._horizon = Duration(micros=horizon_ms * 1000)

    def expand(self, events):
        return (
            events
            | "KeyByEventId" >> beam.Map(_by_event_id).with_output_types(tuple[str, dict])
            | "DeduplicatePerKey" >> DeduplicatePerKey(event_time_duration=self._horizon)
            | "CountUnique" >> beam.ParDo(_CountUnique())
        )
