"""SummarizeSessions: Beam session windows and a CombineFn over the pure core.

Not in the pipeline: ``UserTimeline`` cuts each user's sessions itself
(``models.session.cut`` in batch, the same rule in its stateful step in a
stream), one keyed step fewer. This transform is the reference that rule is
tested against (``tests/transforms/test_timeline_bounded.py``: the cut
sessions are Beam's session windows), and a windowed session summary for
anyone who wants one.

Input: ``(user, event)`` pairs with event-time timestamps, bounded or not.
Output: ``(user, timeline item)`` pairs carrying one summary per session,
timestamped at the end of the session window (last event + gap), which is
also when the summary takes effect in the profile.

Windowing: ``Sessions(gap)``; events later than the watermark by at most the
allowed lateness update the session in an accumulating late pane; later ones
are dropped by Beam here, and dead-lettered by ``UserTimeline``.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.transforms import trigger, window
from apache_beam.utils.timestamp import Duration

from models import session, timeline
from transforms import metrics


def late_panes(allowed_lateness_ms: int) -> dict:
    """Keyword arguments of ``beam.WindowInto`` for the given allowed lateness.

    With no allowed lateness, Beam's default trigger (one on-time pane) gives
    every answer there is and keeps the runner on its plain grouping path.
    With lateness, the default trigger fires a session on time and once more
    per late event, accumulating, so a late event updates its session instead
    of being lost. (Spelling that trigger out as
    ``AfterWatermark(late=AfterCount(1))`` stalled the bundle-based
    DirectRunner as soon as an event came behind the watermark.)
    """
    if allowed_lateness_ms <= 0:
        return {}
    return {
        "accumulation_mode": trigger.AccumulationMode.ACCUMULATING,
        "allowed_lateness": allowed_lateness_ms / 1000,
    }


class SessionSummaryFn(beam.CombineFn):
    """CombineFn over ``models.session``; the output is the raw accumulator."""

    def create_accumulator(self):
        return session.empty()

    def add_input(self, accumulator, event):
        return session.add(accumulator, event)

    def merge_accumulators(self, accumulators):
        return session.merge(accumulators)

    def extract_output(self, accumulator):
        return accumulator


class _ToTimelineItem(beam.DoFn):
    def __init__(self):
        self._sessions = metrics.counter("sessions")

    def process(self, keyed, win=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
        user, accumulator = keyed
        if pane.is_first or pane.index < 0:
            # Prism (2.77) gives the pane of a merged session window as "no firing"
            # (index -1); with Beam's default trigger that is the window's one firing.
            self._sessions.inc()
        closed_at = win.max_timestamp().micros // 1000
        yield user, timeline.session_item(session.finish(accumulator, user), closed_at)


class SummarizeSessions(beam.PTransform):
    """Cut each user's events into sessions and summarize every session."""

    def __init__(self, gap_ms: int, allowed_lateness_ms: int = 0):
        super().__init__()
        self._gap_ms = gap_ms
        self._allowed_lateness_ms = allowed_lateness_ms

    def expand(self, keyed_events):
        return (
            keyed_events
            | "WindowIntoSessions"
            >> beam.WindowInto(
                window.Sessions(Duration(micros=self._gap_ms * 1000)),  # exact, no float
                **late_panes(self._allowed_lateness_ms),
            )
            | "CombineSession" >> beam.CombinePerKey(SessionSummaryFn())
            | "ToTimelineItem" >> beam.ParDo(_ToTimelineItem()).with_output_types(tuple[str, tuple])
        )
