"""UserTimeline: one user's events, sessions and rolling metrics, in event-time order.

Input: ``(user, event)`` pairs, bounded or not, in any order. The DoFn runs
in the global window, keyed by user, and is the one stateful step per user
of a live job:

* with ``dedupe_horizon_ms``, a copy of an event id the user sent within the
  horizon is dropped first (``models.dedupe``; the ids live in a cell of
  their own and are pruned at each release once the watermark has passed
  their expiry), and each unique event goes to the ``unique`` output for the
  steps that take single events (trending);
* every event is buffered in state, and an event-time timer is set at
  ``timestamp + allowed_lateness``;
* the released events are cut into sessions in their order
  (``models.session``, as ``cut`` does and Beam's ``Sessions(gap)`` windows
  would): the open session's accumulator waits in a cell, and a session is
  summarized into a timeline item once the release reaches its last instant
  (last event + gap - 1), for which the release timer is armed;
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

A bounded input in batch is grouped by user instead, and each user's items
are released all at once (``_ReleaseAllFn``), with the deadlines and the
expiry that the timers would fire after them replayed in their order: the
same answers without a state cell or a timer per user. A streaming run, or
any unbounded input, takes the stateful way above. ``grouped=True`` takes
that grouping as it comes from ``DeduplicateEvents``,
``(user, [events])``, instead of grouping again.

Dedupe, sessions and the timeline were three keyed steps, each with its own
state, timers and shuffle of every event; on Flink each was a stage whose
bundles cross to the Python worker and back. Folded into one step, an event
crosses once.

State per user: the buffer (cleared as it is released), one cell with the
profile, the pattern automaton, the trigger governance and the matches still
open for conversion counting (``models.timeline.new_user_state``), and one
cell with the released-up-to time and the release timer's due time
(``transforms.ordering.clock``), the open session's accumulator and the
dedupe ids; the buffer, the user and session cells hold pickled bytes
(``transforms.pickled``). A cleanup timer at ``last item + retention`` drops
all of it for a user who went quiet (after firing any absence deadline still
open; ids still inside the dedupe horizon, with a retention shorter than it,
keep their cell until they expire).

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
from apache_beam.coders import PickleCoder
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain

from models import consent as cons
from models import dead_letters, dedupe, session, timeline
from models.patterns import PatternSpec, compile_pattern
from models.segments import SegmentSpec, compile_segments
from transforms import metrics, ordering, pickled, progress
from transforms.metrics import Counters

DEAD_LETTERS = "dead_letters"
TRIGGERS = "triggers"
ERASURES = "erasures"
SEGMENT_CHANGES = "segment_changes"
MODEL_INPUTS = "model_inputs"
UNIQUE = "unique"
AUDIT = "audit"
STAGE = "UserTimeline"


class _Timeline(beam.DoFn):
    """What both ways of running a timeline share: parameters, counters, outputs."""

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
        self._profiles = metrics.counter("profiles")
        self._expired = metrics.counter("profiles_expired")
        self._late = metrics.counter("late")

    def setup(self):
        # Compiled here, not pickled with the DoFn: predicates are closures.
        compiled = tuple(compile_pattern(name, spec) for name, spec in self._specs.items())
        segments = compile_segments(self._segment_specs)
        self._params = dataclasses.replace(self._params, patterns=compiled, segments=segments)

    def _outputs(self, step: timeline.Step):
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


class _TimelineFn(_Timeline):
    # Pickled bytes, read and written as objects (transforms.pickled says why).
    BUFFER = userstate.BagStateSpec("buffer", pickled.CODER)
    USER = userstate.ReadModifyWriteStateSpec("user", pickled.CODER)
    CLOCK = userstate.ReadModifyWriteStateSpec("clock", ordering.CLOCK_CODER)
    # The open session's accumulator (models.session), of the events released so far.
    SESSION = userstate.ReadModifyWriteStateSpec("session", pickled.CODER)
    # The ids the user sent, with their event times (models.dedupe).
    SEEN = userstate.ReadModifyWriteStateSpec("seen", PickleCoder())
    RELEASE = userstate.TimerSpec("release", TimeDomain.WATERMARK)
    DEADLINE = userstate.TimerSpec("deadline", TimeDomain.WATERMARK)
    CLEANUP = userstate.TimerSpec("cleanup", TimeDomain.WATERMARK)

    def __init__(self, *args, dedupe_params: dedupe.DedupeParams | None = None):
        super().__init__(*args)
        self._dedupe = dedupe_params
        self._unique = metrics.counter("unique")
        self._sessions = metrics.counter("sessions")

    def process(
        self,
        keyed,
        buffer=beam.DoFn.StateParam(BUFFER),
        user=beam.DoFn.StateParam(USER),
        clock=beam.DoFn.StateParam(CLOCK),
        seen=beam.DoFn.StateParam(SEEN),
        release=beam.DoFn.TimerParam(RELEASE),
        cleanup=beam.DoFn.TimerParam(CLEANUP),
    ):
        key, event = keyed
        if self._dedupe is not None:
            memory = seen.read() or {}
            if not dedupe.remember(self._dedupe, memory, event["event_id"], event["timestamp"]):
                return
            seen.write(memory)
            self._unique.inc()
            yield beam.pvalue.TaggedOutput(UNIQUE, keyed)
        item = timeline.event_item(event)
        released, pending = ordering.clock(clock)
        buffer = pickled.bag(buffer)
        user = pickled.cell(user)
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
        session_cell=beam.DoFn.StateParam(SESSION),
        seen=beam.DoFn.StateParam(SEEN),
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
        metrics.released(fired.micros // 1000)
        now = released.read()
        ready = self._cut(key, ready, now, pickled.cell(session_cell), pending, release)
        self._forget(seen, fired.micros // 1000)
        yield from self._advance(key, now, ready, user, deadline, cleanup)

    def _cut(self, key, ready, now, session_cell, pending, release) -> list:
        """``ready`` and the sessions its events close (``models.session.extend``).

        Sessions are cut from the events in the order they are released, so a
        session is whole once the release reaches its last instant (its last
        event + gap - 1, when Beam's session window would close); until then its
        accumulator waits in ``SESSION`` and the release timer is armed for it.
        """
        gap = self._params.session_gap_ms
        events = sorted((item for item in ready if item[2] == timeline.EVENT), key=_by_time)
        acc = session_cell.read()
        if acc is None and not events:
            return ready
        closed, acc = session.extend(acc, [item[3] for item in events], gap, now)
        if acc is None:
            session_cell.clear()
        elif events:
            session_cell.write(acc)
        if acc is not None:
            ordering.arm(acc[1] + gap - 1 + self._lateness, pending, release)
        if not closed:
            return ready
        self._sessions.inc(len(closed))
        items = [timeline.session_item(session.finish(a, key), a[1] + gap - 1) for a in closed]
        return [*ready, *items]

    def _forget(self, seen, watermark_ms: int) -> None:
        """Drop the ids the watermark has put beyond the dedupe horizon."""
        if self._dedupe is None:
            return
        memory = seen.read()
        if not memory:
            return
        size = len(memory)
        dedupe.prune(self._dedupe, memory, watermark_ms)
        if not memory:
            seen.clear()
        elif len(memory) < size:
            seen.write(memory)

    @userstate.on_timer(DEADLINE)
    def on_deadline(
        self,
        key=beam.DoFn.KeyParam,
        fired=beam.DoFn.TimestampParam,
        buffer=beam.DoFn.StateParam(BUFFER),
        user=beam.DoFn.StateParam(USER),
        clock=beam.DoFn.StateParam(CLOCK),
        session_cell=beam.DoFn.StateParam(SESSION),
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
        now = released.read()
        ready = self._cut(key, ready, now, pickled.cell(session_cell), pending, release)
        yield from self._advance(key, now, ready, user, deadline, cleanup)

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
        yield from self._outputs(step)

    @userstate.on_timer(CLEANUP)
    def on_cleanup(
        self,
        key=beam.DoFn.KeyParam,
        fired=beam.DoFn.TimestampParam,
        buffer=beam.DoFn.StateParam(BUFFER),
        user=beam.DoFn.StateParam(USER),
        clock=beam.DoFn.StateParam(CLOCK),
        session_cell=beam.DoFn.StateParam(SESSION),
        seen=beam.DoFn.StateParam(SEEN),
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
        fired_ms = fired.micros // 1000
        self._forget(seen, fired_ms)
        memory = seen.read()
        if memory:
            # A retention shorter than the dedupe horizon: the ids are kept until they expire.
            cleanup.set(ordering.at(dedupe.next_sweep(self._dedupe, memory)))
            return
        if self._specs:
            # Absence deadlines before now fire first: a runner may fire this timer before
            # an earlier deadline timer of the same key.
            now = fired_ms - self._lateness
            yield from self._advance(key, now, [], user, deadline, cleanup)
        self._expired.inc()
        buffer.clear()
        user.clear()
        released.clear()
        session_cell.clear()
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


class _ReleaseAllFn(_Timeline):
    """A bounded input's events of one user, all at once (batch): no state, no timer.

    The user's sessions are cut and summarized here (``models.session.cut``), as
    ``SummarizeSessions`` would. Once grouped, every item of the user is here,
    and ``models.timeline.advance`` gives the same answers however the items
    are split into releases. What
    follows the last release in a batch run is replayed in the order its
    watermark timers would fire: each absence deadline still open (due at
    ``deadline + allowed_lateness``) before the user's state expires, then the
    expiry, which fires any deadline left up to it and drops the user.
    """

    def __init__(self, *args, audit: bool = False):
        super().__init__(*args)
        self._audit = audit

    def process(self, grouped):
        key, events = grouped
        events = list(events)
        items = [timeline.event_item(event) for event in events]
        # The user's sessions, cut here as the stream's session windows cut them.
        gap = self._params.session_gap_ms
        cut = session.cut(events, gap)
        items += [timeline.session_item(session.finish(acc, key), acc[1] + gap - 1) for acc in cut]
        self._counts.inc("sessions", len(cut))
        state = timeline.new_user_state(key)
        self._profiles.inc()
        step = timeline.advance(self._params, state, items, max(item[0] for item in items))
        progress.add("items_released", len(items))
        steps = [step]
        # The report is analytics: a user whose latest consent refuses it has no record.
        consent = self._params.consent, state["consent"]
        audited = self._audit and cons.allows(*consent, cons.ANALYTICS)
        marketing = self._audit and cons.allows(*consent, cons.MARKETING)
        yield from self._outputs(step)
        expires = timeline.expires_at(self._params, state)  # only items move it
        while step.deadline is not None and step.deadline + self._lateness < expires:
            step = timeline.advance(self._params, state, [], step.deadline)
            steps.append(step)
            yield from self._outputs(step)
        if self._specs:
            step = timeline.advance(self._params, state, [], expires - self._lateness)
            steps.append(step)
            yield from self._outputs(step)
        self._expired.inc()
        if audited and not any(done.erasures for done in steps):
            # The user's share of the run's counts, for the report (an erased user has none).
            counts: dict = {}
            for done in steps:
                for name, n in done.counts.items():
                    counts[name] = counts.get(name, 0) + n
            snapshot = next((d.snapshot for d in reversed(steps) if d.snapshot), None)
            fields = self._params.audit_fields
            record = timeline.audit_record(key, events, counts, snapshot, fields, marketing)
            yield beam.pvalue.TaggedOutput(AUDIT, record)


def _keyed(keyed: tuple) -> tuple:
    return keyed


def _by_time(item: tuple) -> tuple:
    return item[0], item[1]


class UserTimeline(beam.PTransform):
    """Order each user's items in event time and keep the living profile.

    ``params``: the timeline's parameters (``pipelines.config.Config.timeline_params``).
    Its ``patterns`` and ``segments`` are compiled on the workers from ``patterns``
    and ``segments`` (the specs by name; compiled predicates are closures, which
    do not pickle). ``allowed_lateness_ms``: how long after the watermark an item
    is still released in order. ``streaming``: release with state and timers even
    when the input is bounded (a bounded input in batch is grouped by user).
    ``grouped``: the input is already grouped, ``(user, [events])`` of a bounded
    input in batch (``DeduplicateEvents``).
    ``dedupe_horizon_ms``: with state and timers, drop the copies of an event id
    the user sent within this horizon first (``models.dedupe``), and give the
    unique events as the ``unique`` output; None: the input is unique already.
    ``audit`` (batch only): one ``models.timeline.audit_record`` per user who
    was not erased, as the ``audit`` output (``microtarget report`` reads them).
    """

    def __init__(
        self,
        params: timeline.TimelineParams,
        *,
        patterns: dict[str, PatternSpec] | None = None,
        segments: dict[str, SegmentSpec] | None = None,
        allowed_lateness_ms: int = 0,
        streaming: bool = False,
        grouped: bool = False,
        dedupe_horizon_ms: int | None = None,
        audit: bool = False,
    ):
        super().__init__()
        if grouped and streaming:
            raise ValueError("UserTimeline: a grouped input is released in batch, not streaming")
        if audit and streaming:
            raise ValueError("UserTimeline: audit records come from a batch release only")
        params = dataclasses.replace(params, patterns=(), segments=())
        args = (params, patterns or {}, allowed_lateness_ms, params.retention_ms, segments)
        deduped = (
            None
            if dedupe_horizon_ms is None
            else dedupe.DedupeParams(dedupe_horizon_ms, allowed_lateness_ms)
        )
        self._fn = _TimelineFn(*args, dedupe_params=deduped)
        self._all = _ReleaseAllFn(*args, audit=audit)
        self._streaming = streaming
        self._grouped = grouped

    def expand(self, events):
        if self._grouped:
            items = events
            release = "ReleaseAll" >> beam.ParDo(self._all)
        elif self._streaming or not events.is_bounded:
            # Typed, so the stateful step keys by a deterministic (string) coder.
            items = events | "Keyed" >> beam.Map(_keyed).with_output_types(tuple[str, dict])
            release = "ReleaseInOrder" >> beam.ParDo(self._fn)
        else:
            # A bounded input: every event is there once grouped, and one release of all
            # of them gives what the timers give, without a state cell or a timer per user,
            # and without a grouping by session window.
            items = events | "GroupByUser" >> beam.GroupByKey()
            release = "ReleaseAll" >> beam.ParDo(self._all)
        return items | release.with_outputs(
            DEAD_LETTERS,
            TRIGGERS,
            ERASURES,
            SEGMENT_CHANGES,
            MODEL_INPUTS,
            UNIQUE,
            AUDIT,
            main="profiles",
        )
