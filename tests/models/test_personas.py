"""The persona generator: deterministic, schema-true, and recognisable per persona."""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter, defaultdict

import pytest
from fastavro.validation import validate

from models import events as ev
from models import personas
from models.validation import validate_event
from runners import generate_cmd
from schemas.codecs import load_schema, read_container, schema_json

EVENTS, USERS, SEED = 3000, 60, 11


@pytest.fixture(scope="module")
def generated():
    return personas.generate(EVENTS, USERS, SEED)


@pytest.fixture(scope="module")
def unique_by_user(generated):
    """Each user's events without retries, in event-time order."""
    records, _ = generated
    seen, by_user = set(), defaultdict(list)
    for record in records:
        if record["event_id"] not in seen:
            seen.add(record["event_id"])
            by_user[record["user_id"]].append(record)
    for events in by_user.values():
        events.sort(key=lambda e: (e["timestamp"], e["event_id"]))
    return by_user


def _users_of(truth, persona):
    users = [user for user, p in truth.items() if p == persona]
    assert users, f"no {persona} users"
    return users


def _kinds(events):
    return Counter(e["event_type"] for e in events)


def test_same_seed_gives_identical_output():
    first = personas.generate(500, 20, 3)
    second = personas.generate(500, 20, 3)
    assert first == second
    assert json.dumps(first, sort_keys=False) == json.dumps(second, sort_keys=False)


def test_different_seed_differs():
    assert personas.generate(500, 20, 3)[0] != personas.generate(500, 20, 4)[0]


def test_global_random_untouched():
    random.seed(99)
    before = random.getstate()
    personas.generate(300, 10, 5)
    assert random.getstate() == before


@pytest.mark.parametrize("events,users", [(1, 1), (7, 7), (100, 3), (999, 50), (EVENTS, USERS)])
def test_exact_event_count_and_every_user_present(events, users):
    records, truth = personas.generate(events, users, 1)
    assert len(records) == events
    assert len(truth) == users
    assert {r["user_id"] for r in records} == set(truth)


def test_ground_truth_balances_personas(generated):
    _, truth = generated
    counts = personas.persona_counts(truth)
    assert set(counts) == set(personas.PERSONAS)
    assert max(counts.values()) - min(counts.values()) <= 1
    assert list(truth) == sorted(truth)


def test_fields_follow_the_schema():
    schema_fields = tuple(field["name"] for field in schema_json("event")["fields"])
    assert schema_fields == personas.EVENT_FIELDS


def test_every_record_validates(generated):
    records, _ = generated
    schema = load_schema("event")
    for record in records:
        assert tuple(record) == personas.EVENT_FIELDS
        assert validate(record, schema, raise_errors=True)
        assert type(record["timestamp"]) is int
        assert record["event_type"] in ev.KNOWN_EVENT_TYPES
        assert record["consent"]["analytics"] and record["consent"]["personalization"]
        assert set(record["consent"]) == {"analytics", "personalization", "marketing"}
        assert record["device"] and record["os"] and record["country"] and record["timezone"]
        clean, reason = validate_event(record)
        assert reason is None, (reason, record)


def test_users_skew_by_country_and_by_device_with_their_persona():
    people = personas._make_users(random.Random(SEED), 4_000, SEED)
    countries = Counter(user.country for user in people)
    # One home market with more than a third of the users, and a tail of small ones.
    assert countries.most_common(1)[0][0] == "DE" and countries["DE"] > 0.33 * 4_000
    assert countries["AU"] < 0.04 * 4_000 and len(countries) == 10
    # Window shoppers are mostly on phones, high-intent buyers mostly at a desk.
    by_persona = defaultdict(Counter)
    for user in people:
        by_persona[user.persona][user.device] += 1
    shoppers, buyers = by_persona[personas.WINDOW_SHOPPER], by_persona[personas.HIGH_INTENT_BUYER]
    assert shoppers["mobile"] > 2 * shoppers["desktop"]
    assert buyers["desktop"] > buyers["mobile"]


def test_ids_are_deterministic_and_unique_per_event(generated):
    records, _ = generated
    ids = {r["event_id"] for r in records}
    assert all(i.startswith(f"gen-{SEED}-") for i in ids)
    assert len(ids) == EVENTS - EVENTS // 100


def test_retries_repeat_id_and_content(generated):
    records, _ = generated
    by_id = defaultdict(list)
    for record in records:
        by_id[record["event_id"]].append(record)
    retried = {i: copies for i, copies in by_id.items() if len(copies) > 1}
    assert len(retried) == EVENTS // 100
    for copies in retried.values():
        assert len(copies) == 2 and copies[0] == copies[1]
        assert copies[0] is not copies[1] and copies[0]["consent"] is not copies[1]["consent"]


def test_no_retries_when_share_is_zero():
    records, _ = personas.generate(500, 10, 2, duplicate_share=0)
    assert len({r["event_id"] for r in records}) == 500


def test_roughly_time_ordered_with_small_jitter(generated):
    records, _ = generated
    latest, behind = 0, []
    for record in records:
        behind.append(latest - record["timestamp"])
        latest = max(latest, record["timestamp"])
    assert any(b > 0 for b in behind), "no event arrives out of order"
    assert max(behind) <= personas.MAX_DELAY_MS + personas.MAX_RETRY_DELAY_MS


