"""Rule segments as plain Python: validation, hierarchy, reasons, their place in the timeline."""

from __future__ import annotations

import dataclasses
import io
import json

import avro.io
import avro.schema
import fastavro
import pytest

from models import segments as seg
from models import timeline
from pipelines.config import ConfigError, parse_config
from schemas.codecs import SCHEMA_DIR, decode_single, encode_single, load_schema
from tests.models.test_timeline_step import MIN

SPECS = {
    "engaged": seg.SegmentSpec(where={"engagement": {"gte": 0.5}}),
    "engaged_buyers": seg.SegmentSpec(
        parent="engaged", version="3", where={"rfm.frequency": {"gte": 1}}
    ),
    "carts": seg.SegmentSpec(where={"flags.abandoned_cart": True}),
    "price_fans": seg.SegmentSpec(where={"patterns.price_sensitivity.matches": {"gte": 2}}),
}


def profile(**fields) -> dict:
    base = {"user_id": "u1", "engagement": 0.0, "rfm": {"frequency": 0}, "flags": {}}
    return {**base, **fields}


def test_parents_come_first_whatever_the_order_written():
    specs = {"child": seg.SegmentSpec(parent="root", where={"ltv": {"gt": 0}}), **SPECS}
    specs["root"] = seg.SegmentSpec(where={"events": {"gte": 1}})
    names = [s.name for s in seg.compile_segments(specs)]
    assert names.index("root") < names.index("child")
    assert names.index("engaged") < names.index("engaged_buyers")


def test_a_child_holds_only_inside_its_parent_and_changes_carry_the_reason():
    compiled = seg.compile_segments(SPECS)
    members: dict = {}
    changes = seg.evaluate(compiled, profile(engagement=0.7, rfm={"frequency": 2}), members, 10)
    assert members == {"engaged": 10, "engaged_buyers": 10}
    (engaged, buyers) = changes
    assert buyers["change"] == "enter" and buyers["rule_id"] == "engaged_buyers"
    assert buyers["rule_version"] == "3" and buyers["values"] == {"rfm.frequency": "2"}
    assert engaged["values"] == {"engagement": "0.7"}
    # Leaving the parent takes the user out of the child too, though its own rule still holds.
    changes = seg.evaluate(compiled, profile(engagement=0.2, rfm={"frequency": 2}), members, 20)
    assert [(c["segment"], c["change"]) for c in changes] == [
        ("engaged", "exit"),
        ("engaged_buyers", "exit"),
    ]
    assert members == {}
    # Nothing changes, nothing is reported; an unchanged member keeps its joined-at time.
    seg.evaluate(compiled, profile(flags={"abandoned_cart": True}), members, 30)
    assert seg.evaluate(compiled, profile(flags={"abandoned_cart": True}), members, 40) == []
    assert members == {"carts": 30}


def test_changes_fit_the_avro_schema_and_have_deterministic_ids():
    compiled = seg.compile_segments(SPECS)
    changes = seg.evaluate(compiled, profile(patterns={"price_sensitivity": {"matches": 3}}), {}, 5)
    assert [c["segment"] for c in changes] == ["price_fans"]
    fastavro.validate(changes[0], load_schema("segment_change"), raise_errors=True)
    again = seg.evaluate(compiled, profile(patterns={"price_sensitivity": {"matches": 3}}), {}, 5)
    assert again == changes


def test_an_absent_value_is_null_in_json_and_avro_not_the_word_null():
    spec = seg.SegmentSpec(where={"any": [{"price_band": "budget"}, {"events": {"gte": 1}}]})
    compiled = seg.compile_segments({"active": spec})
    (change,) = seg.evaluate(compiled, profile(events=1), {}, 5)
    assert change["values"] == {"price_band": None, "events": "1"}
    assert '"price_band": null' in json.dumps(change["values"])
    # The Avro form carries the union's null, read back as null here and by ``avro``.
    data = encode_single(change, "segment_change")
    assert decode_single(data, "segment_change")["values"] == change["values"]
    reference = avro.schema.parse((SCHEMA_DIR / "segment_change.avsc").read_text())
    read = avro.io.DatumReader(reference).read(avro.io.BinaryDecoder(io.BytesIO(data[10:])))
    assert read["values"] == {"price_band": None, "events": "1"}
    # A field that holds the word "null" stays a word, told apart from an absent one.
    (word,) = seg.evaluate(compiled, profile(events=1, price_band="null"), {}, 5)
    assert word["values"]["price_band"] == "null"


