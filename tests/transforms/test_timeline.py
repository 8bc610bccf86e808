"""The whole graph under a TestStream: event-time order, lateness, dead letters, cleanup."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream as EventStream
from apache_beam.utils.timestamp import Timestamp

from models.validation import FIELDS
from pipelines import keys, personalize
from pipelines.config import parse_config
from pipelines.keys import KeySource
from tests.conftest import pseudo

T0 = 1_699_999_980_000  # a whole minute, so windows align with the test's minutes
MIN = 60_000


def raw(event_id: str, minute: float, user: str = "u1", kind: str = "product_view", **extra):
    record = {name: None for name, _, _ in FIELDS}
    record.update(
        event_id=event_id,
        user_id=user,
        event_type=kind,
        timestamp=T0 + int(minute * MIN),
        product_id=f"p-{event_id}",
        category="shoes",
    )
    record.update(extra)
    return ("test", event_id, "record", record)


def at(minute: float) -> Timestamp:
    return Timestamp(micros=(T0 + int(minute * MIN)) * 1000)


def run(stream: EventStream, config: dict):
    """Every output of the graph over ``stream``.

    Consent defaults to granted unless ``config`` says otherwise, and the test
    users' pseudonyms (``u0`` to ``u99``) are turned back into their ids in what
    is returned, so assertions read in the ids the events were written with.
    """
    options = PipelineOptions([])
    options.view_as(StandardOptions).streaming = True
    COLLECTED.clear()
    config = {"consent": {"default": "granted"}, **config}
    with beam.Pipeline(runner="BundleBasedDirectRunner", options=options) as pipeline:
        outputs = personalize.build(
            pipeline | stream, parse_config(config), KeySource("env", keys.ENV)
        )
        for name in OUTPUTS:
            _ = outputs[name] | f"Collect{name}" >> beam.ParDo(_Collect(name))
    return {name: [_readable(x) for x in COLLECTED.get(name, [])] for name in OUTPUTS}


OUTPUTS = ("profiles", "dead_letters", "trending", "triggers", "erasures")
_IDS = {pseudo(f"u{n}"): f"u{n}" for n in range(100)}


def _readable(element):
    if isinstance(element, dict) and element.get("user_id") in _IDS:
        return {**element, "user_id": _IDS[element["user_id"]]}
    return element


# The BundleBasedDirectRunner runs DoFns in this process, so a module-level list
# sees every output (TestStream needs that runner; assert_that fires per pane there).
COLLECTED: dict[str, list] = {}


class _Collect(beam.DoFn):
    def __init__(self, name: str):
        self._name = name

    def process(self, element):
        COLLECTED.setdefault(self._name, []).append(element)


def latest(profiles, user="u1"):
    mine = [p for p in profiles if p["user_id"] == user]
    return max(mine, key=lambda p: p["version"])


def test_out_of_order_events_are_applied_in_event_time_order():
    stream = (
        EventStream()
        .advance_watermark_to(at(0))
        .add_elements([raw("c", 3), raw("a", 1), raw("b", 2)])
        .advance_watermark_to(at(10))
        .add_elements([raw("d", 11)])
        .advance_watermark_to_infinity()
    )
    found = run(stream, {})
    final = latest(found["profiles"])
    # Recent items are newest first: event time order, not arrival order.
    assert final["recent_items"] == ["p-d", "p-c", "p-b", "p-a"]
    assert final["events"] == 4
    assert found["dead_letters"] == []
    # One snapshot per release, each newer than the last.
    versions = [p["version"] for p in found["profiles"] if p["user_id"] == "u1"]
    assert versions == sorted(set(versions))


def test_late_event_within_allowed_lateness_is_still_put_in_order():
    stream = (
        EventStream()
        .advance_watermark_to(at(0))
        .add_elements([raw("a", 1), raw("c", 5)])
        .advance_watermark_to(at(5.5))
        .add_elements([raw("b", 4)])  # behind the watermark, within 2 minutes
        .advance_watermark_to_infinity()
    )
    found = run(stream, {"timeline": {"allowed_lateness": "2m"}})
    final = latest(found["profiles"])
    assert final["recent_items"] == ["p-c", "p-b", "p-a"]
    assert found["dead_letters"] == []


def test_too_late_event_becomes_a_dead_letter():
    stream = (
        EventStream()
        .advance_watermark_to(at(0))
        .add_elements([raw("a", 1), raw("c", 5)])
        .advance_watermark_to(at(30))
        .add_elements([raw("b", 4)])  # 26 minutes behind, no lateness allowed
        .advance_watermark_to_infinity()
    )
    found = run(stream, {})
    final = latest(found["profiles"])
    assert final["recent_items"] == ["p-c", "p-a"]
    [letter] = found["dead_letters"]
    assert letter["reason"] == "late"
    assert letter["event_id"] == "b"
    assert letter["stage"] == "UserTimeline"
    assert letter["timestamp"] == T0 + 4 * MIN


def test_sessions_close_and_reach_the_profile():
    stream = (
        EventStream()
        .advance_watermark_to(at(0))
        .add_elements([raw("a", 0), raw("b", 5), raw("c", 100), raw("d", 101, kind="purchase")])
        .advance_watermark_to_infinity()
    )
    found = run(stream, {})
    final = latest(found["profiles"])
    assert final["sessions"] == 2
    assert final["last_session"]["events"] == 2
    assert final["last_session"]["purchases"] == 1
    assert final["flags"]["returning"] is True


def test_trending_counts_the_current_window():
    views = [raw(f"v{i}", i, product_id="hot") for i in range(12)]
    views += [raw("w", 11.5, user="u2", product_id="cold")]
    stream = (
        EventStream()
        .advance_watermark_to(at(0))
        .add_elements(views)
        .advance_watermark_to_infinity()
    )
    found = run(stream, {})
    newest = max(found["trending"], key=lambda r: r["version"])
    # The window [2 min, 12 min) holds views 2..11 of "hot" and the one of "cold".
    assert newest["window_end"] - newest["window_start"] == 10 * MIN
    assert newest["window_end"] == T0 + 12 * MIN
    assert newest["items"] == [["hot", 10], ["cold", 1]]


def test_trending_skips_events_that_say_no_to_analytics():
    views = [raw(f"v{i}", i, product_id="hot") for i in range(3)]
    views += [raw("w", 2.5, user="u2", product_id="cold", consent={"analytics": False})]
    stream = EventStream().advance_watermark_to(at(0)).add_elements(views)
    found = run(stream.advance_watermark_to_infinity(), {})
    newest = max(found["trending"], key=lambda r: r["version"])
    assert newest["items"] == [["hot", 3]]


def test_trending_keeps_earlier_buckets_while_the_watermark_moves_on():
    # The watermark passes the end of the first view's bucket before the second view
    # comes: the first view still belongs to the window of the second.
    stream = (
        EventStream()
        .advance_watermark_to(at(0))
        .add_elements([raw("a", 1, product_id="hot")])
        .advance_watermark_to(at(4))
        .add_elements([raw("b", 5, user="u2", product_id="hot")])
        .advance_watermark_to_infinity()
    )
    newest = max(run(stream, {})["trending"], key=lambda r: r["version"])
    assert newest["window_end"] == T0 + 6 * MIN
    assert newest["items"] == [["hot", 2]]


def test_trending_ignores_a_cleanup_timer_that_has_since_moved():
    # The watermark jump to 12 makes both the release of the view at 5 and the cleanup
    # set by the view at 1 (1 + 10) due; the release moves the cleanup to 15.
    stream = (
        EventStream()
        .advance_watermark_to(at(0))
        .add_elements([raw("a", 1, product_id="x")])
        .advance_watermark_to(at(2))
        .add_elements([raw("b", 5, user="u2", product_id="y")])
        .advance_watermark_to(at(12))
        .add_elements([raw("c", 13, user="u3", product_id="z")])
        .advance_watermark_to_infinity()
    )
    newest = max(run(stream, {})["trending"], key=lambda r: r["version"])
    assert newest["window_end"] == T0 + 14 * MIN
    assert newest["items"] == [["y", 1], ["z", 1]]


def test_state_of_a_quiet_user_is_dropped_after_retention():
    stream = (
        EventStream()
        .advance_watermark_to(at(0))
        .add_elements([raw("a", 0), raw("b", 1)])
        .advance_watermark_to(at(200))  # retention of 60 minutes has passed
        .add_elements([raw("c", 300)])
        .advance_watermark_to_infinity()
    )
    found = run(stream, {"timeline": {"retention": "1h"}})
    final = latest(found["profiles"])
    assert final["events"] == 1
    assert final["first_seen"] == T0 + 300 * MIN
