"""The profile update: counters, decay, caps, flags and RFM as documented."""

import pytest

from models import profile as prof
from models.events import DAY_MS, HOUR_MS, MINUTE_MS

P = prof.ProfileParams()


def _apply(events, params=P, user="u"):
    state = prof.new_state(user)
    for i, event in enumerate(events):
        event = {"event_id": f"e{i}", **event}
        prof.apply_event(params, state, event)
    return state


def view(ts, product="p", category="c", **kw):
    return {
        "event_type": "product_view",
        "timestamp": ts,
        "product_id": product,
        "category": category,
        **kw,
    }


def test_counters_and_first_last_seen():
    state = _apply([view(5_000), view(1_000), {"event_type": "search", "timestamp": 9_000}])
    snap = prof.snapshot(P, state)
    assert snap["first_seen"] == 5_000  # the first applied, the timeline applies in order
    assert snap["last_seen"] == 9_000
    assert snap["events"] == 3
    assert snap["counts"] == {"product_view": 2, "search": 1}
    assert snap["version"] == 9_000


def test_affinity_decays_with_the_configured_half_life():
    params = prof.ProfileParams(affinity_half_life_ms=DAY_MS)
    state = _apply([view(0, category="old"), view(DAY_MS, category="new")], params)
    snap = prof.snapshot(params, state)
    assert snap["category_affinity"]["new"] == pytest.approx(1.0)
    assert snap["category_affinity"]["old"] == pytest.approx(0.5)
    assert snap["top_category"] == "new"


def test_repeated_category_accumulates_with_decay():
    params = prof.ProfileParams(affinity_half_life_ms=DAY_MS)
    state = _apply([view(0, category="a"), view(DAY_MS, category="a")], params)
    assert prof.snapshot(params, state)["category_affinity"]["a"] == pytest.approx(1.5)


def test_affinity_is_capped_keeping_the_strongest():
    params = prof.ProfileParams(affinity_top=3)
    events = [view(i * 1000, category=f"c{i % 10}") for i in range(100)]
    events += [view(200_000 + i, category="hot") for i in range(20)]
    state = _apply(events, params)
    assert len(state["category_affinity"]) <= 2 * params.affinity_top
    snap = prof.snapshot(params, state)
    assert len(snap["category_affinity"]) == 3
    assert snap["top_category"] == "hot"


def test_recent_items_are_unique_most_recent_first_and_capped():
    params = prof.ProfileParams(recent_items=3)
    state = _apply([view(i, product=p) for i, p in enumerate("abcab")] + [view(9, "d")], params)
    assert prof.snapshot(params, state)["recent_items"] == ["d", "b", "a"]


def test_cart_abandonment_flag_needs_time_without_purchase():
    cart = {"event_type": "add_to_cart", "timestamp": 0, "product_id": "p"}
    state = _apply([cart, view(10 * MINUTE_MS)])
    assert prof.snapshot(P, state)["flags"]["abandoned_cart"] is False
    state = _apply([cart, view(31 * MINUTE_MS)])
    assert prof.snapshot(P, state)["flags"]["abandoned_cart"] is True
    bought = {"event_type": "purchase", "timestamp": 5 * MINUTE_MS, "product_id": "p"}
    state = _apply([cart, bought, view(31 * MINUTE_MS)])
    assert prof.snapshot(P, state)["flags"]["abandoned_cart"] is False
    removed = {"event_type": "remove_from_cart", "timestamp": MINUTE_MS, "product_id": "p"}
    state = _apply([cart, removed, view(31 * MINUTE_MS)])
    assert prof.snapshot(P, state)["flags"]["abandoned_cart"] is False
    assert prof.snapshot(P, state)["cart_items"] == []


def test_rfm_and_lifetime_value():
    buys = [
        {"event_type": "purchase", "timestamp": 0, "product_id": "a", "price": 30.0, "quantity": 2},
        {"event_type": "purchase", "timestamp": DAY_MS, "product_id": "b", "price": 40.0},
    ]
    state = _apply([*buys, view(3 * DAY_MS)])
    snap = prof.snapshot(P, state)
    assert snap["ltv"] == 100.0
    assert snap["rfm"]["frequency"] == 2
    assert snap["rfm"]["monetary"] == 50.0
    assert snap["rfm"]["recency_days"] == 2.0
    # recency 2 days passes the 90, 30 and 7 day bounds; frequency 2 passes one; 50 passes two.
    assert (snap["rfm"]["r"], snap["rfm"]["f"], snap["rfm"]["m"]) == (4, 2, 3)


def test_price_band_from_mean_price():
    assert prof.snapshot(P, _apply([view(0, price=10.0)]))["price_band"] == "budget"
    assert prof.snapshot(P, _apply([view(0, price=120.0), view(1, price=80.0)]))["price_band"] == (
        "premium"
    )
    assert prof.snapshot(P, _apply([view(0)]))["price_band"] is None


def test_active_hours_use_the_event_timezone():
    # 23:30 UTC is 08:30 in Tokyo.
    ts = 23 * HOUR_MS + 30 * MINUTE_MS
    snap = prof.snapshot(P, _apply([view(ts, timezone="Asia/Tokyo")]))
    assert snap["active_hours"] == [8]
    snap = prof.snapshot(P, _apply([view(ts, timezone="No/Such_Zone")]))
    assert snap["active_hours"] == [23]


def test_engagement_grows_with_activity_and_decays():
    busy = prof.snapshot(P, _apply([view(i * 1000, dwell_ms=90_000) for i in range(30)]))
    idle = prof.snapshot(P, _apply([view(0)]))
    assert 0 <= idle["engagement"] < busy["engagement"] < 1
    assert busy["flags"]["high_engagement"] is True
    assert idle["flags"]["high_engagement"] is False
    later = _apply([view(i * 1000, dwell_ms=90_000) for i in range(30)])
    prof.apply_session(P, later, {"session_id": "u:0"}, 30 * DAY_MS)
    assert prof.snapshot(P, later)["engagement"] < busy["engagement"] / 100


def test_recently_viewed_and_returning_flags():
    state = _apply([view(0)])
    assert prof.snapshot(P, state)["flags"]["recently_viewed"] is True
    prof.apply_session(P, state, {"session_id": "u:0"}, 2 * DAY_MS)
    flags = prof.snapshot(P, state)["flags"]
    assert flags["recently_viewed"] is False and flags["returning"] is False
    prof.apply_session(P, state, {"session_id": "u:1"}, 3 * DAY_MS)
    assert prof.snapshot(P, state)["flags"]["returning"] is True


def test_snapshot_is_json_ready_and_does_not_share_state():
    import json

    state = _apply([view(0, device="mobile", brand="b")])
    snap = prof.snapshot(P, state)
    json.dumps(snap)
    snap["recent_items"].append("x")
    assert prof.snapshot(P, state)["recent_items"] == ["p"]
    assert snap["preferred_device"] == "mobile" and snap["top_brand"] == "b"
