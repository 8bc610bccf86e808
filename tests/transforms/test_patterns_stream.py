"""Patterns under a TestStream: event-time order, absence timers, lateness, governance."""

from __future__ import annotations

from apache_beam.testing.test_stream import TestStream as EventStream

from tests.transforms.test_timeline import MIN, T0, at, latest, raw, run

ABANDONMENT = {
    "within": "30m",
    "same": "product_id",
    "stages": [
        {"name": "cart", "where": {"event_type": "add_to_cart"}},
        {"name": "purchase", "where": {"event_type": "purchase"}, "follows": "not_followed_by"},
    ],
}
SEARCH_THEN_VIEW = {
    "within": "10m",
    "stages": [
        {"name": "search", "where": {"event_type": "search"}},
        {"name": "view", "where": {"event_type": "product_view"}, "follows": "next"},
    ],
}


def config(lateness: str = "0s", **patterns) -> dict:
    return {
        "timeline": {"allowed_lateness": lateness},
        "patterns": patterns,
        "triggers": {"holdout": 0.0, "cooldown": "0s"},
    }


def cart(event_id: str, minute: float, product: str = "p1", **extra):
    return raw(event_id, minute, kind="add_to_cart", product_id=product, **extra)


def purchase(event_id: str, minute: float, product: str = "p1", **extra):
    return raw(event_id, minute, kind="purchase", product_id=product, **extra)


def fired(found) -> list[tuple]:
    return sorted(
        (t["pattern"], tuple(t["matched_event_ids"]), t["event_time"]) for t in found["triggers"]
    )


def test_out_of_order_events_are_matched_as_if_in_order():
    # The view arrives before the search, but happened right after it.
    stream = (
        EventStream()
        .advance_watermark_to(at(0))
        .add_elements([raw("v", 2), raw("s", 1, kind="search", product_id=None)])
        .advance_watermark_to_infinity()
    )
    found = run(stream, config(search_then_view=SEARCH_THEN_VIEW))
    assert fired(found) == [("search_then_view", ("s", "v"), T0 + 2 * MIN)]


def test_strict_contiguity_holds_in_event_time_not_arrival_order():
    # Arrival: view, search, click; event time: search (1), click (2), view (3): not next.
    stream = (
        EventStream()
        .advance_watermark_to(at(0))
        .add_elements([raw("v", 3), raw("s", 1, kind="search"), raw("c", 2, kind="click")])
        .advance_watermark_to_infinity()
    )
    assert fired(run(stream, config(search_then_view=SEARCH_THEN_VIEW))) == []


def test_absence_fires_from_the_timer_with_no_later_event():
    stream = (
        EventStream()
        .advance_watermark_to(at(0))
        .add_elements([cart("c1", 1)])
        # Nothing else ever comes from anyone; only the watermark moves.
        .advance_watermark_to(at(45))
        .advance_watermark_to_infinity()
    )
    found = run(stream, config(cart_abandonment=ABANDONMENT))
    assert fired(found) == [("cart_abandonment", ("c1",), T0 + 31 * MIN)]
    (trigger,) = found["triggers"]
    assert trigger["keys"] == {"product_id": "p1"}
    assert trigger["holdout"] is False
    final = latest(found["profiles"])
    assert final["patterns"] == {"cart_abandonment": {"matches": 1, "last": T0 + 31 * MIN}}
    assert final["flags"]["pattern:cart_abandonment"] is True
    assert final["version"] == T0 + 31 * MIN


def test_purchase_of_the_product_in_time_cancels_the_abandonment():
    stream = (
        EventStream()
        .advance_watermark_to(at(0))
        .add_elements([cart("c1", 1), cart("c2", 2, product="p2"), purchase("b1", 20)])
        .advance_watermark_to_infinity()
    )
    found = run(stream, config(cart_abandonment=ABANDONMENT))
    # p1 was bought within 30 minutes; p2 was not.
    assert fired(found) == [("cart_abandonment", ("c2",), T0 + 32 * MIN)]


def test_late_purchase_within_allowed_lateness_cancels_the_abandonment():
    stream = (
        EventStream()
        .advance_watermark_to(at(0))
        .add_elements([cart("c1", 1)])
        # Past the deadline (31) but not past deadline + lateness (41); the purchase
        # is 6 minutes behind the watermark, within the 10 allowed.
        .advance_watermark_to(at(34))
        .add_elements([purchase("b1", 28)])
        .advance_watermark_to_infinity()
    )
    found = run(stream, config("10m", cart_abandonment=ABANDONMENT))
    assert fired(found) == []
    assert found["dead_letters"] == []
    assert latest(found["profiles"])["counts"] == {"add_to_cart": 1, "purchase": 1}


