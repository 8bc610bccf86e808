"""Rolling activity: per-user metrics and trending items over sliding windows.

Windows are those of Beam's ``SlidingWindows(size, period)`` (offset 0): a
window ``[start, start + size)`` starts at every multiple of ``period``. The
*current* window of a stream is the one that ends at the first period
boundary after its latest event, i.e. its last ``size`` of activity.

Events are kept in one accumulator per ``period`` bucket and only the buckets
of the current window are kept, so a window is the merge of at most
``size / period`` buckets, whatever the rate. (Beam's own windowed
``CombinePerKey`` gives the same numbers window by window; on the Python
DirectRunner it costs about half a millisecond per key and window, ten
windows per event at the defaults, which made it the slowest step of a
replay by far: see ``transforms.trending``.)

Accumulators are order-independent (sums and counts).
"""

from __future__ import annotations

from models import events as ev


def bucket_of(ts: int, period: int) -> int:
    """Start of the ``period`` bucket holding ``ts`` (as Beam assigns window starts).

    >>> bucket_of(125_000, 60_000), bucket_of(-1, 60_000)
    (120000, -60000)
    """
    return ts - ts % period


def current_window(latest_bucket: int, size: int, period: int) -> tuple[int, int]:
    """``[start, end)`` of the window ending at the boundary after ``latest_bucket``.

    >>> current_window(120_000, 600_000, 60_000)
    (-420000, 180000)
    """
    end = latest_bucket + period
    return end - size, end


def prune(buckets: dict, size: int, period: int) -> dict:
    """Drop buckets older than the current window (mutates and returns ``buckets``)."""
    if buckets:
        start, _ = current_window(max(buckets), size, period)
        for old in [b for b in buckets if b < start]:
            del buckets[old]
    return buckets


def user_empty() -> list:
    """Per-user accumulator: events, views by category, dwell sum, dwell count, carts, buys."""
    return [0, {}, 0, 0, 0, 0]


def user_add(acc: list, event: dict) -> list:
    """Fold one event into a user's rolling accumulator."""
    acc[0] += 1
    kind = event["event_type"]
    if kind == ev.PRODUCT_VIEW:
        category = event.get("category") or ""
        acc[1][category] = acc[1].get(category, 0) + 1
    elif kind == ev.ADD_TO_CART:
        acc[4] += 1
    elif kind == ev.PURCHASE:
        acc[5] += 1
    dwell = event.get("dwell_ms")
    if dwell is not None:
        acc[2] += dwell
        acc[3] += 1
    return acc


def user_merge(accumulators) -> list:
    """Combine per-user rolling accumulators."""
    result = user_empty()
    for acc in accumulators:
        result[0] += acc[0]
        for category, n in acc[1].items():
            result[1][category] = result[1].get(category, 0) + n
        result[2] += acc[2]
        result[3] += acc[3]
        result[4] += acc[4]
        result[5] += acc[5]
    return result


def user_finish(acc: list, window_start: int, window_end: int) -> dict:
    """Rolling metrics of one user over one window ``[window_start, window_end)``.

    >>> acc = user_add(user_empty(), {"event_type": "product_view", "category": "c",
    ...                               "dwell_ms": 3000})
    >>> m = user_finish(user_add(acc, {"event_type": "add_to_cart"}), 0, 600000)
    >>> m["events"], m["product_views"], m["views_by_category"], m["mean_dwell_ms"], m["carts"]
    (2, 1, {'c': 1}, 3000.0, 1)
    """
    views = acc[1]
    return {
        "window_start": window_start,
        "window_end": window_end,
        "events": acc[0],
        "product_views": sum(views.values()),
        "views_by_category": dict(sorted(views.items())),
        "mean_dwell_ms": round(acc[2] / acc[3], 3) if acc[3] else None,
        "carts": acc[4],
        "purchases": acc[5],
    }


def user_window(buckets: dict, size: int, period: int) -> dict | None:
    """A user's rolling metrics over the current window of its buckets, or None."""
    if not buckets:
        return None
    start, end = current_window(max(buckets), size, period)
    return user_finish(user_merge(a for b, a in buckets.items() if b >= start), start, end)


def trending_empty() -> dict:
    """Per-category accumulator: product id -> views."""
    return {}


def trending_add(acc: dict, product_id: str) -> dict:
    """Count one view of a product."""
    acc[product_id] = acc.get(product_id, 0) + 1
    return acc


def trending_merge(accumulators) -> dict:
    """Combine per-category view counts."""
    result: dict = {}
    for acc in accumulators:
        for product, n in acc.items():
            result[product] = result.get(product, 0) + n
    return result


def trending_finish(acc: dict, top: int) -> list[list]:
    """The ``top`` most viewed products, most viewed first, ties by product id.

    >>> trending_finish({"a": 2, "b": 5, "c": 2}, 2)
    [['b', 5], ['a', 2]]
    """
    ranked = sorted(acc.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return [[product, n] for product, n in ranked]
