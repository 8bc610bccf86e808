"""Trigger governance: send once, cooldown, daily cap, holdout, all by event time."""

import pytest
from fastavro.validation import validate

from models import governance as gov
from models.events import DAY_MS, HOUR_MS
from schemas.codecs import load_schema

MINUTE_MS = 60_000
NO_HOLDOUT = {"holdout": 0.0}


def _params(**changes) -> gov.GovernanceParams:
    return gov.GovernanceParams(**{**NO_HOLDOUT, **changes})


def _match(first, at, pattern="cart_abandonment", ids=None, keys=None):
    return {
        "pattern": pattern,
        "pattern_version": "2",
        "matched_event_ids": ids or [first],
        "first_event_id": first,
        "start": at,
        "event_time": at,
        "keys": keys or {},
    }


def _decide_all(params, matches, user="u1", state=None):
    state = gov.new_state() if state is None else state
    return [gov.decide(params, state, user, m) for m in matches], state


def _reasons(decisions):
    return [reason for _, reason in decisions]


# --- the trigger -----------------------------------------------------------------------------


def test_a_match_becomes_a_trigger():
    match = _match("e1", 5_000, ids=["e1", "e7"], keys={"category": "shoes"})
    trigger, reason = gov.decide(_params(), gov.new_state(), "u1", match)
    assert reason is None
    assert trigger == {
        "trigger_id": gov.trigger_id("cart_abandonment", "u1", "e1"),
        "user_id": "u1",
        "pattern": "cart_abandonment",
        "pattern_version": "2",
        "matched_event_ids": ["e1", "e7"],
        "keys": {"category": "shoes"},
        "event_time": 5_000,
        "first_event_time": 5_000,
        "holdout": False,
    }


def test_trigger_copies_its_lists():
    match = _match("e1", 5_000, ids=["e1"], keys={"k": "v"})
    trigger, _ = gov.decide(_params(), gov.new_state(), "u1", match)
    match["matched_event_ids"].append("e2")
    match["keys"]["k2"] = "v2"
    assert trigger["matched_event_ids"] == ["e1"] and trigger["keys"] == {"k": "v"}


@pytest.mark.parametrize("holdout", [0.0, 1.0])
def test_trigger_fits_the_avro_schema(holdout):
    schema = load_schema("trigger")
    params = _params(holdout=holdout)
    trigger, _ = gov.decide(
        params, gov.new_state(), "u1", _match("e1", 1_700_000_000_000, keys={"category": "x"})
    )
    assert trigger["holdout"] is (holdout == 1.0)
    assert validate(trigger, schema, raise_errors=True)
    assert set(trigger) == {field["name"] for field in schema["fields"]}


def test_trigger_id_is_deterministic_and_depends_on_every_part():
    tid = gov.trigger_id("p", "u1", "e1")
    assert tid == gov.trigger_id("p", "u1", "e1")
    assert len(tid) == 32 and int(tid, 16) >= 0
    others = {gov.trigger_id("q", "u1", "e1"), gov.trigger_id("p", "u2", "e1")}
    others.add(gov.trigger_id("p", "u1", "e2"))
    assert tid not in others and len(others) == 3


def test_trigger_id_parts_do_not_run_together():
    assert gov.trigger_id("ab", "c", "e") != gov.trigger_id("a", "bc", "e")


# --- send once -------------------------------------------------------------------------------


def test_a_duplicate_match_is_suppressed():
    params = _params(cooldown_ms=0)
    first = _match("e1", 1_000)
    again = _match("e1", 1_000, ids=["e1", "e9"])  # another branch of the same run
    decisions, state = _decide_all(params, [first, again])
    assert decisions[0][0] is not None
    assert decisions[1] == (None, gov.DUPLICATE)
    assert state["today"] == 1


def test_the_same_first_event_under_another_pattern_or_user_is_not_a_duplicate():
    params = _params(cooldown_ms=0)
    state = gov.new_state()
    assert gov.decide(params, state, "u1", _match("e1", 1_000))[1] is None
    assert gov.decide(params, state, "u1", _match("e1", 1_000, pattern="other"))[1] is None
    assert gov.decide(params, gov.new_state(), "u2", _match("e1", 1_000))[1] is None


def test_prune_forgets_old_ids():
    params = _params(cooldown_ms=0, remember_ms=DAY_MS)
    state = gov.new_state()
    gov.decide(params, state, "u1", _match("e1", 1_000))
    gov.decide(params, state, "u1", _match("e2", 5_000))
    old = gov.trigger_id("cart_abandonment", "u1", "e1")
    recent = gov.trigger_id("cart_abandonment", "u1", "e2")

    gov.prune(params, state, 1_000 + DAY_MS)  # e1 sits exactly on the horizon: kept
    assert set(state["sent"]) == {old, recent}
    gov.prune(params, state, 1_001 + DAY_MS)
    assert set(state["sent"]) == {recent}
    assert gov.decide(params, state, "u1", _match("e2", 5_000)) == (None, gov.DUPLICATE)


def test_a_pruned_match_is_no_longer_recognised():
    params = _params(cooldown_ms=0, remember_ms=DAY_MS)
    state = gov.new_state()
    assert gov.decide(params, state, "u1", _match("e1", 1_000))[1] is None
    assert gov.decide(params, state, "u1", _match("e1", 1_000)) == (None, gov.DUPLICATE)
    gov.prune(params, state, 1_001 + DAY_MS)
    assert state["sent"] == {}
    assert gov.decide(params, state, "u1", _match("e1", 1_000))[1] is None


# --- cooldown --------------------------------------------------------------------------------


