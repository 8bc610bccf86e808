"""UserTimeline: one user's events, sessions and rolling metrics, in event-time order.

Input: ``(user, event)`` pairs and ``(user, timeline item)`` pairs from
``SummarizeSessions`` (see ``models.timeline``), bounded or not, in any
order. The DoFn runs in the global window, keyed by user:

* every item is buffered in state, and an event-time timer is set at
  ``timestamp + allowed_lateness``;
* when the timer fires at ``T``, every buffered item at or before
  ``T - allowed_lateness`` is folded into the profile in
  ``(timestamp, id, kind)`` order, one profile snapshot is emitted, and the
  timer moves to the latest still-buffered item (so a bounded replay fires a
  handful of times per user, not once per event);
* an item at or before the last released time can no longer be put in order:
  it goes to the dead letters with reason ``late``.

State per user: the buffer (cleared as it is released), the profile, the
released-up-to time and the pending timer. A cleanup timer at
``last_seen + retention`` drops all of it for a user who went quiet.

Outputs: ``profiles`` (snapshot dicts, the main output) and ``dead_letters``.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.coders import PickleCoder, VarIntCoder
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.window import GlobalWindows

from models import dead_letters, timeline
from models import profile as prof
from transforms import ordering

NAMESPACE = "microtarget"
DEAD_LETTERS = "dead_letters"
STAGE = "UserTimeline"


class _TimelineFn(beam.DoFn):
    BUFFER = userstate.BagStateSpec("buffer", PickleCoder())
    PROFILE = userstate.ReadModifyWriteStateSpec("profile", PickleCoder())
    RELEASED = userstate.ReadModifyWriteStateSpec("released", VarIntCoder())
    PENDING = userstate.ReadModifyWriteStateSpec("pending", VarIntCoder())
    RELEASE = userstate.TimerSpec("release", TimeDomain.WATERMARK)
    CLEANUP = userstate.TimerSpec("cleanup", TimeDomain.WATERMARK)

    def __init__(self, params: prof.ProfileParams, allowed_lateness_ms: int, retention_ms: int):
        self._params = params
        self._lateness = allowed_lateness_ms
        self._retention = retention_ms
        self._profiles = beam.metrics.Metrics.counter(NAMESPACE, "profiles")
        self._expired = beam.metrics.Metrics.counter(NAMESPACE, "profiles_expired")
        self._late = beam.metrics.Metrics.counter(NAMESPACE, "late")

    def process(
        self,
        keyed,
        buffer=beam.DoFn.StateParam(BUFFER),
        released=beam.DoFn.StateParam(RELEASED),
        pending=beam.DoFn.StateParam(PENDING),
        release=beam.DoFn.TimerParam(RELEASE),
    ):
        user, item = keyed
        too_late = ordering.hold(item, buffer, released, pending, release, self._lateness)
        if too_late is not None:
            self._late.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, self._late_letter(user, item, too_late))

    @userstate.on_timer(RELEASE)
    def on_release(
        self,
        key=beam.DoFn.KeyParam,
        fired=beam.DoFn.TimestampParam,
        buffer=beam.DoFn.StateParam(BUFFER),
        profile=beam.DoFn.StateParam(PROFILE),
        released=beam.DoFn.StateParam(RELEASED),
        pending=beam.DoFn.StateParam(PENDING),
        release=beam.DoFn.TimerParam(RELEASE),
        cleanup=beam.DoFn.TimerParam(CLEANUP),
    ):
        ready = ordering.release(fired, buffer, released, pending, release, self._lateness)
        if not ready:
            return
        ready.sort(key=timeline.order)
        state = profile.read()
        if state is None:
            self._profiles.inc()
            state = prof.new_state(key)
        for item in ready:
            timeline.apply(self._params, state, item)
        profile.write(state)
        cleanup.set(ordering.at(state["now"] + self._retention))
        yield prof.snapshot(self._params, state)

    @userstate.on_timer(CLEANUP)
    def on_cleanup(
        self,
        fired=beam.DoFn.TimestampParam,
        buffer=beam.DoFn.StateParam(BUFFER),
        profile=beam.DoFn.StateParam(PROFILE),
        released=beam.DoFn.StateParam(RELEASED),
        pending=beam.DoFn.StateParam(PENDING),
        cleanup=beam.DoFn.TimerParam(CLEANUP),
    ):
        state = profile.read()
        if state is None or fired.micros // 1000 < state["now"] + self._retention:
            # Already cleaned, or a firing of a deadline that has since moved on.
            return
        pending_at = pending.read()
        if pending_at is not None:
            # Items still wait for release: they are newer activity, come back after them.
            cleanup.set(ordering.at(pending_at + self._retention))
            return
        self._expired.inc()
        buffer.clear()
        profile.clear()
        released.clear()

    def _late_letter(self, user: str, item: tuple, released_until: int) -> dict:
        ts, item_id, kind, payload = item
        return dead_letters.make_dead_letter(
            reason="late",
            detail=(
                f"{'event' if kind == timeline.EVENT else 'item'} at {ts} ms arrived after "
                f"user {user!r}'s timeline was released up to {released_until} ms "
                f"(allowed lateness {self._lateness} ms)"
            ),
            stage=STAGE,
            event_id=item_id if kind == timeline.EVENT else None,
            timestamp=ts,
            raw=payload,
        )


def _event_item(keyed):
    user, event = keyed
    return user, timeline.event_item(event)


class UserTimeline(beam.PTransform):
    """Order each user's items in event time and keep the living profile."""

    def __init__(self, params: prof.ProfileParams, allowed_lateness_ms: int, retention_ms: int):
        super().__init__()
        self._fn = _TimelineFn(params, allowed_lateness_ms, retention_ms)

    def expand(self, inputs):
        events, sessions = inputs
        items = (
            events | "EventItems" >> beam.Map(_event_item),
            sessions | "SessionsIntoGlobalWindow" >> beam.WindowInto(GlobalWindows()),
        ) | "Merge" >> beam.Flatten()
        return items | "ReleaseInOrder" >> beam.ParDo(self._fn).with_outputs(
            DEAD_LETTERS, main="profiles"
        )
