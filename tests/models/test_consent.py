"""The consent gate in a user's timeline, as plain Python (models.consent, models.timeline)."""

from __future__ import annotations

import dataclasses

import pytest

from models import consent as cons
from models import timeline
from tests.models.test_timeline_step import MIN, params

YES = {"analytics": True, "personalization": True, "marketing": True}


def item(event_id: str, minute: float, kind: str = "add_to_cart", consent=None, **extra):
    event = {
        "event_id": event_id,
        "user_id": "u1",
        "event_type": kind,
        "timestamp": int(minute * MIN),
        "product_id": "p1",
        "consent": consent,
        **extra,
    }
    return timeline.event_item(event)


def session(start: float, end: float) -> tuple:
    summary = {"session_id": f"u1:{start}", "start": int(start * MIN), "end": int(end * MIN)}
    summary.update(events=2, duration_ms=int((end - start) * MIN), counts={}, revenue=0.0)
    return timeline.session_item(summary, int(end * MIN) + 1)


def gated(default: bool, **governance) -> timeline.TimelineParams:
    return dataclasses.replace(params(**governance), consent=cons.ConsentParams(default=default))


def test_without_consent_nothing_is_profiled_matched_or_triggered():
    state = timeline.new_user_state("u1")
    step = timeline.advance(gated(False), state, [item("a", 0), item("b", 1)], 60 * MIN)
    assert step.snapshot is None and step.triggers == [] and step.deadline is None
    assert step.counts["consent_blocked"] == 2
    assert state["profile"]["events"] == 0


def test_consent_stated_once_is_inherited_by_later_events():
    state = timeline.new_user_state("u1")
    ready = [item("b", 1), item("a", 0, consent=YES)]  # arrival order does not matter
    step = timeline.advance(gated(False, cooldown_ms=0), state, ready, 60 * MIN)
    assert step.snapshot["events"] == 2
    assert [t["matched_event_ids"] for t in step.triggers] == [["a"], ["b"]]


def test_a_revocation_erases_and_stops_everything_after_it():
    state = timeline.new_user_state("u1")
    ready = [item("a", 0), item("r", 10, "consent_revoked"), item("b", 20), item("c", 21)]
    step = timeline.advance(gated(True, cooldown_ms=0), state, ready, 120 * MIN)
    # The cart at 0 was still open at the revocation: its abandonment never fires.
    assert step.triggers == [] and step.snapshot is None
    assert step.erasures == [
        {"user_id": "u1", "requested_at": 10 * MIN, "event_id": "r", "reason": "consent_revoked"}
    ]
    assert state["profile"]["events"] == 0 and step.counts["consent_blocked"] == 3
    assert state["consent"]["purposes"] == dict.fromkeys(cons.PURPOSES, False)


def test_an_erased_user_is_not_profiled_again_on_the_default_only_on_a_new_grant():
    state = timeline.new_user_state("u1")
    timeline.advance(gated(True), state, [item("a", 0), item("x", 1, "erasure_requested")], MIN)
    step = timeline.advance(gated(True), state, [item("b", 2)], 2 * MIN)
    assert step.snapshot is None
    step = timeline.advance(
        gated(True), state, [item("c", 3, consent={"personalization": True}), item("d", 4)], 4 * MIN
    )
    assert step.snapshot["events"] == 2 and step.snapshot["first_seen"] == 3 * MIN
    # Marketing was withdrawn by the erasure and not granted again: no trigger.
    step = timeline.advance(gated(True), state, [], 60 * MIN)
    assert step.triggers == [] and step.counts["triggers_suppressed_consent"] == 2


def test_triggers_already_made_in_the_release_are_dropped_by_an_erasure():
    state = timeline.new_user_state("u1")
    ready = [item("a", 0), item("b", 40), item("x", 41, "erasure_requested")]
    step = timeline.advance(gated(True), state, ready, 50 * MIN)
    assert step.triggers == [] and step.counts["triggers_dropped_erasure"] == 1


def test_marketing_withdrawn_suppresses_triggers_but_keeps_the_profile():
    state = timeline.new_user_state("u1")
    ready = [item("a", 0, consent={"marketing": False}), item("b", 1)]
    step = timeline.advance(gated(True), state, ready, 60 * MIN)
    assert step.erasures == [] and step.snapshot["events"] == 2
    assert step.triggers == [] and step.counts["triggers_suppressed_consent"] == 2
    assert step.snapshot["patterns"]["cart_abandonment"]["matches"] == 2


