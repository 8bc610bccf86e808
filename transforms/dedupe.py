"""DeduplicateEvents: drop the copies of an event id a user sent before (batch).

Which events repeat one seen before is ``models.dedupe``: the same id from
the same user with an event time within ``horizon`` of the copy counted
last. Ids are scoped to their user: two users sending the same id both count
(an id is unique per event, so that is not a retry).

A bounded input in batch is grouped by user here, and each user's unique
events are kept in event-time order (``models.dedupe.unique``): no state and
no timer, and the output is the grouping itself, ``(user_key, [events])``,
for ``UserTimeline(grouped=True)`` to release without grouping the same
events a second time; ``each_event`` gives the ``(user_key, event)`` pairs
back, with their event times, for the steps that take single events. Where
every copy is known, the earliest in event time wins; duplicates are
expected to be retries of the same bytes, and then which copy wins makes no
difference. The ``unique`` counter moves for each unique event, so
``duplicates = valid - unique``.

A live job (and a streaming replay) drops copies in ``UserTimeline``'s
stateful step (``dedupe_horizon_ms``), the one step per user there: the first
copy to arrive wins. It was a keyed stateful step of its own before (and
before that Beam's ``DeduplicatePerKey``, whose state was keyed by the id
itself, a state read from the runner per event that no cache could answer).
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.transforms.window import TimestampedValue

from models import dedupe
from models.events import user_key
from transforms import metrics, ordering


def by_user(event: dict):
    """``(user_key, event)``: an event keyed by its user."""
    return user_key(event), event


class _UniqueOfUserFn(beam.DoFn):
    """All of one user's events (a bounded input, grouped): the unique ones, in order."""

    def __init__(self, params: dedupe.DedupeParams):
        self._params = params
        self._unique = metrics.counter("unique")

    def process(self, grouped):
        user, events = grouped
        kept = dedupe.unique(self._params, events)
        self._unique.inc(len(kept))
        yield user, kept


def each_event(grouped):
    """``(user_key, [events])`` -> each ``(user_key, event)``, at the event's own time."""
    user, events = grouped
    for event in events:
        yield TimestampedValue((user, event), ordering.at(event["timestamp"]))


class DeduplicateEvents(beam.PTransform):
    """A bounded input's events -> ``(user_key, [unique events in event-time order])``."""

    def __init__(self, horizon_ms: int, allowed_lateness_ms: int = 0):
        super().__init__()
        self._params = dedupe.DedupeParams(horizon_ms, allowed_lateness_ms)

    def expand(self, events):
        if not events.is_bounded:
            raise ValueError(
                "DeduplicateEvents needs a bounded input; a stream is deduplicated in "
                "UserTimeline(dedupe_horizon_ms=...)"
            )
        return (
            events
            | "KeyByUser" >> beam.Map(by_user).with_output_types(tuple[str, dict])
            | "GroupByUser" >> beam.GroupByKey()
            | "UniqueOfUser"
            >> beam.ParDo(_UniqueOfUserFn(self._params)).with_output_types(tuple[str, list[dict]])
        )
