"""A bounded input's timeline, grouped by user, against the stateful one driven by timers.

The ways (deduplicated and released by timers in the timeline's state,
deduplicated in the grouping and released at once, or those unique events
grouped again and released at once) run in one batch pipeline over the same
generated events with the full example config (patterns with absence
deadlines, segments, models), and must give the same sessions, triggers,
segment changes, model examples and final profiles. They differ only where
releases fall: how many snapshots and score requests a user gets on the way.
"""

from __future__ import annotations

import random
from collections import defaultdict

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from models import personas, session, timeline
from pipelines.config import load_config
from tests.conftest import ROOT
from transforms.dedupe import DeduplicateEvents, by_user, each_event
from transforms.sessions import SummarizeSessions
from transforms.sources import DecodeEvents
from transforms.timeline import UserTimeline

COLLECTED: dict[str, list] = defaultdict(list)
OUTPUTS = ("profiles", "triggers", "segment_changes", "model_inputs", "erasures", "dead_letters")


class _Collect(beam.DoFn):
    def __init__(self, name: str):
        self._name = name

    def process(self, element):
        COLLECTED[self._name].append(element)


def _run(build) -> None:
    """Run ``build(pipeline)`` on the FnApiRunner (in this process: ``COLLECTED`` sees it)."""
    COLLECTED.clear()
    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as pipeline:
        build(pipeline)


def _raw(records):
    return [("test", record["event_id"], "record", record) for record in records]


def test_cut_sessions_are_the_session_windows():
    rng = random.Random(7)
    gap = 1_000
    events = []
    for user in ("a", "b", "c"):
        ts = 0
        for n in range(60):
            # Steps around the gap, exactly at it and one short of it included.
            ts += rng.choice([0, 1, gap - 1, gap, gap + 1, 3 * gap, rng.randrange(2 * gap)])
            event = {"event_id": f"{user}{n}", "event_type": "click", "timestamp": ts}
            events.append((user, event))

    def build(pipeline):
        _ = (
            pipeline
            | beam.Create(events)
            | beam.Map(lambda kv: TimestampedValue(kv, Timestamp(micros=kv[1]["timestamp"] * 1000)))
            | SummarizeSessions(gap)
            | beam.ParDo(_Collect("sessions"))
        )

    _run(build)
    windows = sorted(COLLECTED["sessions"], key=lambda kv: (kv[0], kv[1][0]))
    cut = []
    for user in ("a", "b", "c"):
        mine = [event for key, event in events if key == user]
        for acc in session.cut(mine, gap):
            cut.append((user, timeline.session_item(session.finish(acc, user), acc[1] + gap - 1)))
    assert len(windows) > 30
    assert cut == windows


def _final_profiles(snapshots):
    last = {}
    for snap in snapshots:
        mine = last.get(snap["user_id"])
        if mine is None or snap["version"] >= mine["version"]:
            last[snap["user_id"]] = snap
    return last


def _examples(inputs):
    return sorted(
        (i["model"], i["user_id"], i["at"], i["id"], repr(i["x"]), repr(i["y"]))
        for i in inputs
        if i["kind"] == "example"
    )


def _last_requests(inputs):
    last = {}
    for i in inputs:
        if i["kind"] == "request":
            key = (i["model"], i["user_id"])
            if key not in last or i["at"] > last[key]["at"]:
                last[key] = i
    return last


class _Stamped(beam.DoFn):
    def process(self, element, ts=beam.DoFn.TimestampParam):
        yield ts.micros, element


def test_grouped_release_gives_what_the_timers_give():
    config = load_config(ROOT / "examples" / "config.yaml")
    config = config.model_copy(
        update={"consent": config.consent.model_copy(update={"default": "granted"})}
    )
    records, _ = personas.generate(1_500, 60, 4)
    assert len({r["event_id"] for r in records}) < len(records), "copies to drop"
    params = config.timeline_params()
    lateness = config.timeline.allowed_lateness
    horizon = config.dedupe.horizon
    variants = {
        # name: (deduplicated in the grouping, or in the timeline's state; released at once
        # or by timers)
        "timers": (False, True),
        "fold": (True, False),
    }

    def build(pipeline):
        events = pipeline | beam.Create(_raw(records)) | DecodeEvents()
        for name, (fold, streaming) in variants.items():
            common = dict(
                patterns=config.patterns,
                segments=config.segments,
                allowed_lateness_ms=lateness,
                streaming=streaming,
            )
            if fold:
                grouped = events.events | f"Dedupe{name}" >> DeduplicateEvents(horizon, lateness)
                keyed = grouped | f"Each{name}" >> beam.FlatMap(each_event)
                # The same unique events grouped by the timeline itself.
                regrouped = keyed | "TimelineGrouped" >> UserTimeline(params, **common)
                for output in OUTPUTS:
                    tag = f"{output}:grouped"
                    _ = regrouped[output] | f"Collect{tag}" >> beam.ParDo(_Collect(tag))
                outputs = grouped | f"Timeline{name}" >> UserTimeline(
                    params, grouped=True, **common
                )
            else:
                outputs = (
                    events.events
                    | f"Key{name}" >> beam.Map(by_user).with_output_types(tuple[str, dict])
                    | f"Timeline{name}" >> UserTimeline(params, dedupe_horizon_ms=horizon, **common)
                )
                keyed = outputs.unique
            _ = (
                keyed
                | f"Stamp{name}" >> beam.ParDo(_Stamped())
                | f"Unique{name}" >> beam.ParDo(_Collect(f"unique:{name}"))
            )
            for output in OUTPUTS:
                tag = f"{output}:{name}"
                _ = outputs[output] | f"Collect{tag}" >> beam.ParDo(_Collect(tag))

    _run(build)
    got = {tag: list(values) for tag, values in COLLECTED.items()}
    # The same unique events, at the same event times, however they were deduplicated.
    unique = sorted(got["unique:timers"], key=repr)
    assert len(records) > len(unique) > 1_000
    assert sorted(got["unique:fold"], key=repr) == unique

    for name in ("grouped", "fold"):

        def both(output, name=name):
            return got.get(f"{output}:{name}", []), got.get(f"{output}:timers", [])

        grouped, timers = both("profiles")
        assert len(_final_profiles(grouped)) == 60
        assert _final_profiles(grouped) == _final_profiles(timers)
        # Releases fall differently: the timers give more snapshots on the way, never fewer.
        assert len(timers) >= len(grouped)

        grouped, timers = both("triggers")
        assert grouped, "the example patterns fire on this file"
        assert any(t["pattern"] == "cart_abandonment" for t in grouped), "a deadline fired"
        assert sorted(grouped, key=repr) == sorted(timers, key=repr)

        grouped, timers = both("segment_changes")
        assert grouped
        assert sorted(grouped, key=repr) == sorted(timers, key=repr)

        grouped, timers = both("model_inputs")
        assert _examples(grouped) and _examples(grouped) == _examples(timers)
        assert _last_requests(grouped) == _last_requests(timers)

        for output in ("erasures", "dead_letters"):
            grouped, timers = both(output)
            assert sorted(grouped, key=repr) == sorted(timers, key=repr)
