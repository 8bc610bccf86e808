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


def _spans(accs):
    return [(acc[0], acc[1], sum(acc[2].values())) for acc in accs]


def test_extend_release_by_release_cuts_what_cut_cuts_at_once():
    gap = 1_000
    rng = random.Random(11)
    for _ in range(200):
        times = sorted(rng.randrange(0, 8_000) for _ in range(rng.randrange(1, 12)))
        events = [_event(i, ts) for i, ts in enumerate(times)]
        expected = _spans(session.cut(events, gap))
        closed, acc, start = [], None, 0
        while start < len(events):
            stop = rng.randrange(start + 1, len(events) + 1)
            chunk = events[start:stop]
            # A release reaches some time between its last event and the next one.
            upper = events[stop]["timestamp"] - 1 if stop < len(events) else 20_000
            now = rng.randint(chunk[-1]["timestamp"], max(chunk[-1]["timestamp"], upper))
            done, acc = session.extend(acc, chunk, gap, now)
            closed += done
            start = stop
        closed += session.extend(acc, [], gap, 10**9)[0]
        assert _spans(closed) == expected, (times, expected)


def test_extend_keeps_a_session_open_until_its_last_instant():
    first = [_event(1, 0), _event(2, 500)]
    closed, acc = session.extend(None, first, 1_000, now=1_498)
    assert closed == [] and (acc[0], acc[1]) == (0, 500)
    closed, acc = session.extend(acc, [], 1_000, now=1_499)
    assert _spans(closed) == [(0, 500, 2)] and acc is None
