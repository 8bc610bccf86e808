"""The living user profile: its state, its update, and its snapshot.

Pure core behind ``UserTimeline``. The timeline hands items over one at a
time in event-time order (timestamp, then id); each call here folds one item
into the state and moves the profile's clock (``state["now"]``) to the item's
time. Nothing here reads the wall clock, so a replay gives exactly what the
live run gave.

State is a plain dict (small, picklable) holding only what the snapshot
needs. Scores that decay with time (category and brand affinity, engagement)
are stored as ``[value, as_of_ms]`` pairs and decayed lazily when touched or
read: ``value * 2 ** (-(now - as_of) / half_life)``. Affinity maps are capped
(the weakest entries are dropped), so state stays bounded per user.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from models import events as ev
from models import rolling

DEFAULT_EVENT_WEIGHTS = {
    ev.PRODUCT_VIEW: 1.0,
    ev.CLICK: 0.5,
    ev.ADD_TO_WISHLIST: 2.0,
    ev.ADD_TO_CART: 3.0,
    ev.PURCHASE: 5.0,
    ev.SEARCH: 0.5,
    ev.PAGE_VIEW: 0.2,
    ev.SCROLL: 0.1,
    ev.DWELL: 0.2,
}


@dataclass(frozen=True)
class ProfileParams:
    """Tuning of the profile update (validated by ``pipelines.config``)."""

    affinity_half_life_ms: int = 7 * ev.DAY_MS
    engagement_half_life_ms: int = 3 * ev.DAY_MS
    recent_items: int = 20
    affinity_top: int = 20
    event_weights: dict = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    engagement_scale: float = 20.0
    high_engagement: float = 0.7
    abandoned_cart_after_ms: int = 30 * ev.MINUTE_MS
    recently_viewed_within_ms: int = ev.DAY_MS
    # Lower bounds of price bands, ascending: mean price >= bound -> band.
    price_bands: tuple = (("budget", 0.0), ("mid", 25.0), ("premium", 100.0), ("luxury", 500.0))
    # RFM score bins: a value at or past the n-th bound scores n + 2 (1..5).
    recency_days_bins: tuple = (90.0, 30.0, 7.0, 1.0)
    frequency_bins: tuple = (2, 4, 8, 16)
    monetary_bins: tuple = (20.0, 50.0, 100.0, 500.0)
    # Rolling activity: the last ``rolling_size_ms`` in ``rolling_period_ms`` buckets.
    rolling_size_ms: int = 10 * ev.MINUTE_MS
    rolling_period_ms: int = ev.MINUTE_MS
    # A pattern's flag stays set this long after its last match.
    pattern_flag_within_ms: int = ev.DAY_MS


def new_state(user: str) -> dict:
    """An empty profile for ``user``."""
    return {
        "user_id": user,
        "now": None,
        "first_seen": None,
        "last_seen": None,
        "events": 0,
        "counts": {},
        "sessions": 0,
        "last_session": None,
        "rolling_buckets": {},
        "category_affinity": {},
        "brand_affinity": {},
        "engagement": [0.0, 0],
        "price_sum": 0.0,
        "price_n": 0,
        "devices": {},
        "hours": [0] * 24,
        "recent_items": [],
        "last_view_at": None,
        "cart": {},
        "last_cart_at": None,
        "purchases": 0,
        "revenue": 0.0,
        "last_purchase_at": None,
    }


def _decayed(pair: list, now: int, half_life_ms: int) -> float:
    value, as_of = pair
    if now <= as_of:
        return value
    return value * math.exp2(-(now - as_of) / half_life_ms)


def _bump(scores: dict, key: str, weight: float, now: int, params: ProfileParams) -> None:
    pair = scores.get(key)
    if pair is None:
        scores[key] = [weight, now]
    else:
        pair[0] = _decayed(pair, now, params.affinity_half_life_ms) + weight
        pair[1] = now
    if len(scores) > 2 * params.affinity_top:
        keep = _ranked(scores, now, params)[: params.affinity_top]
        for stale in set(scores) - {k for k, _ in keep}:
            del scores[stale]


def _ranked(scores: dict, now: int, params: ProfileParams) -> list[tuple[str, float]]:
    decayed = ((k, _decayed(p, now, params.affinity_half_life_ms)) for k, p in scores.items())
    return sorted(decayed, key=lambda kv: (-kv[1], kv[0]))


@functools.lru_cache(maxsize=512)
def _zone(name: str):
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _local_hour(ts: int, timezone: str | None) -> int:
    if not timezone:
        return (ts // ev.HOUR_MS) % 24
    return datetime.fromtimestamp(ts / 1000, _zone(timezone)).hour


def apply_event(params: ProfileParams, state: dict, event: dict) -> dict:
    """Fold one event into the profile (mutates and returns ``state``).

    >>> p = ProfileParams()
    >>> s = new_state("u1")
    >>> s = apply_event(p, s, {"event_id": "e1", "event_type": "product_view", "timestamp": 0,
    ...                         "product_id": "p1", "category": "shoes", "price": 40.0})
    >>> s["events"], s["recent_items"], s["counts"]
    (1, ['p1'], {'product_view': 1})
    """
    ts = event["timestamp"]
    kind = event["event_type"]
    state["now"] = ts if state["now"] is None else max(state["now"], ts)
    if state["first_seen"] is None:
        state["first_seen"] = ts
    state["last_seen"] = ts if state["last_seen"] is None else max(state["last_seen"], ts)
    state["events"] += 1
    counts = state["counts"]
    counts[kind] = counts.get(kind, 0) + 1
    buckets = state["rolling_buckets"]
    bucket = rolling.bucket_of(ts, params.rolling_period_ms)
    if bucket not in buckets:
        buckets[bucket] = rolling.user_empty()
        rolling.prune(buckets, params.rolling_size_ms, params.rolling_period_ms)
    if bucket in buckets:
        rolling.user_add(buckets[bucket], event)

    weight = params.event_weights.get(kind, 0.0)
    if weight:
        category = event.get("category")
        if category is not None:
            _bump(state["category_affinity"], category, weight, ts, params)
        brand = event.get("brand")
        if brand is not None:
            _bump(state["brand_affinity"], brand, weight, ts, params)
    engagement = weight
    dwell = event.get("dwell_ms")
    if dwell:
        engagement += min(dwell / 60_000, 5.0)
    scroll = event.get("scroll_depth")
    if scroll:
        engagement += 0.5 * scroll
    if engagement:
        pair = state["engagement"]
        pair[0] = _decayed(pair, ts, params.engagement_half_life_ms) + engagement
        pair[1] = ts

    price = event.get("price")
    if price is not None and kind in (ev.PRODUCT_VIEW, ev.ADD_TO_CART, ev.PURCHASE):
        state["price_sum"] += price
        state["price_n"] += 1
    device = event.get("device")
    if device is not None:
        state["devices"][device] = state["devices"].get(device, 0) + 1
    state["hours"][_local_hour(ts, event.get("timezone"))] += 1

    product = event.get("product_id")
    if kind == ev.PRODUCT_VIEW and product is not None:
        recent = state["recent_items"]
        if product in recent:
            recent.remove(product)
        recent.insert(0, product)
        del recent[params.recent_items :]
        state["last_view_at"] = ts
    elif kind == ev.ADD_TO_CART and product is not None:
        state["cart"][product] = ts
        state["last_cart_at"] = ts
    elif kind == ev.REMOVE_FROM_CART and product is not None:
        state["cart"].pop(product, None)
    elif kind == ev.PURCHASE:
        state["purchases"] += 1
        if price is not None:
            state["revenue"] += price * (event.get("quantity") or 1)
        state["last_purchase_at"] = ts
        if product is None:
            state["cart"].clear()
        else:
            state["cart"].pop(product, None)
    return state


def apply_session(params: ProfileParams, state: dict, summary: dict, ts: int) -> dict:
    """Take in a closed session's summary (``ts`` is when it closed)."""
    state["now"] = ts if state["now"] is None else max(state["now"], ts)
    state["sessions"] += 1
    state["last_session"] = summary
    return state