def test_sessions_are_bursts_separated_by_gaps(unique_by_user):
    gap = personas.SESSION_GAP_MS
    for events in unique_by_user.values():
        for before, after in zip(events, events[1:]):
            pause = after["timestamp"] - before["timestamp"]
            if before["session_id"] == after["session_id"]:
                assert 0 < pause < gap
            else:
                assert pause > gap


def test_cart_abandoners_add_to_cart_and_never_buy(generated, unique_by_user):
    _, truth = generated
    for user in _users_of(truth, personas.CART_ABANDONER):
        kinds = _kinds(unique_by_user[user])
        assert kinds[ev.ADD_TO_CART] >= 1 and kinds[ev.PURCHASE] == 0


def test_high_intent_buyers_buy_after_long_views_in_one_category(generated, unique_by_user):
    _, truth = generated
    for user in _users_of(truth, personas.HIGH_INTENT_BUYER):
        events = unique_by_user[user]
        assert _kinds(events)[ev.PURCHASE] >= 1
        views = [e for e in events if e["event_type"] == ev.PRODUCT_VIEW]
        assert views and min(v["dwell_ms"] for v in views) >= 45_000
        assert len({v["category"] for v in views}) == 1


def test_bargain_hunters_search_and_view_mostly_discounts(generated, unique_by_user):
    _, truth = generated
    views, discounted = 0, 0
    for user in _users_of(truth, personas.BARGAIN_HUNTER):
        events = unique_by_user[user]
        assert _kinds(events)[ev.SEARCH] >= 1
        for e in events:
            if e["event_type"] == ev.PRODUCT_VIEW:
                views += 1
                discounted += e["list_price"] is not None and e["list_price"] > e["price"]
    assert views and discounted / views >= 0.8
    catalogue_share = sum(p.discounted for p in personas.CATALOGUE) / len(personas.CATALOGUE)
    assert catalogue_share <= 0.6


def test_window_shoppers_look_briefly_and_never_cart(generated, unique_by_user):
    _, truth = generated
    for user in _users_of(truth, personas.WINDOW_SHOPPER):
        events = unique_by_user[user]
        kinds = _kinds(events)
        assert kinds[ev.ADD_TO_CART] == kinds[ev.PURCHASE] == 0
        assert kinds[ev.PRODUCT_VIEW] >= len(events) // 3
        assert all(e["dwell_ms"] <= 15_000 for e in events if e["dwell_ms"] is not None)


def test_returning_loyal_buy_their_brand_across_weeks(generated, unique_by_user):
    _, truth = generated
    spans = []
    for user in _users_of(truth, personas.RETURNING_LOYAL):
        events = unique_by_user[user]
        purchases = [e for e in events if e["event_type"] == ev.PURCHASE]
        assert purchases and len({p["brand"] for p in purchases}) == 1
        for before, after in zip(events, events[1:]):
            if before["session_id"] != after["session_id"]:
                assert after["timestamp"] - before["timestamp"] >= 4 * ev.DAY_MS
        spans.append(events[-1]["timestamp"] - events[0]["timestamp"])
    assert sorted(spans)[len(spans) // 2] >= 14 * ev.DAY_MS


def test_frustrated_searchers_never_open_a_product(generated, unique_by_user):
    _, truth = generated
    for user in _users_of(truth, personas.SEARCHER_FRUSTRATED):
        kinds = _kinds(unique_by_user[user])
        assert kinds[ev.SEARCH] >= 1 and kinds[ev.PRODUCT_VIEW] == 0


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"events": 0, "users": 1}, "events"),
        ({"events": "10", "users": 1}, "events"),
        ({"events": 10, "users": 0}, "users"),
        ({"events": 3, "users": 5}, "users"),
        ({"events": 10, "users": 2, "seed": 1.5}, "seed"),
        ({"events": 10, "users": 2, "start_ms": 1_704_067_200}, "start_ms"),
        ({"events": 10, "users": 2, "duplicate_share": 0.9}, "duplicate_share"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} "):
        personas.generate(**{"seed": 1, **kwargs})


def _run_cli(argv):
    top = argparse.ArgumentParser(prog="microtarget")
    generate_cmd.register(top.add_subparsers(dest="command", required=True))
    args = top.parse_args(argv)
    return args.func(args)


def test_generate_command_writes_events_and_ground_truth(tmp_path, capsys):
    out = tmp_path / "demo" / "events.avro"
    argv = ["generate", "--events", "400", "--users", "12", "--seed", "5", "--out", str(out)]
    assert _run_cli(argv) == 0
    records, truth = personas.generate(400, 12, 5)
    assert list(read_container(out)) == records
    document = json.loads((tmp_path / "demo" / "events.personas.json").read_text())
    assert document == {
        "seed": 5,
        "events": 400,
        "users": 12,
        "duplicates": 4,
        "personas": truth,
        "counts": {persona: 2 for persona in personas.PERSONAS},
    }
    printed = capsys.readouterr().out
    assert str(out) in printed and "events.personas.json" in printed
    assert sorted(p.name for p in out.parent.iterdir()) == ["events.avro", "events.personas.json"]


def test_generate_command_rejects_bad_arguments(tmp_path, capsys):
    out = tmp_path / "events.avro"
    argv = ["generate", "--events", "5", "--users", "9", "--out", str(out)]
    assert _run_cli(argv) == 2
    assert capsys.readouterr().err.startswith("error: users must be <= events")
    assert not out.exists()
