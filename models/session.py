"""Session summaries: the accumulator behind ``SummarizeSessions``, and the cutting rule.

One accumulator per (user, session window). ``add`` folds an event in,
``merge`` combines partial accumulators (Beam merges session windows and
lifts combiners, so merging must give the same result in any grouping), and
``finish`` turns it into the summary dict that the profile and the sinks see.
``extend`` cuts events into sessions as Beam's session windows do, one
release at a time (the streaming timeline), and ``cut`` all at once (a batch
user's events).

Every choice that could depend on arrival order (entry and exit page, the
device) is decided by (timestamp, event_id), so the summary is the same
whatever order Beam hands events over in.
"""

from __future__ import annotations

from models import events as ev

_INF = float("inf")


def empty() -> list:
    """A fresh accumulator (a list: cheap to pickle through a shuffle)."""
    # start, end, counts, products, categories, revenue, max_scroll, dwell,
    # devices, entry (ts, id, page), exit (ts, id, page)
    return [None, None, {}, set(), set(), 0.0, None, 0, {}, None, None]


def add(acc: list, event: dict) -> list:
    """Fold one event into the accumulator (mutates and returns it)."""
    ts = event["timestamp"]
    if acc[0] is None or ts < acc[0]:
        acc[0] = ts
    if acc[1] is None or ts > acc[1]:
        acc[1] = ts
    kind = event["event_type"]
    counts = acc[2]
    counts[kind] = counts.get(kind, 0) + 1
    product = event.get("product_id")
    if product is not None:
        acc[3].add(product)
    category = event.get("category")
    if category is not None:
        acc[4].add(category)
    if kind == ev.PURCHASE:
        price = event.get("price")
        if price is not None:
            acc[5] += price * (event.get("quantity") or 1)
    scroll = event.get("scroll_depth")
    if scroll is not None and (acc[6] is None or scroll > acc[6]):
        acc[6] = scroll
    dwell = event.get("dwell_ms")
    if dwell:
        acc[7] += dwell
    device = event.get("device")
    if device is not None:
        acc[8][device] = acc[8].get(device, 0) + 1
    page = event.get("page")
    if page is not None:
        key = (ts, event["event_id"], page)
        if acc[9] is None or key < acc[9]:
            acc[9] = key
        if acc[10] is None or key > acc[10]:
            acc[10] = key
    return acc


def merge(accumulators) -> list:
    """Combine partial accumulators into one."""
    result = empty()
    for acc in accumulators:
        if acc[0] is None:
            continue
        result[0] = acc[0] if result[0] is None else min(result[0], acc[0])
        result[1] = acc[1] if result[1] is None else max(result[1], acc[1])
        for kind, n in acc[2].items():
            result[2][kind] = result[2].get(kind, 0) + n
        result[3] |= acc[3]
        result[4] |= acc[4]
        result[5] += acc[5]
        if acc[6] is not None and (result[6] is None or acc[6] > result[6]):
            result[6] = acc[6]
        result[7] += acc[7]
        for device, n in acc[8].items():
            result[8][device] = result[8].get(device, 0) + n
        if acc[9] is not None and (result[9] is None or acc[9] < result[9]):
            result[9] = acc[9]
        if acc[10] is not None and (result[10] is None or acc[10] > result[10]):
            result[10] = acc[10]
    return result


def extend(open_acc: list | None, events, gap_ms: int, now: int | None = None):
    """Cut ``events`` into sessions after the open one; ``(closed, open)``.

    The rule of Beam's ``Sessions(gap)`` windows, one step at a time: an event
    opens a new session when it comes ``gap_ms`` or more after the latest event
    before it (each event's window is ``[t, t + gap)``, and windows that overlap
    merge). ``events`` are in time order and none is before the end of
    ``open_acc`` (the accumulator of the session still open, or None), as a
    release in event-time order gives them. A session closes at
    ``end + gap - 1`` ms, its window's last instant: with ``now`` given, the
    open session is closed too once ``now`` reaches that instant.

    Returns the accumulators of the sessions that closed, in order, and the
    one still open (None when none is).

    >>> evs = [{"event_id": i, "event_type": "click", "timestamp": t}
    ...        for i, t in enumerate([0, 999, 2000])]
    >>> closed, acc = extend(None, evs, gap_ms=1000)
    >>> [(a[0], a[1]) for a in closed], (acc[0], acc[1])
    ([(0, 999)], (2000, 2000))
    >>> closed, acc = extend(acc, [], gap_ms=1000, now=2999)
    >>> [(a[0], a[1]) for a in closed], acc
    ([(2000, 2000)], None)
    """
    closed: list[list] = []
    acc = open_acc
    for event in events:
        if acc is not None and event["timestamp"] - acc[1] >= gap_ms:
            closed.append(acc)
            acc = None
        acc = add(empty() if acc is None else acc, event)
    if acc is not None and now is not None and acc[1] + gap_ms - 1 <= now:
        closed.append(acc)
        acc = None
    return closed, acc


def cut(events, gap_ms: int) -> list[list]:
    """The accumulators of the sessions ``events`` (one user's, any order) make.

    ``extend`` from no open session over the events in time order.

    >>> evs = [{"event_id": i, "event_type": "click", "timestamp": t}
    ...        for i, t in enumerate([0, 999, 2000, 2998, 3997])]
    >>> [(acc[0], acc[1]) for acc in cut(evs, gap_ms=1000)]
    [(0, 999), (2000, 3997)]
    """
    closed, acc = extend(None, sorted(events, key=lambda e: e["timestamp"]), gap_ms)
    return closed if acc is None else [*closed, acc]


def finish(acc: list, user: str) -> dict:
    """The session summary.

    >>> acc = empty()
    >>> _ = add(acc, {"event_id": "a", "event_type": "product_view", "timestamp": 1000,
    ...               "product_id": "p1", "category": "c1", "page": "/p1", "device": "mobile"})
    >>> _ = add(acc, {"event_id": "b", "event_type": "purchase", "timestamp": 61000,
    ...               "product_id": "p1", "price": 10.0, "quantity": 2, "page": "/thanks"})
    >>> s = finish(acc, "u1")
    >>> s["duration_ms"], s["purchases"], s["revenue"], s["entry_page"], s["exit_page"]
    (60000, 1, 20.0, '/p1', '/thanks')
    >>> s["bounced"]
    False
    """
    counts = acc[2]
    events = sum(counts.values())
    devices = acc[8]
    device = min(devices, key=lambda d: (-devices[d], d)) if devices else None
    return {
        "session_id": f"{user}:{acc[0]}",
        "user_id": user,
        "start": acc[0],
        "end": acc[1],
        "duration_ms": acc[1] - acc[0],
        "events": events,
        "counts": dict(sorted(counts.items())),
        "distinct_products": len(acc[3]),
        "distinct_categories": len(acc[4]),
        "carts": counts.get(ev.ADD_TO_CART, 0),
        "purchases": counts.get(ev.PURCHASE, 0),
        "revenue": round(acc[5], 6),
        "max_scroll_depth": acc[6],
        "dwell_ms": acc[7],
        "device": device,
        "entry_page": acc[9][2] if acc[9] else None,
        "exit_page": acc[10][2] if acc[10] else None,
        "bounced": events <= 1,
    }