def _score(value: float, bins: tuple, lower_is_better: bool = False) -> int:
    score = 1
    for bound in bins:
        if (value <= bound) if lower_is_better else (value >= bound):
            score += 1
    return score


def _band(params: ProfileParams, mean_price: float | None) -> str | None:
    if mean_price is None:
        return None
    band = None
    for name, lower in params.price_bands:
        if mean_price >= lower:
            band = name
    return band


def _r(value: float) -> float:
    return round(value, 6)


def _rfm(view: View) -> dict:
    params, state = view.params, view.state
    now = state["now"]
    purchases = state["purchases"]
    recency_days = (
        (now - state["last_purchase_at"]) / ev.DAY_MS if state["last_purchase_at"] else None
    )
    monetary = state["revenue"] / purchases if purchases else 0.0
    return {
        "recency_days": _r(recency_days) if recency_days is not None else None,
        "frequency": purchases,
        "monetary": _r(monetary),
        "r": _score(recency_days, params.recency_days_bins, True)
        if recency_days is not None
        else 1,
        "f": _score(purchases, params.frequency_bins),
        "m": _score(monetary, params.monetary_bins),
    }


def _engagement(params: ProfileParams, state: dict) -> float:
    raw = _decayed(state["engagement"], state["now"], params.engagement_half_life_ms)
    return raw / (raw + params.engagement_scale)


def _mean_price(state: dict) -> float | None:
    return state["price_sum"] / state["price_n"] if state["price_n"] else None


