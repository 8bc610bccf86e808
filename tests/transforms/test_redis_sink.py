"""The Redis sink against a real redis-server: layout, versions, idempotence, TTLs."""

from __future__ import annotations

import json

import apache_beam as beam
import pytest

from models import profile as prof
from tests.redis_state import namespace_state
from transforms import redis_sink
from transforms.redis_sink import WriteProfilesToRedis, WriteTrendingToRedis

TTL = {"profile": 3600, "recent": 600, "trending": 60}


def snapshot(user: str, version: int, recent=("p1", "p2")) -> dict:
    state = prof.new_state(user)
    params = prof.ProfileParams()
    for i, product in enumerate(reversed(recent)):
        prof.apply_event(
            params,
            state,
            {
                "event_id": f"{user}-{i}",
                "event_type": "product_view",
                "timestamp": version - len(recent) + i + 1,
                "product_id": product,
                "category": "shoes",
            },
        )
    snap = prof.snapshot(params, state)
    assert snap["version"] == version
    return snap


def write(url, namespace, snapshots, trending=()):
    with beam.Pipeline(runner="FnApiRunner") as pipeline:
        _ = (
            pipeline
            | "Profiles" >> beam.Create(list(snapshots))
            | WriteProfilesToRedis(url, namespace, TTL)
        )
        if trending:
            _ = (
                pipeline
                | "Trending" >> beam.Create(list(trending))
                | WriteTrendingToRedis(url, namespace, TTL)
            )


def test_profile_layout_and_ttls(redis_url, namespace, redis_client):
    write(redis_url, namespace, [snapshot("u1", 1000)])
    key = f"mt:{namespace}:profile:u1"
    stored = {k.decode(): v.decode() for k, v in redis_client.hgetall(key).items()}
    assert stored["user_id"] == "u1"
    assert stored["version"] == "1000"
    assert stored["events"] == "2"
    assert stored["top_category"] == "shoes"
    assert stored["flags"] == "recently_viewed"
    assert json.loads(stored["snapshot"])["recent_items"] == ["p1", "p2"]
    assert "price_band" not in stored  # unknown values are absent, not "None"
    assert redis_client.lrange(f"mt:{namespace}:recent:u1", 0, -1) == [b"p1", b"p2"]
    assert 3500 < redis_client.ttl(key) <= 3600
    assert 500 < redis_client.ttl(f"mt:{namespace}:recent:u1") <= 600
    assert redis_sink.read_profile(redis_client, namespace, "u1")["version"] == 1000


def test_older_snapshot_never_replaces_newer_and_retries_change_nothing(
    redis_url, namespace, redis_client
):
    key = f"mt:{namespace}:profile:u1"
    write(redis_url, namespace, [snapshot("u1", 2000, recent=("new",))])
    before = namespace_state(redis_client, namespace)
    write(redis_url, namespace, [snapshot("u1", 1000, recent=("old",))])  # stale
    write(redis_url, namespace, [snapshot("u1", 2000, recent=("new",))])  # retried
    assert namespace_state(redis_client, namespace) == before
    assert redis_client.hget(key, "version") == b"2000"
    assert redis_sink.read_profile(redis_client, namespace, "u1")["recent_items"] == ["new"]


def test_one_bundle_keeps_the_newest_per_key(redis_url, namespace, redis_client):
    snaps = [snapshot("u1", v, recent=(f"p{v}",)) for v in (3000, 1000, 5000, 2000)]
    write(redis_url, namespace, snaps)
    assert redis_sink.read_profile(redis_client, namespace, "u1")["version"] == 5000


def test_namespaces_do_not_touch_each_other(redis_url, namespace, redis_client):
    other = namespace + "x"
    write(redis_url, namespace, [snapshot("u1", 1000)])
    write(redis_url, other, [snapshot("u1", 2000)])
    assert redis_sink.read_profile(redis_client, namespace, "u1")["version"] == 1000
    assert redis_sink.read_profile(redis_client, other, "u1")["version"] == 2000


def test_trending_latest_version_wins(redis_url, namespace, redis_client):
    records = [
        {
            "category": "c1",
            "window_start": 0,
            "window_end": 600_000,
            "version": 90_000,
            "items": [["a", 3], ["b", 1]],
        },
        {
            "category": "c1",
            "window_start": 60_000,
            "window_end": 660_000,
            "version": 100_000,
            "items": [["b", 4], ["a", 2], ["c", 2]],
        },
    ]
    write(redis_url, namespace, [], trending=records)
    assert redis_sink.read_trending(redis_client, namespace, "c1") == [("b", 4), ("a", 2), ("c", 2)]
    meta = redis_client.hgetall(f"mt:{namespace}:trending:c1:meta")
    assert meta[b"window_end"] == b"660000" and meta[b"version"] == b"100000"
    assert 0 < redis_client.ttl(f"mt:{namespace}:trending:c1") <= 60


def test_unreachable_redis_fails_with_a_clear_error():
    sink = redis_sink._CasWriteFn("redis://127.0.0.1:1/0", "ns", TTL, redis_sink.profile_write)
    sink.retry_for_s = 0.5  # retried, with backoff, for half a second (default a minute)
    sink.setup()
    sink.start_bundle()
    sink.process(snapshot("u1", 1000))
    with pytest.raises(redis_sink.RedisSinkError, match="127.0.0.1:1"):
        sink.finish_bundle()
    sink.teardown()


def test_password_never_appears_in_messages():
    assert redis_sink.redact_url("redis://app:s3cret@host:6379/0") == "redis://***@host:6379/0"
