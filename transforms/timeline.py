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
  it goes to the dead letters with reason ``late``; but the consent it states
  still takes effect, at once (``models.timeline.late_consent``): a late
  withdrawal or erasure request erases what was written so far, and a late
  ``consent_change``, ``consent_revoked`` or ``erasure_requested`` event is
  not a dead letter.

State per user: the buffer (cleared as it is released), one cell with the
profile, the pattern automaton, the trigger governance and the matches still
open for conversion counting (``models.timeline.new_user_state``), and one
cell with the released-up-to time and the release timer's due time
(``transforms.ordering.clock``); the buffer and the user cell hold pickled
bytes (``transforms.pickled``). A cleanup timer at
``last item + retention`` drops all of it for a user who went quiet (after
firing any absence deadline still open).

Patterns (``DetectPatterns``): every released event also advances the
user's CEP automaton (``models.cep``), so matches come in event-time order.
A second event-time timer waits for the earliest absence deadline
(``deadline + allowed_lateness``), so "A not followed by B within T" fires
even when the user sends nothing more; a B that arrives late but within the
allowed lateness is released before the deadline is judged.

GovernTriggers: each match, in the same order, goes through the user's
trigger governance (``models.governance``: send once, cooldown, daily cap,
holdout), and the user's later purchases are matched against earlier
matches (``models.outcomes``: counters ``converted.PATTERN`` and, for
triggers, ``converted_treatment.PATTERN`` / ``converted_control.PATTERN``).
It lives here rather than in a stateful step of its own because here the
matches are already in event-time order (a downstream step would have to
order them again), and because with Beam 2.77's FnApiRunner a second
timer-driven stateful step fed by this one's timer output made this step's
timer output vanish in some runs (it depended on PYTHONHASHSEED).

Consent (``models.consent``): the gate is here because inheriting a user's
last known consent needs the user's events in event-time order, which only
this step has. Events without personalization consent are released in order
but change nothing but counters; a withdrawal or an erasure request drops
the profile, the open pattern runs and the governance, keeps the consent
(for ``consent.memory`` after the last event, so the user is not profiled
again on the default), and emits an erasure record.

