"""Features for the online models, from a user's timeline: plain dicts of floats.

A session is cut by ``sessions.gap`` (as Beam's Sessions window cuts it) and
followed as its events are released, in event-time order. What the
purchase-intent model sees of a session stops at its first purchase: a
session that ends in a purchase is described only by what came before it,
so the model cannot learn from the answer.

Session features (the session so far; counts also as ``log1p``):

``s_events``            events in the session
``s_views``             product views
``s_distinct_products`` different products viewed or carted
``s_repeat_views``      views of a product already viewed in the session
``s_categories``        different categories seen
``s_carts``             add-to-cart events
``s_wishlist``          add-to-wishlist events
``s_searches``          searches
``s_duration_min``      minutes from the session's first event to its latest
``s_dwell_min``         minutes of dwell reported by the events
``s_max_scroll``        deepest scroll (0 to 1; 0 if never reported)

User features (the profile as the session began):

``u_sessions``          earlier sessions
``u_purchases``         earlier purchases
``u_events``            earlier events
``u_days_since_purchase`` days since the last purchase (-1: never)
``u_days_since_seen``   days since the user's previous event (-1: first visit)
``u_engagement``        engagement (0 to 1) at the start of the session
"""

from __future__ import annotations

import math

from models import events as ev

_COUNTED = (ev.PRODUCT_VIEW, ev.ADD_TO_CART, ev.ADD_TO_WISHLIST, ev.SEARCH)


def new_session(event: dict, profile_snapshot: dict) -> dict:
    """The accumulator of a session that starts with ``event`` (not yet added)."""
    rfm = profile_snapshot.get("rfm") or {}
    last_seen = profile_snapshot.get("last_seen")
    ts = event["timestamp"]
    recency = rfm.get("recency_days")
    return {
        "start": ts,
        "last": ts,
        "frozen": False,  # a purchase happened: nothing more is added
        "purchased": False,
        "events": 0,
        "counts": {},
        "products": set(),
        "seen_products": set(),
        "categories": set(),
        "repeat_views": 0,
        "dwell_ms": 0,
        "max_scroll": 0.0,
        "prefixes": [],  # (k, feature values as of the k-th event), kept by models.timeline
        "user": {
            "u_sessions": float(profile_snapshot.get("sessions") or 0),
            "u_purchases": float(rfm.get("frequency") or 0),
            "u_events": float(profile_snapshot.get("events") or 0),
            "u_days_since_purchase": -1.0 if recency is None else float(recency),
            "u_days_since_seen": -1.0 if last_seen is None else (ts - last_seen) / ev.DAY_MS,
            "u_engagement": float(profile_snapshot.get("engagement") or 0.0),
        },
    }


def add(session: dict, event: dict) -> None:
    """Fold one released event into its session (in event-time order)."""
    if event["event_type"] == ev.PURCHASE:
        session["purchased"] = True
        session["frozen"] = True
    if session["frozen"]:
        return  # nothing from the purchase on, not even how long the session went on
    session["last"] = max(session["last"], event["timestamp"])
    session["events"] += 1
    kind = event["event_type"]
    if kind in _COUNTED:
        session["counts"][kind] = session["counts"].get(kind, 0) + 1
    product = event.get("product_id")
    if product is not None:
        if kind == ev.PRODUCT_VIEW and product in session["seen_products"]:
            session["repeat_views"] += 1
        elif kind == ev.PRODUCT_VIEW:
            session["seen_products"].add(product)
        session["products"].add(product)
    category = event.get("category")
    if category is not None:
        session["categories"].add(category)
    if event.get("dwell_ms"):
        session["dwell_ms"] += event["dwell_ms"]
    if event.get("scroll_depth") is not None:
        session["max_scroll"] = max(session["max_scroll"], event["scroll_depth"])


def session_features(session: dict) -> dict[str, float]:
    """The purchase-intent features of a session so far (see the module docstring)."""
    counts = session["counts"]
    x = {
        "s_events": session["events"],
        "s_views": counts.get(ev.PRODUCT_VIEW, 0),
        "s_distinct_products": len(session["products"]),
        "s_repeat_views": session["repeat_views"],
        "s_categories": len(session["categories"]),
        "s_carts": counts.get(ev.ADD_TO_CART, 0),
        "s_wishlist": counts.get(ev.ADD_TO_WISHLIST, 0),
        "s_searches": counts.get(ev.SEARCH, 0),
    }
    out = {name: float(value) for name, value in x.items()}
    out.update({f"log_{name}": math.log1p(value) for name, value in x.items()})
    out["s_duration_min"] = (session["last"] - session["start"]) / ev.MINUTE_MS
    out["s_dwell_min"] = session["dwell_ms"] / ev.MINUTE_MS
    out["s_max_scroll"] = float(session["max_scroll"])
    out.update(session["user"])
    return out


def user_features(snapshot: dict) -> dict[str, float]:
    """The churn-risk and clustering features of a user, from a profile snapshot.

    ``u_sessions``, ``u_events``, ``u_purchases``, ``u_ltv`` (log1p of revenue),
    ``u_engagement``, ``u_days_since_purchase`` (-1: never), ``u_categories``
    (categories with affinity), ``u_last_session_events`` and
    ``u_last_session_min`` (the last closed session's events and minutes).
    """
    rfm = snapshot.get("rfm") or {}
    recency = rfm.get("recency_days")
    last = snapshot.get("last_session") or {}
    return {
        "u_sessions": float(snapshot.get("sessions") or 0),
        "u_events": float(snapshot.get("events") or 0),
        "u_purchases": float(rfm.get("frequency") or 0),
        "u_ltv": math.log1p(float(snapshot.get("ltv") or 0.0)),
        "u_engagement": float(snapshot.get("engagement") or 0.0),
        "u_days_since_purchase": -1.0 if recency is None else float(recency),
        "u_categories": float(len(snapshot.get("category_affinity") or {})),
        "u_last_session_events": float(last.get("events") or 0),
        "u_last_session_min": float(last.get("duration_ms") or 0) / ev.MINUTE_MS,
    }


def views_so_far(x: dict[str, float]) -> float:
    """The views-count baseline's score: product views in the session so far (for a
    model of users rather than sessions, the user's events)."""
    return x.get("s_views", x.get("u_events", 0.0))


def _names() -> dict[str, tuple]:
    # The names of each feature set, in the order the functions above give them (they do
    # not depend on the values), for models.learning.pack to ship as a short tag.
    session = session_features(new_session({"timestamp": 0}, {}))
    return {"session": tuple(session), "user": tuple(user_features({}))}


FEATURE_NAMES = _names()
