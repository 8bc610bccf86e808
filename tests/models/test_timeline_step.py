"""One release of a user's timeline as plain Python: profile, patterns, governance, outcomes."""

from __future__ import annotations

from models import governance as gov
from models import timeline
from models.patterns import PatternSpec, compile_pattern

MIN = 60_000
ABANDONMENT = compile_pattern(
    "cart_abandonment",
    PatternSpec.model_validate(
        {
            "within": "30m",
            "same": "product_id",
            "stages": [
                {"name": "cart", "where": {"event_type": "add_to_cart"}},
                {
                    "name": "purchase",
                    "where": {"event_type": "purchase"},
                    "follows": "not_followed_by",
                },
            ],
        }
    ),
)


def params(**governance) -> timeline.TimelineParams:
    return timeline.TimelineParams(
        patterns=(ABANDONMENT,),
        governance=gov.GovernanceParams(**{"holdout": 0.0, **governance}),
        attribution_ms=60 * MIN,
    )


def item(event_id: str, minute: float, kind: str, product: str = "p1") -> tuple:
    event = {
        "event_id": event_id,
        "user_id": "u1",
        "event_type": kind,
        "timestamp": int(minute * MIN),
        "product_id": product,
    }
    return timeline.event_item(event)


def test_a_purchase_after_the_deadline_converts_the_abandonment():
    state = timeline.new_user_state("u1")
    step = timeline.advance(
        params(), state, [item("b", 45, "purchase"), item("c", 0, "add_to_cart")], 50 * MIN
    )
    assert [t["event_time"] for t in step.triggers] == [30 * MIN]
    assert step.counts["matches.cart_abandonment"] == 1
    assert step.counts["converted.cart_abandonment"] == 1
    assert step.counts["converted_treatment.cart_abandonment"] == 1
    assert step.snapshot["counts"] == {"add_to_cart": 1, "purchase": 1}
    assert step.deadline is None


def test_a_purchase_of_another_product_or_too_late_converts_nothing():
    state = timeline.new_user_state("u1")
    ready = [
        item("c", 0, "add_to_cart"),
        item("x", 40, "purchase", product="p2"),
        item("y", 95, "purchase"),  # past the deadline (30) + attribution (60)
    ]
    step = timeline.advance(params(), state, ready, 100 * MIN)
    assert step.counts["matches.cart_abandonment"] == 1
    assert "converted.cart_abandonment" not in step.counts


def test_an_open_deadline_is_reported_and_fires_in_a_later_release():
    state = timeline.new_user_state("u1")
    first = timeline.advance(params(), state, [item("c", 0, "add_to_cart")], 10 * MIN)
    assert first.triggers == [] and first.deadline == 30 * MIN
    second = timeline.advance(params(), state, [], 30 * MIN)
    assert [t["matched_event_ids"] for t in second.triggers] == [["c"]]
    # The snapshot moves to the match, though no event came.
    assert second.snapshot["version"] == 30 * MIN
    assert second.snapshot["flags"]["pattern:cart_abandonment"] is True


def test_held_out_and_suppressed_matches_are_counted_apart():
    state = timeline.new_user_state("u1")
    ready = [item("c1", 0, "add_to_cart"), item("c2", 1, "add_to_cart", product="p2")]
    step = timeline.advance(params(holdout=1.0), state, ready, 120 * MIN)
    # The second abandonment falls within the first one's cooldown (1h).
    assert step.counts["triggers"] == 1
    assert step.counts["triggers_holdout"] == 1
    assert step.counts["triggers_holdout.cart_abandonment"] == 1
    assert step.counts["triggers_suppressed_cooldown"] == 1
    assert [t["holdout"] for t in step.triggers] == [True]


def test_matches_of_several_patterns_are_governed_in_event_time_order():
    def absence(name: str, first: str, within: str):
        spec = {
            "within": within,
            "stages": [
                {"name": "a", "where": {"event_type": first}},
                {"name": "b", "where": {"event_type": "purchase"}, "follows": "not_followed_by"},
            ],
        }
        return compile_pattern(name, PatternSpec.model_validate(spec))

    # Declared so that pattern order and event-time order disagree.
    patterns = (absence("a_cart", "add_to_cart", "30m"), absence("b_search", "search", "2m"))
    day = 24 * 60 * MIN
    ready = [
        item("c", (day - 20 * MIN) / MIN, "add_to_cart"),  # deadline: 00:10 of day 2
        item("s", (day - 3 * MIN) / MIN, "search"),  # deadline: 23:59 of day 1
        item("v", (day + 20 * MIN) / MIN, "page_view"),
    ]
    tparams = timeline.TimelineParams(
        patterns=patterns, governance=gov.GovernanceParams(holdout=0.0, daily_cap=1)
    )
    step = timeline.advance(tparams, timeline.new_user_state("u1"), ready, day + 30 * MIN)
    assert [(t["pattern"], t["event_time"]) for t in step.triggers] == [
        ("b_search", day - MIN),
        ("a_cart", day + 10 * MIN),
    ]
    assert step.counts["triggers_suppressed_daily_cap"] == 0


