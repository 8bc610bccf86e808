"""DeduplicateEvents: drop the copies of an event id a user sent before.

Input: events with event-time timestamps, in the global window. Output:
unique events keyed by user (``(user_key, event)``, as the steps after it
need them); the ``unique`` counter moves for each, so
``duplicates = valid - unique``.

Which events repeat one seen before is ``models.dedupe``: the same id from
the same user with an event time within ``horizon`` of the copy counted
last. The first copy to arrive wins: duplicates are expected to be retries
of the same bytes. State per user is one cell, rewritten once per bundle
that touches the user: the ids it sent within about two horizons (a user
sending an event a second holds some 4,500 ids at the default 1 h) and the
pruning timer's due time; and the timer. It goes when the user goes quiet.

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
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain

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


class DeduplicateEvents(beam.PTransform):
    """Drop events whose id the same user sent within the event-time horizon."""

    def __init__(self, horizon_ms: int, allowed_lateness_ms: int = 0):
        super().__init__()
        self._params = dedupe.DedupeParams(horizon_ms, allowed_lateness_ms)

    def expand(self, events):
        return (
            events
            | "KeyByUser" >> beam.Map(_by_user).with_output_types(tuple[str, dict])
            | "DeduplicateFn"
            >> beam.ParDo(_DeduplicateFn(self._params)).with_output_types(tuple[str, dict])
        )
