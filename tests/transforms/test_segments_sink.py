"""Segment memberships and changes against a real redis-server."""

from __future__ import annotations

import json

import apache_beam as beam

from models import segments as seg
from tests.conftest import pseudo
from tests.transforms.test_erasure import erase, mentions
from transforms import redis_sink
from transforms.redis_sink import profile_write, run_batch
from transforms.segments import WriteSegmentChanges, topic_key

ANN, BOB = pseudo("ann"), pseudo("bob")
TTL = {"profile": 3600, "recent": 3600}


def write(client, url, namespace, user, version, segments, min_sizes=None, first_seen=1):
    snap = {"user_id": user, "version": version, "first_seen": first_seen, "flags": {}}
    snap["segments"] = segments
    script = client.register_script(redis_sink.SCRIPT)
    call = profile_write(namespace, snap, TTL, min_sizes or {})
    return run_batch(client, script, [call], url)[0]


def members(client, namespace, name):
    return dict(
        (m.decode(), s)
        for m, s in client.zrange(f"mt:{namespace}:segment:{name}", 0, -1, withscores=True)
    )


def meta(client, namespace, name):
    raw = client.hgetall(f"mt:{namespace}:segment:{name}:meta")
    return {k.decode(): v.decode() for k, v in raw.items()}


def test_memberships_follow_the_newest_profile(redis_url, namespace, redis_client):
    c = redis_client
    assert write(c, redis_url, namespace, ANN, 100, {"a": 50, "b": 100}, {"b": 2}) == 1
    assert c.smembers(f"mt:{namespace}:segments:{ANN}") == {b"a", b"b"}
    assert members(c, namespace, "a") == {ANN: 50.0}
    assert meta(c, namespace, "a") == {"min_size": "0", "size": "1", "active": "1"}
    assert meta(c, namespace, "b") == {"min_size": "2", "size": "1", "active": "0"}
    assert write(c, redis_url, namespace, BOB, 120, {"b": 120}, {"b": 2}) == 1
    assert meta(c, namespace, "b")["active"] == "1"
    # Ann leaves a; a stale snapshot that still had her in a changes nothing.
    assert write(c, redis_url, namespace, ANN, 200, {"b": 100}, {"b": 2}) == 1
    assert write(c, redis_url, namespace, ANN, 150, {"a": 50, "b": 100}, {"b": 2}) == 0
    assert members(c, namespace, "a") == {} and meta(c, namespace, "a")["size"] == "0"
    assert c.smembers(f"mt:{namespace}:segments:{ANN}") == {b"b"}
    assert 3500 < c.ttl(f"mt:{namespace}:segments:{ANN}") <= 3600


def test_members_whose_profile_expired_are_pruned(redis_url, namespace, redis_client):
    c = redis_client
    write(c, redis_url, namespace, ANN, 1_000, {"b": 1_000})
    write(c, redis_url, namespace, BOB, 2_000, {"b": 2_000})
    assert set(members(c, namespace, "b")) == {ANN, BOB}
    c.delete(f"mt:{namespace}:profile:{ANN}")  # as its TTL would
    write(c, redis_url, namespace, BOB, 3_000, {"b": 2_000})
    assert members(c, namespace, "b") == {BOB: 2000.0}
    assert meta(c, namespace, "b")["size"] == "1"
    assert c.smembers(f"mt:{namespace}:segments:{ANN}") == set()


def test_erasure_takes_the_user_out_of_every_segment(redis_url, namespace, redis_client):
    c = redis_client
    write(c, redis_url, namespace, ANN, 100, {"a": 50, "b": 100})
    write(c, redis_url, namespace, BOB, 100, {"b": 100})
    audit = erase(c, redis_url, namespace, ANN, 1000)[0]
    assert audit["memberships_removed"] == "2"
    assert mentions(c, namespace, ANN) == []
    assert meta(c, namespace, "b")["size"] == "1" and members(c, namespace, "b") == {BOB: 100.0}


def change(user, name, kind, at):
    compiled = seg.compile_segments({name: seg.SegmentSpec(where={"events": {"gte": 1}})})
    found = seg.evaluate(compiled, {"user_id": user, "events": 1}, {}, at)
    return {**found[0], "change": kind, "change_id": seg.change_id(user, name, kind, at)}


def publish(url, namespace, changes):
    with beam.Pipeline(runner="FnApiRunner") as pipeline:
        _ = pipeline | beam.Create(changes) | WriteSegmentChanges(url, namespace, 3600)


def test_changes_are_published_once_and_erased_with_the_user(redis_url, namespace, redis_client):
    c = redis_client
    sent = [
        change(ANN, "a", "enter", 10),
        change(ANN, "a", "exit", 20),
        change(BOB, "a", "enter", 15),
    ]
    publish(redis_url, namespace, sent)
    publish(redis_url, namespace, sent)  # a replay: nothing twice
    entries = c.xrange(topic_key(namespace))
    assert sorted(f[b"change_id"].decode() for _, f in entries) == sorted(
        s["change_id"] for s in sent
    )
    assert json.loads(entries[0][1][b"change_json"])["values"] == {"events": "1"}
    audit = erase(c, redis_url, namespace, ANN, 1000)[0]
    assert audit["stream_entries_removed"] == "2"
    assert mentions(c, namespace, ANN) == []
    publish(redis_url, namespace, [change(ANN, "a", "enter", 900)])  # raced the erasure
    assert [f[b"user"].decode() for _, f in c.xrange(topic_key(namespace))] == [BOB]


def test_an_absent_value_is_published_as_json_null(redis_url, namespace, redis_client):
    spec = seg.SegmentSpec(where={"any": [{"price_band": "budget"}, {"events": {"gte": 1}}]})
    compiled = seg.compile_segments({"active": spec})
    sent = seg.evaluate(compiled, {"user_id": ANN, "events": 1}, {}, 10)
    publish(redis_url, namespace, sent)
    ((_, fields),) = redis_client.xrange(topic_key(namespace))
    assert b'"values":{"events":"1","price_band":null}' in fields[b"change_json"]
    assert json.loads(fields[b"change_json"])["values"] == {"events": "1", "price_band": None}