@pytest.mark.parametrize(
    ("segments", "message"),
    [
        ({"vip": {"where": {"lvt": {"gte": 1}}}}, "segments.vip.where.lvt: unknown field 'lvt'"),
        (
            {"vip": {"where": {"ltv": {"gte": "lots"}}}},
            "segments.vip.where.ltv.gte: expected a number",
        ),
        (
            {"vip": {"where": {"ltv": {"above": 1}}}},
            "segments.vip.where.ltv.above: unknown operator",
        ),
        ({"vip": {"where": {"flags": True}}}, "segments.vip.where.flags: flags is a map"),
        (
            {"vip": {"parent": "gold", "where": {"ltv": 1}}},
            "segments.vip.parent: no segment named 'gold'",
        ),
        ({"vip": {"where": {"ltv": 1}, "min_size": -1}}, "segments.vip.min_size"),
        ({"vip": {"where": {"ltv": 1}, "parnt": "x"}}, "segments.vip.parnt: Extra inputs"),
        ({"Vip!": {"where": {"ltv": 1}}}, "segments name 'Vip!' must match"),
        (
            {"a": {"parent": "b", "where": {"ltv": 1}}, "b": {"parent": "a", "where": {"ltv": 1}}},
            "parents form a cycle: a -> b -> a",
        ),
    ],
)
def test_a_bad_segment_fails_at_start_naming_the_segment_and_field(segments, message):
    with pytest.raises(ConfigError) as caught:
        parse_config({"segments": segments})
    assert message in str(caught.value)


def test_the_timeline_evaluates_segments_after_every_item():
    params = dataclasses.replace(
        timeline.TimelineParams(),
        segments=seg.compile_segments({"active": seg.SegmentSpec(where={"events": {"gte": 2}})}),
    )
    state = timeline.new_user_state("u1")
    views = [
        timeline.event_item(
            {"event_id": f"e{n}", "user_id": "u1", "event_type": "page_view", "timestamp": n * MIN}
        )
        for n in range(3)
    ]
    step = timeline.advance(params, state, views, 3 * MIN)
    # Entered at the second event, not at the end of the release.
    assert [(c["segment"], c["event_time"]) for c in step.segment_changes] == [("active", MIN)]
    assert step.snapshot["segments"] == {"active": MIN}
    # An erasure forgets the memberships with everything else.
    erase = timeline.event_item(
        {"event_id": "x", "user_id": "u1", "event_type": "erasure_requested", "timestamp": 9 * MIN}
    )
    timeline.advance(params, state, [erase], 9 * MIN)
    assert state["segments"] == {}


def test_clicks_carry_the_users_segments_only_for_lists_learned_within_them():
    active = seg.compile_segments({"active": seg.SegmentSpec(where={"events": {"gte": 1}})})
    views = [
        timeline.event_item(
            {
                "event_id": f"e{n}",
                "user_id": "u1",
                "event_type": "product_view",
                "timestamp": n * MIN,
                "product_id": f"p{n}",
            }
        )
        for n in range(2)
    ]
    clicks = {}
    for within in (False, True):
        params = timeline.TimelineParams(
            segments=active,
            models=frozenset({timeline.RECOMMENDATIONS}),
            recommend_within_segments=within,
        )
        step = timeline.advance(params, timeline.new_user_state("u1"), views, 3 * MIN)
        clicks[within] = [i["x"] for i in step.model_inputs if i["kind"] == "example"]
    # The segment is entered at the first event, after its click was sent.
    assert [x.get("segments") for x in clicks[True]] == [None, ["active"]]
    assert [x.get("segments") for x in clicks[False]] == [None, None]
    assert [x["item"] for x in clicks[False]] == ["p0", "p1"]