def test_cooldown_per_pattern():
    params = _params(cooldown_ms=HOUR_MS)
    matches = [
        _match("e1", 0),
        _match("e2", HOUR_MS - 1),
        _match("e3", 0, pattern="browse_abandonment"),  # another pattern has its own clock
        _match("e4", HOUR_MS),
        _match("e5", HOUR_MS + 30 * MINUTE_MS),
    ]
    decisions, _ = _decide_all(params, matches)
    assert _reasons(decisions) == [None, gov.COOLDOWN, None, None, gov.COOLDOWN]


def test_cooldown_counts_from_the_last_trigger_not_the_last_match():
    params = _params(cooldown_ms=10 * MINUTE_MS)
    times = [0, 6 * MINUTE_MS, 11 * MINUTE_MS]
    decisions, _ = _decide_all(params, [_match(f"e{i}", t) for i, t in enumerate(times)])
    assert _reasons(decisions) == [None, gov.COOLDOWN, None]


def test_cooldown_override_per_pattern():
    params = _params(cooldown_ms=HOUR_MS, cooldowns={"quick": MINUTE_MS})
    matches = [
        _match("q1", 0, pattern="quick"),
        _match("q2", MINUTE_MS - 1, pattern="quick"),
        _match("q3", MINUTE_MS, pattern="quick"),
        _match("s1", 0, pattern="slow"),
        _match("s2", MINUTE_MS, pattern="slow"),
    ]
    decisions, _ = _decide_all(params, matches)
    assert _reasons(decisions) == [None, gov.COOLDOWN, None, None, gov.COOLDOWN]


# --- daily cap -------------------------------------------------------------------------------


def test_daily_cap_resets_on_a_new_utc_day():
    params = _params(cooldown_ms=0, daily_cap=2)
    day = 19_000 * DAY_MS  # midnight UTC
    matches = [
        _match("e1", day + 1),
        _match("e2", day + HOUR_MS),
        _match("e3", day + DAY_MS - 1),  # 23:59:59.999 the same day
        _match("e4", day + DAY_MS),  # midnight: a new day
        _match("e5", day + DAY_MS + 1),
        _match("e6", day + DAY_MS + 2),
    ]
    decisions, state = _decide_all(params, matches)
    assert _reasons(decisions) == [None, None, gov.DAILY_CAP, None, None, gov.DAILY_CAP]
    assert state["day"] == 19_001 and state["today"] == 2


def test_the_cap_counts_triggers_of_every_pattern():
    params = _params(cooldown_ms=0, daily_cap=2)
    matches = [_match(f"e{i}", i, pattern=f"p{i}") for i in range(3)]
    decisions, _ = _decide_all(params, matches)
    assert _reasons(decisions) == [None, None, gov.DAILY_CAP]


def test_rejected_matches_do_not_count_or_start_a_cooldown():
    params = _params(cooldown_ms=HOUR_MS, daily_cap=1)
    day = 10 * DAY_MS
    matches = [
        _match("e1", day - 1),  # sent
        _match("e2", day - 1 + MINUTE_MS),  # cooldown
        _match("e3", day + HOUR_MS),  # sent: new day, past the cooldown
        _match("e4", day + 3 * HOUR_MS),  # cap
        _match("e5", day + DAY_MS),  # sent: the cap-rejected e4 set no cooldown
    ]
    decisions, state = _decide_all(params, matches)
    assert _reasons(decisions) == [None, gov.COOLDOWN, None, gov.DAILY_CAP, None]
    assert len(state["sent"]) == 3


# --- holdout ---------------------------------------------------------------------------------


def test_holdout_rate_is_roughly_right_over_many_users():
    users = [f"user-{i}" for i in range(10_000)]
    held = [gov.in_holdout("salt", user, "cart_abandonment", 0.2) for user in users]
    assert 0.17 <= sum(held) / len(held) <= 0.23
    assert held == [gov.in_holdout("salt", user, "cart_abandonment", 0.2) for user in users]


def test_holdout_groups_are_nested_by_rate_and_differ_by_salt_and_pattern():
    users = [f"user-{i}" for i in range(2_000)]
    small = {u for u in users if gov.in_holdout("salt", u, "p", 0.1)}
    large = {u for u in users if gov.in_holdout("salt", u, "p", 0.3)}
    assert small < large
    assert small != {u for u in users if gov.in_holdout("pepper", u, "p", 0.1)}
    assert small != {u for u in users if gov.in_holdout("salt", u, "q", 0.1)}


def test_holdout_override_per_pattern_and_control_triggers_still_count():
    params = _params(cooldown_ms=0, holdout=0.0, holdouts={"held": 1.0}, daily_cap=2)
    decisions, state = _decide_all(
        params, [_match("e1", 1, pattern="held"), _match("e2", 2), _match("e3", 3)]
    )
    assert [t["holdout"] for t, _ in decisions[:2]] == [True, False]
    assert decisions[2] == (None, gov.DAILY_CAP)


def test_holdout_decision_follows_the_hash():
    params = gov.GovernanceParams(holdout=0.5, salt="s", cooldown_ms=0)
    for i in range(50):
        user = f"u{i}"
        trigger, _ = gov.decide(params, gov.new_state(), user, _match("e1", 0))
        assert trigger["holdout"] is gov.in_holdout("s", user, "cart_abandonment", 0.5)


# --- order -----------------------------------------------------------------------------------


def test_order_is_event_time_then_trigger_id():
    matches = [_match("e3", 2_000), _match("e1", 1_000), _match("e2", 1_000)]
    ordered = sorted(matches, key=lambda m: gov.order(m, "u1"))
    assert ordered[0]["event_time"] == 1_000 and ordered[1]["event_time"] == 1_000
    assert ordered[2]["first_event_id"] == "e3"
    first_ids = [gov.trigger_id("cart_abandonment", "u1", m["first_event_id"]) for m in ordered]
    assert first_ids[0] < first_ids[1]
