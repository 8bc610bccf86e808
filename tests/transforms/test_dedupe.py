"""Dropping copies: in UserTimeline's stateful step under a TestStream, and in a batch grouping.

A stream's copies are dropped where its timeline keeps the user's state
(``UserTimeline(dedupe_horizon_ms=...)``): retries dropped, ids scoped to
users, ids forgotten at a release once the watermark passed their expiry.
"""

from __future__ import annotations

import random

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream as EventStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from models.timeline import TimelineParams
from transforms.dedupe import DeduplicateEvents, by_user
from transforms.timeline import UserTimeline

T0 = 1_700_000_000_000
MIN = 60_000
HORIZON = 10 * MIN  # the sweep is a quarter of it


def ev(event_id: str, minute: float, user: str = "u1") -> TimestampedValue:
    ms = T0 + int(minute * MIN)
    event = {"event_id": event_id, "user_id": user, "event_type": "click", "timestamp": ms}
    event["note"] = f"{user}@{minute}"
    return TimestampedValue(event, ms / 1000)


def at(minute: float) -> Timestamp:
    return Timestamp(micros=(T0 + int(minute * MIN)) * 1000)


def _run(stream: EventStream, expected: list[str], lateness_ms: int = 0) -> None:
    options = PipelineOptions([])
    options.view_as(StandardOptions).streaming = True
    with beam.Pipeline(runner="BundleBasedDirectRunner", options=options) as pipeline:
        timeline = (
            pipeline
            | stream
            | beam.Map(by_user).with_output_types(tuple[str, dict])
            | UserTimeline(
                TimelineParams(),
                allowed_lateness_ms=lateness_ms,
                streaming=True,
                dedupe_horizon_ms=HORIZON,
            )
        )
        notes = timeline.unique | beam.Map(lambda keyed: keyed[1]["note"])
        assert_that(notes, equal_to(expected))


def test_a_retry_within_the_horizon_is_dropped_even_after_the_watermark_moved_on():
    stream = (
        EventStream()
        .add_elements([ev("a", 0), ev("b", 1)])
        .advance_watermark_to(at(5))
        .add_elements([ev("a", 0), ev("b", 1), ev("c", 6)])
        .advance_watermark_to_infinity()
    )
    _run(stream, ["u1@0", "u1@1", "u1@6"])


def test_the_same_id_counts_again_once_its_event_time_is_a_horizon_away():
    stream = (
        EventStream()
        .add_elements([ev("a", 20)])
        .add_elements([ev("a", 29.9), ev("a", 10.1), ev("a", 30)])
        .add_elements([ev("b", 20)])
        .add_elements([ev("b", 10)])
        .advance_watermark_to_infinity()
    )
    _run(stream, ["u1@20", "u1@30", "u1@20", "u1@10"])


def test_ids_are_scoped_to_their_user():
    stream = (
        EventStream()
        .add_elements([ev("a", 0, "u1"), ev("a", 0, "u2"), ev("a", 0, "u1")])
        .advance_watermark_to_infinity()
    )
    _run(stream, ["u1@0", "u2@0"])


def test_an_id_is_forgotten_at_a_release_past_horizon_and_lateness_and_not_before():
    # "a" at 0 may be forgotten once the watermark is past 10 + 2 (lateness). The releases
    # fall at each event + 2: "b" at 13 is released at 15, which forgets "a"; "b" at 9 at
    # 11, which keeps it. A copy of "a" at 9.9 (within the horizon) then comes behind the
    # watermark: a new event in the first case (which the timeline then dead-letters as
    # late), a copy in the second.
    for b_at, expected in ((13, ["u1@0", "u1@13", "u1@9.9"]), (9, ["u1@0", "u1@9"])):
        stream = (
            EventStream()
            .add_elements([ev("a", 0), ev("b", b_at)])
            .advance_watermark_to(at(16))
            .add_elements([ev("a", 9.9)])
            .advance_watermark_to_infinity()
        )
        _run(stream, expected, lateness_ms=2 * MIN)


def test_in_a_batch_retries_are_dropped_whatever_the_order():
    events = [ev("a", 0), ev("b", 2, "u2"), ev("a", 0), ev("c", 0), ev("b", 2, "u2"), ev("c", 30)]
    shuffled = events[:]
    random.Random(7).shuffle(shuffled)
    for order in (events, events[::-1], shuffled):
        with beam.Pipeline() as pipeline:
            notes = (
                pipeline
                | beam.Create(order)
                | DeduplicateEvents(HORIZON)
                | beam.FlatMap(lambda grouped: [event["note"] for event in grouped[1]])
            )
            assert_that(notes, equal_to(["u1@0", "u2@2", "u1@0", "u1@30"]))
