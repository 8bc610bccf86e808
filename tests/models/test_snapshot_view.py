"""The snapshot's view computes each field alone as the whole snapshot computes it.

``models.profile.View`` computes a field when it is first read (segments read
a few); the reference below is the snapshot as one piece, the way it was
written before the view, so a field that reads the wrong input, or a memo
that leaks between fields, shows as a difference on real-looking streams.
"""

from __future__ import annotations

import dataclasses

import pytest

from models import cep, personas, rolling, timeline
from models import profile as prof
from models.events import DAY_MS
from models.patterns import compile_pattern
from pipelines.config import load_config


def _reference_profile(params: prof.ProfileParams, state: dict) -> dict:
    now = state["now"]
    categories = prof._ranked(state["category_affinity"], now, params)[: params.affinity_top]
    brands = prof._ranked(state["brand_affinity"], now, params)[: params.affinity_top]
    raw = prof._decayed(state["engagement"], now, params.engagement_half_life_ms)
    engagement = raw / (raw + params.engagement_scale)
    mean_price = state["price_sum"] / state["price_n"] if state["price_n"] else None
    devices, hours = state["devices"], state["hours"]
    purchases, revenue = state["purchases"], state["revenue"]
    recency = (now - state["last_purchase_at"]) / DAY_MS if state["last_purchase_at"] else None
    monetary = revenue / purchases if purchases else 0.0
    last_view = state["last_view_at"]
    r = prof._r
    return {
        "user_id": state["user_id"],
        "version": now,
        "first_seen": state["first_seen"],
        "last_seen": state["last_seen"],
        "events": state["events"],
        "counts": dict(sorted(state["counts"].items())),
        "sessions": state["sessions"],
        "top_category": categories[0][0] if categories else None,
        "top_brand": brands[0][0] if brands else None,
        "category_affinity": {k: r(v) for k, v in categories},
        "brand_affinity": {k: r(v) for k, v in brands},
        "engagement": r(engagement),
        "rfm": {
            "recency_days": r(recency) if recency is not None else None,
            "frequency": purchases,
            "monetary": r(monetary),
            "r": prof._score(recency, params.recency_days_bins, True) if recency is not None else 1,
            "f": prof._score(purchases, params.frequency_bins),
            "m": prof._score(monetary, params.monetary_bins),
        },
        "ltv": r(revenue),
        "mean_price": r(mean_price) if mean_price is not None else None,
        "price_band": prof._band(params, mean_price),
        "preferred_device": min(devices, key=lambda d: (-devices[d], d)) if devices else None,
        "active_hours": sorted((h for h in range(24) if hours[h]), key=lambda h: (-hours[h], h))[
            :3
        ],
        "recent_items": list(state["recent_items"]),
        "cart_items": sorted(state["cart"]),
        "flags": {
            "recently_viewed": last_view is not None
            and now - last_view <= params.recently_viewed_within_ms,
            "high_engagement": engagement >= params.high_engagement,
            "abandoned_cart": bool(state["cart"])
            and now - state["last_cart_at"] >= params.abandoned_cart_after_ms,
            "returning": state["sessions"] >= 2,
        },
        "last_session": state["last_session"],
        "rolling": rolling.user_window(
            state["rolling_buckets"], params.rolling_size_ms, params.rolling_period_ms
        ),
    }


def _reference(params: prof.ProfileParams, state: dict, detector: dict | None) -> dict:
    snap = _reference_profile(params, state)
    if detector is None:
        return snap
    seen = detector["matches"]
    version = max([snap["version"], *(last for _, last in seen.values())])
    snap["version"] = version
    snap["patterns"] = {
        name: {"matches": n, "last": last} for name, (n, last) in sorted(seen.items())
    }
    for name, (_, last) in seen.items():
        snap["flags"][f"pattern:{name}"] = version - last <= params.pattern_flag_within_ms
    return snap


def _params(with_patterns: bool) -> timeline.TimelineParams:
    config = load_config("examples/config.yaml")
    # A short half-life and flag window, so decay and expiring flags show in a short stream.
    profile = dataclasses.replace(
        config.timeline_params().profile, affinity_half_life_ms=3_600_000, affinity_top=3
    )
    patterns = (
        tuple(compile_pattern(n, s) for n, s in config.patterns.items()) if with_patterns else ()
    )
    return dataclasses.replace(config.timeline_params(), profile=profile, patterns=patterns)


def _check(params: timeline.TimelineParams, state: dict) -> None:
    detector = state["patterns"] if params.patterns else None
    expected = _reference(params.profile, state["profile"], detector)
    whole = timeline.snapshot(params.profile, state["profile"], detector)
    assert whole == expected
    assert list(whole) == list(expected)  # the same order: the snapshot's JSON keys
    assert list(whole["flags"]) == list(expected["flags"])
    backwards = timeline.view(params.profile, state["profile"], detector)
    for name in reversed(list(expected)):
        # Each field read first in a view of its own, and in a view read backwards.
        alone = timeline.view(params.profile, state["profile"], detector)
        assert alone[name] == expected[name], name
        assert alone.get(name) == expected[name], name
        assert backwards[name] == expected[name], name
    assert backwards.get("no_such_field") is None
    assert dict(backwards) == expected


@pytest.mark.parametrize("with_patterns", [False, True])
def test_every_field_of_the_view_is_the_snapshot_s(with_patterns):
    params = _params(with_patterns)
    records, _ = personas.generate(events=1_500, users=12, seed=3)
    by_user: dict[str, list] = {}
    for record in records:
        by_user.setdefault(record["user_id"], []).append(record)
    checked, matched = 0, 0
    for user, events in by_user.items():
        state = timeline.new_user_state(user)
        for event in sorted(events, key=lambda e: (e["timestamp"], e["event_id"])):
            timeline.advance(params, state, [timeline.event_item(event)], event["timestamp"])
            if state["profile"]["now"] is not None:
                _check(params, state)
                checked += 1
        # A day later, with nothing new: decay, and flags that expired.
        later = state["profile"]["now"] + DAY_MS + 1
        if params.patterns:
            cep.expire(params.patterns, state["patterns"], later)
        state["profile"]["now"] = later
        _check(params, state)
        matched += bool(state["patterns"]["matches"])
    assert checked > 1_000
    assert matched > 0 if with_patterns else matched == 0


def test_the_view_is_a_read_only_mapping_of_the_snapshot_s_fields():
    state = prof.apply_event(
        prof.ProfileParams(),
        prof.new_state("u1"),
        {"event_id": "e1", "event_type": "product_view", "timestamp": 0, "category": "c"},
    )
    view = prof.View(prof.ProfileParams(), state)
    assert len(view) == len(prof.FIELDS) and list(view) == list(prof.FIELDS)
    assert view["top_category"] == "c" and view.get("patterns") is None
    with pytest.raises(KeyError):
        view["patterns"]
    with pytest.raises(TypeError):
        view["events"] = 2  # type: ignore[index]
