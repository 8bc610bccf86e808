"""TrendingItems: the most viewed products per category over a sliding window.

Input: ``(user, event)`` pairs with event-time timestamps. Output: one record
``{category, window_start, window_end, version, items}`` per category each
time new views of it are released, for the current window of
``models.rolling`` (the last ``size`` of the category's views, in ``period``
buckets, aligned as Beam's ``SlidingWindows(size, period)``).

Why not Beam's ``SlidingWindows`` + ``CombinePerKey``: on the Python
DirectRunner every (key, window) pair goes through the reference trigger
driver at about half a millisecond each; with one-minute slides each view
lands in ten windows, and a replay of the Taobao file (62,683 category
minutes) would spend five minutes here alone. A stateful DoFn in the global
window keeps the same windows in per-bucket counts instead and releases views
in event-time order on the watermark, like ``UserTimeline``: the numbers are
those of the window, and the cost is one state update per view.

``version`` is the time of the newest view counted (it only grows per
category), so the Redis sink keeps the newest record. Views at or before
what a category has already released (later than the allowed lateness) are
counted as ``trending_late`` and left out; the same event is dead-lettered
by ``UserTimeline``.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain

from models import events as ev
from models import rolling
from transforms import metrics, ordering, pickled


def _view_by_category(keyed):
    event = keyed[1]
    category = event.get("category")
    product = event.get("product_id")
    if event["event_type"] == ev.PRODUCT_VIEW and category is not None and product is not None:
        yield category, (event["timestamp"], product)


class _TrendingFn(beam.DoFn):
    # Pickled bytes, read and written as objects (transforms.pickled says why).
    BUFFER = userstate.BagStateSpec("buffer", pickled.CODER)
    BUCKETS = userstate.ReadModifyWriteStateSpec("buckets", pickled.CODER)
    CLOCK = userstate.ReadModifyWriteStateSpec("clock", ordering.CLOCK_CODER)
    RELEASE = userstate.TimerSpec("release", TimeDomain.WATERMARK)
    CLEANUP = userstate.TimerSpec("cleanup", TimeDomain.WATERMARK)

    def __init__(self, size_ms: int, period_ms: int, top: int, allowed_lateness_ms: int):
        self._size = size_ms
        self._period = period_ms
        self._top = top
        self._lateness = allowed_lateness_ms
        self._late = metrics.counter("trending_late")

    def process(
        self,
        keyed,
        buffer=beam.DoFn.StateParam(BUFFER),
        clock=beam.DoFn.StateParam(CLOCK),
        release=beam.DoFn.TimerParam(RELEASE),
    ):
        released, pending = ordering.clock(clock)
        buffer = pickled.bag(buffer)
        if ordering.hold(keyed[1], buffer, released, pending, release, self._lateness) is not None:
            self._late.inc()

    @userstate.on_timer(RELEASE)
    def on_release(
        self,
        key=beam.DoFn.KeyParam,
        fired=beam.DoFn.TimestampParam,
        buffer=beam.DoFn.StateParam(BUFFER),
        buckets_state=beam.DoFn.StateParam(BUCKETS),
        clock=beam.DoFn.StateParam(CLOCK),
        release=beam.DoFn.TimerParam(RELEASE),
        cleanup=beam.DoFn.TimerParam(CLEANUP),
    ):
        released, pending = ordering.clock(clock)
        buffer = pickled.bag(buffer)
        buckets_state = pickled.cell(buckets_state)
        ready = ordering.release(fired, buffer, released, pending, release, self._lateness)
        if not ready:
            return
        buckets = buckets_state.read() or {}
        for ts, _product in ready:
            bucket = rolling.bucket_of(ts, self._period)
            if bucket not in buckets:
                buckets[bucket] = rolling.trending_empty()
        rolling.prune(buckets, self._size, self._period)
        for ts, product in ready:
            counts = buckets.get(rolling.bucket_of(ts, self._period))
            if counts is not None:
                rolling.trending_add(counts, product)
        buckets_state.write(buckets)
        newest = max(ts for ts, _ in ready)
        start, end = rolling.current_window(max(buckets), self._size, self._period)
        # The newest bucket stays in sliding windows until ``size`` after it starts.
        cleanup.set(ordering.at(max(buckets) + self._size + self._lateness))
        yield {
            "category": key,
            "window_start": start,
            "window_end": end,
            "version": newest,
            "items": rolling.trending_finish(rolling.trending_merge(buckets.values()), self._top),
        }

    @userstate.on_timer(CLEANUP)
    def on_cleanup(
        self,
        fired=beam.DoFn.TimestampParam,
        buckets_state=beam.DoFn.StateParam(BUCKETS),
        clock=beam.DoFn.StateParam(CLOCK),
    ):
        released, pending = ordering.clock(clock)
        buckets_state = pickled.cell(buckets_state)
        # The newest bucket has left every window: only the released marker stays (to spot
        # late views). A runner may still deliver a firing of a timer that was moved since.
        buckets = buckets_state.read()
        if not buckets or pending.read() is not None:
            return
        if fired.micros // 1000 >= max(buckets) + self._size + self._lateness:
            buckets_state.clear()


class TrendingItems(beam.PTransform):
    """Most viewed products per category over the current sliding window."""

    def __init__(self, size_ms: int, period_ms: int, top: int, allowed_lateness_ms: int = 0):
        super().__init__()
        self._fn = _TrendingFn(size_ms, period_ms, top, allowed_lateness_ms)

    def expand(self, keyed_events):
        return (
            keyed_events
            | "ViewsByCategory"
            >> beam.FlatMap(_view_by_category).with_output_types(tuple[str, tuple])
            | "CountInOrder" >> beam.ParDo(self._fn)
        )
