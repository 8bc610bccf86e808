"""WriteTriggers: governed triggers to Redis and to the topic.

Input: trigger dicts shaped like ``schemas/trigger.avsc`` (``UserTimeline``
governs pattern matches into triggers, see ``models.governance``), the
control group included (``holdout: true``). Written by hand (Beam has no
Redis sink for Python). Every trigger goes to the user's trigger log
(``mt:NS:triggers:USER``, a list of JSON, newest first, capped); triggers
for action (not held out) also go to the topic. The embedded default topic is a Redis Stream
(``mt:NS:topic:triggers``, capped with ``MAXLEN ~``) that consumers read with
``XREADGROUP``; each entry has ``trigger_id``, ``pattern``, ``user`` and
``trigger`` (canonical JSON). The id guard (``mt:NS:trigger:ID``), the log and the stream
append run in one Lua script (``publish_trigger.lua``), so a retried bundle or
a replay of the same file publishes nothing twice: exactly once in effect.
The stream is named by ``TopicSink``, the interface another topic (Kafka)
implements. A trigger whose user was erased at or after its first matched
event is not published (counter ``triggers_refused_erased``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam
import redis

from transforms import metrics
from transforms.redis_sink import (
    RETRY_FOR_S,
    BatchedRedisFn,
    canonical_json,
    key,
    run_batch,
    tombstone_key,
)

SCRIPT = (Path(__file__).parent / "publish_trigger.lua").read_text()
FLUSH_EVERY = 1000


@dataclass(frozen=True)
class TopicSink:
    """Where triggers for action are published.

    The embedded default is a Redis Stream in the same Redis as the profiles,
    appended in the same Lua script as the id guard, so guard and append are
    one atomic step. Another topic (Kafka) returns None from ``stream_key``
    and implements ``publish``, which gets the messages the guard let
    through. It runs after the guard: a retried bundle finds the guard set,
    so such a sink is at most once unless it delivers before the guard is
    written (not built yet).
    """

    maxlen: int = 100_000

    def stream_key(self, namespace: str) -> str | None:
        """The stream the guard script appends to, or None if ``publish`` does it."""
        return key(namespace, "topic", "triggers")

    def publish(self, messages: list[tuple[str, str]]) -> None:
        """Publish ``(trigger_id, json)`` messages (only for sinks without a stream key)."""


class _PublishFn(BatchedRedisFn):
    """Buffer one bundle's triggers and publish them in one pipelined batch."""

    flush_every = FLUSH_EVERY

    def __init__(
        self,
        url: str,
        namespace: str,
        ttl_seconds: int,
        log_size: int,
        topic,
        mirror=None,
        retry_for_s: float = RETRY_FOR_S,
    ):
        super().__init__(url, SCRIPT, retry_for_s)
        self._namespace = namespace
        self._ttl = ttl_seconds
        self._log_size = log_size
        self._topic = topic
        self._mirror = mirror
        self._mirrored = metrics.counter("triggers_mirrored")
        self._unmirrored = metrics.counter("triggers_not_mirrored")
        self._published = metrics.counter("triggers_published")
        self._repeated = metrics.counter("triggers_already_published")
        self._erased = metrics.counter("triggers_refused_erased")

    def write(self, batch):
        stream = self._topic.stream_key(self._namespace)
        calls = []
        for trigger in batch:
            user = trigger["user_id"]
            keys = [
                key(self._namespace, "trigger", trigger["trigger_id"]),
                key(self._namespace, "triggers", user),
                tombstone_key(self._namespace, user),
            ]
            if stream is not None and not trigger["holdout"]:
                keys.append(stream)
            args = [self._ttl, canonical_json(trigger), self._log_size, self._topic.maxlen]
            first = trigger.get("first_event_time", trigger["event_time"])
            args += [trigger["trigger_id"], trigger["pattern"], user, first]
            calls.append((keys, args))
        results = run_batch(self._client, self._script, calls, self._url)
        fresh = [t for t, result in zip(batch, results) if result == 1]
        erased = sum(1 for result in results if result == 2)
        self._published.inc(sum(1 for t in fresh if not t["holdout"]))
        self._erased.inc(erased)
        self._repeated.inc(len(batch) - len(fresh) - erased)
        messages = [(t["trigger_id"], canonical_json(t)) for t in fresh if not t["holdout"]]
        if stream is None:
            self._topic.publish(messages)
        if self._mirror is not None and messages:
            failed = self._mirror.publish(messages, kind="trigger")
            self._mirrored.inc(len(messages) - failed)
            self._unmirrored.inc(failed)


class WriteTriggers(beam.PTransform):
    """Triggers -> the user's trigger log in Redis and, unless held out, the topic.

    ``mirror`` (``transforms.kafka.KafkaTopicSink``): a Kafka topic that also gets
    every trigger the topic got, after the guard let it through.
    """

    def __init__(
        self,
        url: str,
        namespace: str,
        ttl_seconds: int,
        log_size: int = 50,
        topic: TopicSink | None = None,
        mirror=None,
        retry_for_s: float = RETRY_FOR_S,
    ):
        super().__init__()
        self._fn = _PublishFn(
            url, namespace, ttl_seconds, log_size, topic or TopicSink(), mirror, retry_for_s
        )

    def expand(self, triggers):
        return triggers | "Publish" >> beam.ParDo(self._fn)


def read_triggers(client: redis.Redis, namespace: str, after: str = "-", count: int | None = None):
    """Triggers on the default topic, oldest first: ``[(stream entry id, trigger JSON)]``."""
    start = after if after == "-" else f"({after}"
    entries = client.xrange(key(namespace, "topic", "triggers"), min=start, count=count)
    return [(entry_id.decode(), fields[b"trigger"].decode()) for entry_id, fields in entries]