def test_a_session_counts_only_if_consent_held_through_all_of_it():
    state = timeline.new_user_state("u1")
    ready = [
        item("a", 0, "page_view"),
        item("b", 5, "page_view", consent={"personalization": True}),
    ]
    step = timeline.advance(gated(False), state, ready + [session(0, 5)], 40 * MIN)
    assert step.counts["sessions_consent_blocked"] == 1 and step.snapshot["sessions"] == 0
    step = timeline.advance(gated(False), state, [session(5, 5)], 80 * MIN)
    assert step.snapshot["sessions"] == 1


@pytest.mark.parametrize(
    ("events", "erases"),
    [
        ([("consent_change", {"personalization": False})], [True]),
        ([("consent_change", {"personalization": False})] * 2, [True, False]),
        ([("consent_change", {"marketing": False})], [False]),
        ([("consent_revoked", {"marketing": False})], [False]),
        ([("consent_revoked", None)] * 2, [True, True]),
        ([("erasure_requested", None)] * 2, [True, True]),
        ([("product_view", None)], [False]),
    ],
)
def test_which_events_erase(events, erases):
    state = cons.new_state()
    found = [
        cons.observe(cons.ConsentParams(), state, {"event_type": k, "timestamp": n, "consent": c})
        == cons.ERASE
        for n, (k, c) in enumerate(events)
    ]
    assert found == erases


def test_a_withdrawn_consent_outlives_the_profile_retention():
    p = dataclasses.replace(gated(True), retention_ms=10 * MIN, consent_memory_ms=1000 * MIN)
    state = timeline.new_user_state("u1")
    timeline.advance(p, state, [item("a", 0)], 0)
    assert timeline.expires_at(p, state) == 10 * MIN
    timeline.advance(p, state, [item("r", 5, "consent_revoked")], 5 * MIN)
    assert timeline.expires_at(p, state) == 1005 * MIN


def test_marketing_granted_after_a_deadline_does_not_reach_back_to_it():
    state = timeline.new_user_state("u1")
    ready = [
        item("a", 0, consent={"personalization": True}),  # abandoned at minute 30
        item("b", 40, "page_view", consent={"marketing": True}),
    ]
    step = timeline.advance(gated(False), state, ready, 60 * MIN)
    assert step.triggers == [] and step.counts["triggers_suppressed_consent"] == 1


def test_a_revocation_after_a_deadline_keeps_the_match_that_was_due_before_it():
    state = timeline.new_user_state("u1")
    ready = [item("a", 0), item("r", 40, "consent_revoked")]
    step = timeline.advance(gated(True), state, ready, 60 * MIN)
    assert step.counts["matches.cart_abandonment"] == 1
    # The trigger was made before the revocation, then dropped with everything else.
    assert step.triggers == [] and step.counts["triggers_dropped_erasure"] == 1


def test_a_no_to_marketing_alone_is_remembered_too():
    p = dataclasses.replace(gated(True), retention_ms=10 * MIN, consent_memory_ms=1000 * MIN)
    state = timeline.new_user_state("u1")
    timeline.advance(p, state, [item("a", 0, consent={"marketing": False})], 0)
    assert timeline.expires_at(p, state) == 1000 * MIN


def test_a_late_withdrawal_erases_as_of_the_released_time():
    state = timeline.new_user_state("u1")
    timeline.advance(gated(True), state, [item("a", 0)], 0)
    event = item("r", 5, "consent_change", consent={"personalization": False})[3]
    step = timeline.late_consent(gated(True), state, event, 50 * MIN)
    assert [e["requested_at"] for e in step.erasures] == [50 * MIN]
    assert state["profile"]["events"] == 0 and state["patterns"]["runs"] == {}


def test_a_state_kept_by_the_previous_version_is_upgraded():
    state = timeline.new_user_state("u1")
    timeline.advance(gated(True), state, [item("a", 0)], 0)
    del state["consent"], state["seen"]
    timeline.upgrade(state)
    step = timeline.advance(gated(True), state, [item("b", 1)], MIN)
    assert step.snapshot["events"] == 2