def test_purchase_later_than_the_allowed_lateness_is_dead_lettered():
    stream = (
        EventStream()
        .advance_watermark_to(at(0))
        .add_elements([cart("c1", 1)])
        .advance_watermark_to(at(40))
        .add_elements([purchase("b1", 20)])
        .advance_watermark_to_infinity()
    )
    found = run(stream, config("5m", cart_abandonment=ABANDONMENT))
    # The deadline passed before the purchase came: the abandonment stands.
    assert fired(found) == [("cart_abandonment", ("c1",), T0 + 31 * MIN)]
    (letter,) = found["dead_letters"]
    assert letter["reason"] == "late"
    assert letter["event_id"] == "b1"


def test_governance_cooldown_in_the_stream():
    rapid = {
        "within": "3m",
        "stages": [{"name": "view", "where": {"event_type": "product_view"}, "times": 2}],
    }
    views = [raw(f"v{i}", i * 0.5) for i in range(6)]  # views every 30 s for 3 minutes
    stream = (
        EventStream()
        .advance_watermark_to(at(0))
        .add_elements(views[3:])
        .add_elements(views[:3])
        .advance_watermark_to_infinity()
    )
    cfg = config(rapid=rapid)
    cfg["triggers"]["cooldown"] = "1m"
    found = run(stream, cfg)
    # no_skip: every view after the first completes a match; the cooldown lets one a minute through.
    assert fired(found) == [
        ("rapid", ("v0", "v1"), T0 + MIN // 2),
        ("rapid", ("v2", "v3"), T0 + 3 * MIN // 2),
        ("rapid", ("v4", "v5"), T0 + 5 * MIN // 2),
    ]


def test_consent_revoked_mid_stream_stops_the_users_triggers_from_then_on():
    # Carts every 5 minutes for two hours, each abandoned after 30 minutes; u1 revokes
    # consent at minute 62, u2 does not. Events arrive in hourly steps, as in a live run.
    carts = [
        cart(f"{u}-{i}", i * 5, product=f"p{i}", user=u) for u in ("u1", "u2") for i in range(25)
    ]
    revoke = raw("r", 62, kind="consent_revoked", product_id=None)
    stream = EventStream().advance_watermark_to(at(0))
    for hour in range(3):
        batch = [
            e
            for e in carts + [revoke]
            if hour * 60 <= (e[3]["timestamp"] - T0) / MIN < hour * 60 + 60
        ]
        # Just before the next hour: a timer at T fires once the watermark reaches T.
        stream = stream.add_elements(batch).advance_watermark_to(at(hour * 60 + 60) - 0.001)
    cfg = config(cart_abandonment=ABANDONMENT)
    cfg["triggers"]["daily_cap"] = 100
    found = run(stream.advance_watermark_to_infinity(), cfg)
    by_user = {
        u: sorted(t["event_time"] for t in found["triggers"] if t["user_id"] == u)
        for u in ("u1", "u2")
    }
    assert by_user["u2"] == [T0 + (i * 5 + 30) * MIN for i in range(25)]
    # u1: the carts whose 30 minutes ran out before the revocation, nothing after it.
    assert by_user["u1"] == [T0 + (i * 5 + 30) * MIN for i in range(7)]
    assert [e["user_id"] for e in found["erasures"]] == ["u1"]
    assert found["erasures"][0]["requested_at"] == T0 + 62 * MIN
    u1 = [p for p in found["profiles"] if p["user_id"] == "u1"]
    assert u1 and max(p["version"] for p in u1) < T0 + 62 * MIN


def test_an_erasure_request_that_comes_too_late_to_order_still_erases():
    stream = (
        EventStream()
        .advance_watermark_to(at(0))
        .add_elements([raw("a", 1), raw("b", 2)])
        .advance_watermark_to(at(30))
        # Behind the released timeline: too late to order, never too late to erase.
        .add_elements([raw("x", 1.5, kind="erasure_requested", product_id=None)])
        .add_elements([raw("c", 40)])
        .advance_watermark_to_infinity()
    )
    found = run(stream, config())
    assert found["erasures"] == [
        {
            "user_id": "u1",
            "requested_at": T0 + 2 * MIN,  # as of the time the timeline was released to
            "event_id": "x",
            "reason": "erasure_requested",
        }
    ]
    assert found["dead_letters"] == []
    # The view at 40 states no consent: the erased user is not profiled again.
    assert max(p["version"] for p in found["profiles"] if p["user_id"] == "u1") == T0 + 2 * MIN