def test_a_session_whose_events_never_reached_the_profile_changes_nothing():
    # Its events came too late for the timeline (dead letters), its summary in time.
    summary = {"session_id": "u1:0", "start": 0, "end": 5 * MIN, "events": 2}
    summary.update(duration_ms=5 * MIN, counts={"product_view": 2}, revenue=0.0)
    session = timeline.session_item(summary, 35 * MIN)
    with_models = timeline.TimelineParams(models=frozenset(timeline.MODELS))
    for p in (params(), with_models):
        state = timeline.new_user_state("u1")
        step = timeline.advance(p, state, [session], 40 * MIN)
        assert step.counts["sessions_without_events"] == 1
        assert step.snapshot is None and step.model_inputs == []
        assert state["profile"]["now"] is None
        # The user's first event then starts the profile as usual.
        step = timeline.advance(p, state, [item("a", 50, "product_view")], 60 * MIN)
        assert step.snapshot["counts"] == {"product_view": 1}


def test_an_event_after_its_sessions_summary_opens_a_session_of_its_own():
    # A runner that cuts a session window in two (Prism 2.77) can close the first part,
    # events 0 and 2 min, after an event of the second part (20 min) came: a later event
    # of that part (40 min) then finds no open session. It opens one, not a crash.
    with_models = timeline.TimelineParams(models=frozenset(timeline.MODELS))
    state = timeline.new_user_state("u1")
    summary = {"session_id": "u1:0", "start": 0, "end": 2 * MIN, "events": 2}
    summary.update(duration_ms=2 * MIN, counts={"product_view": 2}, revenue=0.0)
    ready = [
        item("a", 0, "product_view"),
        item("b", 2, "product_view"),
        item("c", 20, "product_view"),
        timeline.session_item(summary, 32 * MIN),
        item("d", 40, "product_view"),
    ]
    step = timeline.advance(with_models, state, ready, 41 * MIN)
    assert step.snapshot["counts"] == {"product_view": 4}
    assert list(state["model"]["sessions"]) == [40 * MIN]


def test_intent_probes_score_a_session_at_its_kth_events_until_a_purchase():
    probed = timeline.TimelineParams(
        models=frozenset({timeline.PURCHASE_INTENT}), intent_probes=timeline.INTENT_PROBES
    )
    state = timeline.new_user_state("u1")
    kinds = ["product_view", "product_view", "add_to_cart", "product_view", "purchase"]
    # A second session: one view, then a purchase as its 3rd event, then a 5th event.
    kinds += ["product_view", "product_view", "purchase", "product_view", "product_view"]
    ready = [item(f"e{n}", n if n < 5 else 100 + n, kind) for n, kind in enumerate(kinds)]
    step = timeline.advance(probed, state, ready, 200 * MIN)
    probes = [i for i in step.model_inputs if i["kind"] == "probe"]
    assert [p["id"].rsplit(":", 1)[1] for p in probes] == ["1", "3", "1"]
    assert [p["at"] for p in probes] == [0, 2 * MIN, 105 * MIN]
    first = probes[0]["id"].rsplit(":", 1)[0]
    assert first == "u1:0" and probes[2]["id"] == f"u1:{105 * MIN}:1"
    # Each probe carries the session's features as of its event.
    assert probes[1]["x"]["s_carts"] == 1.0 and probes[0]["x"]["s_carts"] == 0.0
    # Without probes asked for, none.
    plain = timeline.advance(
        timeline.TimelineParams(models=frozenset({timeline.PURCHASE_INTENT})),
        timeline.new_user_state("u1"),
        ready,
        200 * MIN,
    )
    assert not [i for i in plain.model_inputs if i["kind"] == "probe"]


def test_purchase_intent_learns_a_session_as_of_its_prefixes_labelled_at_close():
    learned = timeline.TimelineParams(
        models=frozenset({timeline.PURCHASE_INTENT}), intent_prefixes=(1, 2, 3, 8)
    )
    state = timeline.new_user_state("u1")
    # Four events, a purchase (nothing of the session is learned from it on), one more.
    kinds = ["product_view", "add_to_cart", "product_view", "product_view", "purchase", "search"]
    ready = [item(f"e{n}", n, kind) for n, kind in enumerate(kinds)]
    timeline.advance(learned, state, ready, 10 * MIN)
    summary = {"session_id": "u1:0", "start": 0, "end": 5 * MIN, "events": 6}
    summary.update(duration_ms=5 * MIN, counts={"product_view": 3}, revenue=1.0)
    step = timeline.advance(learned, state, [timeline.session_item(summary, 40 * MIN)], 40 * MIN)
    intent = [i for i in step.model_inputs if i["kind"] != "request"]
    # The 1st, 2nd and 3rd events' prefixes (the 8th never came), then the whole session
    # (four events): all labelled with the purchase, at the session's close.
    assert [(i["kind"], i["id"]) for i in intent] == [
        ("prefix", "u1:0#1"),
        ("prefix", "u1:0#2"),
        ("prefix", "u1:0#3"),
        ("example", "u1:0"),
    ]
    assert all(i["y"] is True and i["at"] == 40 * MIN for i in intent)
    assert [i["x"]["s_events"] for i in intent] == [1.0, 2.0, 3.0, 4.0]
    assert [i["x"]["s_carts"] for i in intent] == [0.0, 1.0, 1.0, 1.0]
    # A prefix as long as the whole session is the whole session's example only.
    state = timeline.new_user_state("u1")
    timeline.advance(learned, state, ready[:3], 10 * MIN)
    summary = {"session_id": "u1:0", "start": 0, "end": 2 * MIN, "events": 3}
    summary.update(duration_ms=2 * MIN, counts={"product_view": 2}, revenue=0.0)
    step = timeline.advance(learned, state, [timeline.session_item(summary, 40 * MIN)], 40 * MIN)
    ids = [i["id"] for i in step.model_inputs if i["kind"] != "request"]
    assert ids == ["u1:0#1", "u1:0#2", "u1:0"]