Outputs: ``profiles`` (snapshot dicts, the main output), ``triggers``
(``schemas/trigger.avsc`` dicts, the held-out ones included), ``erasures``
(``models.timeline.erasure_record`` dicts, for ``EraseUsers``),
``segment_changes`` (``schemas/segment_change.avsc`` dicts: rule segments are
evaluated on every profile update, ``models.segments``) and ``dead_letters``.
"""

from __future__ import annotations

import dataclasses

import apache_beam as beam
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.window import GlobalWindows

from models import consent as cons
from models import dead_letters, timeline
from models.patterns import PatternSpec, compile_pattern
from models.segments import SegmentSpec, compile_segments
from transforms import ordering, pickled, progress
from transforms.metrics import Counters

NAMESPACE = "microtarget"
DEAD_LETTERS = "dead_letters"
TRIGGERS = "triggers"
ERASURES = "erasures"
SEGMENT_CHANGES = "segment_changes"
MODEL_INPUTS = "model_inputs"
STAGE = "UserTimeline"


class _TimelineFn(beam.DoFn):
    # Pickled bytes, read and written as objects (transforms.pickled says why).
    BUFFER = userstate.BagStateSpec("buffer", pickled.CODER)
    USER = userstate.ReadModifyWriteStateSpec("user", pickled.CODER)
    CLOCK = userstate.ReadModifyWriteStateSpec("clock", ordering.CLOCK_CODER)
    RELEASE = userstate.TimerSpec("release", TimeDomain.WATERMARK)
    DEADLINE = userstate.TimerSpec("deadline", TimeDomain.WATERMARK)
    CLEANUP = userstate.TimerSpec("cleanup", TimeDomain.WATERMARK)

    def __init__(
        self,
        params: timeline.TimelineParams,
        specs: dict[str, PatternSpec],
        allowed_lateness_ms: int,
        retention_ms: int,
        segment_specs: dict[str, SegmentSpec] | None = None,
    ):
        self._params = params
        self._specs = dict(specs)
        self._segment_specs = dict(segment_specs or {})
        self._lateness = allowed_lateness_ms
        self._retention = retention_ms
        self._counts = Counters()
        self._profiles = beam.metrics.Metrics.counter(NAMESPACE, "profiles")
        self._expired = beam.metrics.Metrics.counter(NAMESPACE, "profiles_expired")
        self._late = beam.metrics.Metrics.counter(NAMESPACE, "late")

    def setup(self):
        # Compiled here, not pickled with the DoFn: predicates are closures.
        compiled = tuple(compile_pattern(name, spec) for name, spec in self._specs.items())
        segments = compile_segments(self._segment_specs)
        self._params = dataclasses.replace(self._params, patterns=compiled, segments=segments)

    def process(
        self,
        keyed,
        buffer=beam.DoFn.StateParam(BUFFER),
        user=beam.DoFn.StateParam(USER),
        clock=beam.DoFn.StateParam(CLOCK),
        release=beam.DoFn.TimerParam(RELEASE),
        cleanup=beam.DoFn.TimerParam(CLEANUP),
    ):
        released, pending = ordering.clock(clock)
        buffer = pickled.bag(buffer)
        user = pickled.cell(user)
        key, item = keyed
        too_late = ordering.hold(item, buffer, released, pending, release, self._lateness)
        if too_late is None:
            return
        if item[2] == timeline.EVENT and cons.states_consent(item[3]):
            # Too late to put in order, but a withdrawal or an erasure is never dropped.
            yield from self._late_consent(key, item[3], too_late, user, cleanup)
            if item[3]["event_type"] in cons.CONSENT_EVENTS:
                return
        self._late.inc()
        yield beam.pvalue.TaggedOutput(DEAD_LETTERS, self._late_letter(key, item, too_late))

    def _late_consent(self, key, event, released, user, cleanup):
        state = user.read()
        state = timeline.new_user_state(key) if state is None else timeline.upgrade(state)
        step = timeline.late_consent(self._params, state, event, released)
        user.write(state)
        cleanup.set(ordering.at(timeline.expires_at(self._params, state)))
        for name, n in step.counts.items():
            self._counts.inc(name, n)
        for erasure in step.erasures:
            yield beam.pvalue.TaggedOutput(ERASURES, erasure)

    @userstate.on_timer(RELEASE)
    def on_release(
        self,
        key=beam.DoFn.KeyParam,
        fired=beam.DoFn.TimestampParam,
        buffer=beam.DoFn.StateParam(BUFFER),
        user=beam.DoFn.StateParam(USER),
        clock=beam.DoFn.StateParam(CLOCK),
        release=beam.DoFn.TimerParam(RELEASE),
        deadline=beam.DoFn.TimerParam(DEADLINE),
        cleanup=beam.DoFn.TimerParam(CLEANUP),
    ):
        released, pending = ordering.clock(clock)
        buffer = pickled.bag(buffer)
        user = pickled.cell(user)
        if pending.read() is None:
            return  # a firing of a timer moved or spent since: nothing is held
        ready = ordering.release(fired, buffer, released, pending, release, self._lateness)
        yield from self._advance(key, released.read(), ready, user, deadline, cleanup)

    @userstate.on_timer(DEADLINE)
    def on_deadline(
        self,
        key=beam.DoFn.KeyParam,
        fired=beam.DoFn.TimestampParam,
        buffer=beam.DoFn.StateParam(BUFFER),
        user=beam.DoFn.StateParam(USER),
        clock=beam.DoFn.StateParam(CLOCK),
        release=beam.DoFn.TimerParam(RELEASE),
        deadline=beam.DoFn.TimerParam(DEADLINE),
        cleanup=beam.DoFn.TimerParam(CLEANUP),
    ):
        released, pending = ordering.clock(clock)
        buffer = pickled.bag(buffer)
        user = pickled.cell(user)
        if not user.holds():
            return  # the user's state was dropped since the deadline was set
        # Everything up to the deadline is released first: a late B still cancels.
        ready = ordering.release(fired, buffer, released, pending, release, self._lateness)
        yield from self._advance(key, released.read(), ready, user, deadline, cleanup)

    def _advance(self, key, now, ready, user, deadline, cleanup):
        state = user.read()
        if state is None:
            if not ready:
                return
            self._profiles.inc()
            state = timeline.new_user_state(key)
        else:
            timeline.upgrade(state)
        step = timeline.advance(self._params, state, ready, now)
        progress.add("items_released", len(ready))
        user.write(state)
        if step.deadline is not None:
            deadline.set(ordering.at(step.deadline + self._lateness))
        cleanup.set(ordering.at(timeline.expires_at(self._params, state)))
        for name, n in step.counts.items():
            self._counts.inc(name, n)
        for erasure in step.erasures:
            yield beam.pvalue.TaggedOutput(ERASURES, erasure)
        if step.snapshot is not None:
            yield step.snapshot
        for change in step.segment_changes:
            yield beam.pvalue.TaggedOutput(SEGMENT_CHANGES, change)
        for model_input in step.model_inputs:
            yield beam.pvalue.TaggedOutput(MODEL_INPUTS, model_input)
        for trigger in step.triggers:
            yield beam.pvalue.TaggedOutput(TRIGGERS, trigger)

    @userstate.on_timer(CLEANUP)
    def on_cleanup(
        self,
        key=beam.DoFn.KeyParam,
        fired=beam.DoFn.TimestampParam,
        buffer=beam.DoFn.StateParam(BUFFER),
        user=beam.DoFn.StateParam(USER),
        clock=beam.DoFn.StateParam(CLOCK),
        deadline=beam.DoFn.TimerParam(DEADLINE),
        cleanup=beam.DoFn.TimerParam(CLEANUP),
    ):
        released, pending = ordering.clock(clock)
        buffer = pickled.bag(buffer)
        user = pickled.cell(user)
        state = user.read()
        if state is None or fired.micros // 1000 < timeline.expires_at(
            self._params, timeline.upgrade(state)
        ):
            # Already cleaned, or a firing of a deadline that has since moved on.
            return
        pending_at = pending.read()
        if pending_at is not None:
            # Items still wait for release: they are newer activity, come back after them.
            cleanup.set(ordering.at(pending_at + self._retention))
            return
        if self._specs:
            # Absence deadlines before now fire first: a runner may fire this timer before
            # an earlier deadline timer of the same key.
            now = fired.micros // 1000 - self._lateness
            yield from self._advance(key, now, [], user, deadline, cleanup)
        self._expired.inc()
        buffer.clear()
        user.clear()
        released.clear()
        deadline.clear()

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
    """Order each user's items in event time and keep the living profile.

    ``params``: the timeline's parameters (``pipelines.config.Config.timeline_params``).
    Its ``patterns`` and ``segments`` are compiled on the workers from ``patterns``
    and ``segments`` (the specs by name; compiled predicates are closures, which
    do not pickle). ``allowed_lateness_ms``: how long after the watermark an item
    is still released in order.
    """

    def __init__(
        self,
        params: timeline.TimelineParams,
        *,
        patterns: dict[str, PatternSpec] | None = None,
        segments: dict[str, SegmentSpec] | None = None,
        allowed_lateness_ms: int = 0,
    ):
        super().__init__()
        params = dataclasses.replace(params, patterns=(), segments=())
        self._fn = _TimelineFn(
            params, patterns or {}, allowed_lateness_ms, params.retention_ms, segments
        )

    def expand(self, inputs):
        events, sessions = inputs
        items = (
            # Typed, so the stateful step keys by a deterministic (string) coder.
            events | "EventItems" >> beam.Map(_event_item).with_output_types(tuple[str, tuple]),
            sessions | "SessionsIntoGlobalWindow" >> beam.WindowInto(GlobalWindows()),
        ) | "Merge" >> beam.Flatten()
        return items | "ReleaseInOrder" >> beam.ParDo(self._fn).with_outputs(
            DEAD_LETTERS, TRIGGERS, ERASURES, SEGMENT_CHANGES, MODEL_INPUTS, main="profiles"
        )
