"""WriteTriggers against a real redis-server: once per id, log and stream, holdout kept off."""

from __future__ import annotations

import json

import apache_beam as beam
import fastavro
import pytest

from models import governance
from schemas.codecs import load_schema
from transforms.redis_sink import RedisSinkError
from transforms.triggers import WriteTriggers, read_triggers


def trigger(user: str, first: str, at: int, pattern: str = "cart_abandonment", holdout=False):
    return {
        "trigger_id": governance.trigger_id(pattern, user, first),
        "user_id": user,
        "pattern": pattern,
        "pattern_version": "1",
        "matched_event_ids": [first],
        "keys": {"product_id": "p1"},
        "event_time": at,
        "first_event_time": at,
        "holdout": holdout,
    }


def publish(url, namespace, triggers, log_size=50, ttl=3600):
    with beam.Pipeline(runner="FnApiRunner") as pipeline:
        _ = (
            pipeline
            | beam.Create(list(triggers))
            | WriteTriggers(url, namespace, ttl, log_size=log_size)
        )


def test_triggers_go_to_the_user_log_and_the_stream(redis_url, namespace, redis_client):
    sent = [trigger("u1", "e1", 1000), trigger("u1", "e2", 2000), trigger("u2", "e3", 1500)]
    publish(redis_url, namespace, sent)
    published = [json.loads(payload) for _, payload in read_triggers(redis_client, namespace)]
    assert sorted(t["trigger_id"] for t in published) == sorted(t["trigger_id"] for t in sent)
    for record in published:
        fastavro.validate(record, load_schema("trigger"), raise_errors=True)
    log = [json.loads(x) for x in redis_client.lrange(f"mt:{namespace}:triggers:u1", 0, -1)]
    assert [t["matched_event_ids"] for t in log] == [["e2"], ["e1"]]  # newest first
    assert 3500 < redis_client.ttl(f"mt:{namespace}:triggers:u1") <= 3600
    guard = f"mt:{namespace}:trigger:{sent[0]['trigger_id']}"
    assert 3500 < redis_client.ttl(guard) <= 3600


def test_a_retried_batch_or_a_second_replay_publishes_nothing_twice(
    redis_url, namespace, redis_client
):
    sent = [trigger("u1", f"e{i}", 1000 + i) for i in range(5)]
    publish(redis_url, namespace, sent)
    publish(redis_url, namespace, sent[2:] + [trigger("u1", "e9", 9000)])
    ids = [
        json.loads(payload)["trigger_id"] for _, payload in read_triggers(redis_client, namespace)
    ]
    assert len(ids) == len(set(ids)) == 6
    assert redis_client.llen(f"mt:{namespace}:triggers:u1") == 6


def test_held_out_triggers_are_logged_but_not_published(redis_url, namespace, redis_client):
    publish(
        redis_url, namespace, [trigger("u1", "e1", 1000, holdout=True), trigger("u1", "e2", 2000)]
    )
    published = [json.loads(payload) for _, payload in read_triggers(redis_client, namespace)]
    assert [t["matched_event_ids"] for t in published] == [["e2"]]
    log = [json.loads(x) for x in redis_client.lrange(f"mt:{namespace}:triggers:u1", 0, -1)]
    assert [(t["matched_event_ids"], t["holdout"]) for t in log] == [
        (["e2"], False),
        (["e1"], True),
    ]


def test_the_user_log_is_capped(redis_url, namespace, redis_client):
    publish(redis_url, namespace, [trigger("u1", f"e{i}", i) for i in range(8)], log_size=3)
    assert redis_client.llen(f"mt:{namespace}:triggers:u1") == 3


def test_a_failed_publish_leaves_nothing_and_the_retry_publishes(
    redis_url, namespace, redis_client
):
    stream = f"mt:{namespace}:topic:triggers"
    redis_client.set(stream, "not a stream")
    sent = trigger("u1", "e1", 1000)
    with pytest.raises(Exception) as caught:
        publish(redis_url, namespace, [sent])
    assert isinstance(caught.value, RedisSinkError) or "RedisSinkError" in str(caught.value)
    assert not redis_client.exists(f"mt:{namespace}:trigger:{sent['trigger_id']}")
    assert not redis_client.exists(f"mt:{namespace}:triggers:u1")
    redis_client.delete(stream)
    publish(redis_url, namespace, [sent])
    assert [t for _, t in read_triggers(redis_client, namespace)] != []
    assert redis_client.llen(f"mt:{namespace}:triggers:u1") == 1
