"""The session summary core: order-independent, mergeable, complete."""

import itertools
import random

from models import session


def _event(i, ts, kind="product_view", **fields):
    return {"event_id": f"e{i}", "event_type": kind, "timestamp": ts, **fields}


EVENTS = [
    _event(1, 1_000, page="/home", device="mobile", scroll_depth=0.2),
    _event(2, 5_000, product_id="p1", category="c1", page="/p1", dwell_ms=4_000),
    _event(3, 9_000, "add_to_cart", product_id="p1", category="c1", device="mobile"),
    _event(4, 9_000, product_id="p2", category="c2", page="/p2", device="desktop"),
    _event(5, 20_000, "purchase", product_id="p1", price=12.5, quantity=2, page="/thanks"),
    _event(6, 21_000, "scroll", scroll_depth=0.9),
]


def _summary(events):
    acc = session.empty()
    for event in events:
        session.add(acc, event)
    return session.finish(acc, "u")


def test_summary_fields():
    s = _summary(EVENTS)
    assert s["start"] == 1_000 and s["end"] == 21_000 and s["duration_ms"] == 20_000
    assert s["events"] == 6
    assert s["counts"] == {"add_to_cart": 1, "product_view": 3, "purchase": 1, "scroll": 1}
    assert s["distinct_products"] == 2 and s["distinct_categories"] == 2
    assert s["carts"] == 1 and s["purchases"] == 1 and s["revenue"] == 25.0
    assert s["max_scroll_depth"] == 0.9 and s["dwell_ms"] == 4_000
    assert s["device"] == "mobile"
    assert s["entry_page"] == "/home" and s["exit_page"] == "/thanks"
    assert s["bounced"] is False
    assert s["session_id"] == "u:1000"


def test_single_event_session_bounces():
    assert _summary(EVENTS[:1])["bounced"] is True


def test_any_order_and_any_merge_grouping_give_the_same_summary():
    expected = _summary(EVENTS)
    rng = random.Random(3)
    for _ in range(20):
        shuffled = EVENTS[:]
        rng.shuffle(shuffled)
        cut = rng.randrange(1, len(shuffled))
        parts = []
        for chunk in (shuffled[:cut], shuffled[cut:]):
            acc = session.empty()
            for event in chunk:
                session.add(acc, event)
            parts.append(acc)
        merged = session.merge([session.empty(), *parts])
        assert session.finish(merged, "u") == expected


def test_entry_page_ties_are_broken_by_event_id():
    a = _event("a", 1_000, page="/a")
    b = _event("b", 1_000, page="/b")
    for order in itertools.permutations([a, b]):
        assert _summary(order)["entry_page"] == "/a"
        assert _summary(order)["exit_page"] == "/b"