def _flags(view: View) -> dict:
    params, state = view.params, view.state
    now = state["now"]
    last_view = state["last_view_at"]
    return {
        "recently_viewed": last_view is not None
        and now - last_view <= params.recently_viewed_within_ms,
        "high_engagement": _engagement(params, state) >= params.high_engagement,
        "abandoned_cart": bool(state["cart"])
        and now - state["last_cart_at"] >= params.abandoned_cart_after_ms,
        "returning": state["sessions"] >= 2,
    }


def _affinity(name: str):
    def top(view: View) -> dict:
        ranked = _ranked(view.state[name], view.state["now"], view.params)
        return {k: _r(v) for k, v in ranked[: view.params.affinity_top]}

    return top


def _active_hours(view: View) -> list:
    hours = view.state["hours"]
    return sorted((h for h in range(24) if hours[h]), key=lambda h: (-hours[h], h))[:3]


def _preferred_device(view: View) -> str | None:
    devices = view.state["devices"]
    return min(devices, key=lambda d: (-devices[d], d)) if devices else None


def _mean_price_field(view: View) -> float | None:
    mean_price = _mean_price(view.state)
    return _r(mean_price) if mean_price is not None else None


def _rolling(view: View) -> dict | None:
    params = view.params
    return rolling.user_window(
        view.state["rolling_buckets"], params.rolling_size_ms, params.rolling_period_ms
    )


# The snapshot's fields in their order, each computed from the view (its params and state).
# top_category is the first key of category_affinity: ranked, ties by name.
FIELDS = {
    "user_id": lambda v: v.state["user_id"],
    "version": lambda v: v.state["now"],
    "first_seen": lambda v: v.state["first_seen"],
    "last_seen": lambda v: v.state["last_seen"],
    "events": lambda v: v.state["events"],
    "counts": lambda v: dict(sorted(v.state["counts"].items())),
    "sessions": lambda v: v.state["sessions"],
    "top_category": lambda v: next(iter(v["category_affinity"]), None),
    "top_brand": lambda v: next(iter(v["brand_affinity"]), None),
    "category_affinity": _affinity("category_affinity"),
    "brand_affinity": _affinity("brand_affinity"),
    "engagement": lambda v: _r(_engagement(v.params, v.state)),
    "rfm": _rfm,
    "ltv": lambda v: _r(v.state["revenue"]),
    "mean_price": _mean_price_field,
    "price_band": lambda v: _band(v.params, _mean_price(v.state)),
    "preferred_device": _preferred_device,
    "active_hours": _active_hours,
    "recent_items": lambda v: list(v.state["recent_items"]),
    "cart_items": lambda v: sorted(v.state["cart"]),
    "flags": _flags,
    "last_session": lambda v: v.state["last_session"],
    "rolling": _rolling,
}


class View(Mapping):
    """The snapshot as a read-only mapping whose fields are computed when first read.

    A rule that reads three fields costs those three, not the whole snapshot
    (the affinity rankings, the rolling window). Each field is what
    ``snapshot`` holds under its name. The view reads the state as it is when
    a field is first read: read what is needed before the state changes again.
    ``fields`` maps each name to a function of the view (``FIELDS`` by
    default); ``detector`` is for the fields that read the pattern automaton
    (``models.timeline``).
    """

    __slots__ = ("params", "state", "detector", "_fields", "_values")

    def __init__(self, params: ProfileParams, state: dict, fields=None, detector=None):
        self.params = params
        self.state = state
        self.detector = detector
        self._fields = FIELDS if fields is None else fields
        self._values: dict = {}

    def __getitem__(self, name: str):
        values = self._values
        if name in values:
            return values[name]
        value = values[name] = self._fields[name](self)
        return value

    def get(self, name, default=None):
        # What conditions call for every field they read: one call, not two.
        values = self._values
        if name in values:
            return values[name]
        compute = self._fields.get(name)
        if compute is None:
            return default
        value = values[name] = compute(self)
        return value

    def __iter__(self):
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def materialize(self) -> dict:
        """Every field, as a plain dict in the snapshot's order."""
        return {name: self[name] for name in self._fields}


def snapshot(params: ProfileParams, state: dict) -> dict:
    """The profile as of its clock (``state["now"]``): a JSON-ready dict.

    ``version`` is the clock: it only grows, so a store can keep the newest.

    >>> p = ProfileParams()
    >>> s = apply_event(p, new_state("u1"), {"event_id": "e1", "event_type": "add_to_cart",
    ...                                      "timestamp": 0, "product_id": "p1"})
    >>> snapshot(p, s)["flags"]["abandoned_cart"]
    False
    >>> s = apply_session(p, s, {"session_id": "u1:0"}, 30 * 60_000)
    >>> snap = snapshot(p, s)
    >>> snap["flags"]["abandoned_cart"], snap["version"], snap["sessions"]
    (True, 1800000, 1)
    """
    return View(params, state).materialize()
