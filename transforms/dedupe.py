"""DeduplicateEvents: drop the copies of an event id a user sent before.

Input: events with event-time timestamps, in the global window. Output:
unique events keyed by user (``(user_key, event)``, as the steps after it
need them); the ``unique`` counter moves for each, so
``duplicates = valid - unique``.

Which events repeat one seen before is ``models.dedupe``: the same id from
the same user with an event time within ``horizon`` of the copy counted
last. The first copy to arrive wins (in batch, where every copy is known,
the earliest in event time): duplicates are expected to be retries of the
same bytes, and then which copy wins makes no difference. State per user
is one cell, rewritten once per bundle that touches the user: the ids it
sent within about two horizons (a user sending an event a second holds some
4,500 ids at the default 1 h) and the pruning timer's due time; and the
timer. It goes when the user goes quiet.

Written by hand rather than with Beam's ``DeduplicatePerKey`` (which this
step used before): that transform keys its state by the id itself, so every
new event is a key the worker has never seen and costs a state read from
the runner that no cache can answer, a round trip per event. On Flink that
read was 40% of the Python worker's time. Keyed by user, the state of an
active user is read once and then served from the worker's state cache, and
its writes are one per user and bundle, not one per event; there is also
one timer per user instead of one per event. Scoping ids to their user
changes one thing: two users sending the same id both count (an id is
unique per event, so that is not a retry).

``grouped=True`` (a bounded input in batch) groups the events by user
instead and keeps each user's unique events in event-time order
(``models.dedupe.unique``): no state and no timer, and the output is the
grouping itself, ``(user_key, [events])``, for ``UserTimeline`` to release
without grouping the same events a second time; ``each_event`` gives the
``(user_key, event)`` pairs back, with their event times, for the steps that
take single events.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.window import TimestampedValue

from models import dedupe
from models.events import user_key
from transforms import ordering

NAMESPACE = "microtarget"


def _by_user(event: dict):
    return user_key(event), event


class _DeduplicateFn(beam.DoFn):
    # One cell: (the ids seen with their times, the due time of the pruning timer).
    MEMORY = userstate.ReadModifyWriteStateSpec("memory", PickleCoder())
    SWEEP = userstate.TimerSpec("sweep", TimeDomain.WATERMARK)

    def __init__(self, params: dedupe.DedupeParams):
        self._params = params
        self._unique = beam.metrics.Metrics.counter(NAMESPACE, "unique")

    def process(
        self,
        keyed,
        ts=beam.DoFn.TimestampParam,
        memory=beam.DoFn.StateParam(MEMORY),
        sweep=beam.DoFn.TimerParam(SWEEP),
    ):
        memory, pending = ordering.Fields(memory, 2).fields()
        event = keyed[1]
        time_ms = ts.micros // 1000
        seen = memory.read() or {}
        if not dedupe.remember(self._params, seen, event["event_id"], time_ms):
            return
        memory.write(seen)
        due = dedupe.expires_at(self._params, time_ms) + self._params.sweep_ms
        ordering.arm(due, pending, sweep)
        self._unique.inc()
        yield keyed

    @userstate.on_timer(SWEEP)
    def on_sweep(
        self,
        fired=beam.DoFn.TimestampParam,
        memory=beam.DoFn.StateParam(MEMORY),
        sweep=beam.DoFn.TimerParam(SWEEP),
    ):
        memory, pending = ordering.Fields(memory, 2).fields()
        seen = memory.read() or {}
        dedupe.prune(self._params, seen, fired.micros // 1000)
        due = dedupe.next_sweep(self._params, seen)
        if due is None:
            memory.clear()
            pending.clear()
            return
        memory.write(seen)
        sweep.set(ordering.at(due))
        pending.write(due)


class _UniqueOfUserFn(beam.DoFn):
    """All of one user's events (a bounded input, grouped): the unique ones, in order."""

    def __init__(self, params: dedupe.DedupeParams):
        self._params = params
        self._unique = beam.metrics.Metrics.counter(NAMESPACE, "unique")

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
    """Drop events whose id the same user sent within the event-time horizon.

    ``grouped``: the input is bounded and the pipeline runs in batch; the
    output is then ``(user_key, [unique events in event-time order])``.
    """

    def __init__(self, horizon_ms: int, allowed_lateness_ms: int = 0, grouped: bool = False):
        super().__init__()
        self._params = dedupe.DedupeParams(horizon_ms, allowed_lateness_ms)
        self._grouped = grouped

    def expand(self, events):
        keyed = events | "KeyByUser" >> beam.Map(_by_user).with_output_types(tuple[str, dict])
        if not self._grouped:
            return keyed | "DeduplicateFn" >> beam.ParDo(
                _DeduplicateFn(self._params)
            ).with_output_types(tuple[str, dict])
        if not events.is_bounded:
            raise ValueError("DeduplicateEvents(grouped=True) needs a bounded input")
        return (
            keyed
            | "GroupByUser" >> beam.GroupByKey()
            | "UniqueOfUser"
            >> beam.ParDo(_UniqueOfUserFn(self._params)).with_output_types(tuple[str, list[dict]])
        )
