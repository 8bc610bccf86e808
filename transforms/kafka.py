"""Kafka in and out: the live source and the topics triggers and segment changes go to.

In: ``ReadFromKafkaTopic`` is Beam's Java ``KafkaIO.Read``, expanded by a Java
expansion service (``runners.local.flink.ExpansionService``; the Java SDK harness runs
it inside the Flink task, the EMBEDDED environment, so no Docker is needed).
Beam Python's own ``ReadFromKafka`` sends configuration fields
(dynamic_read_poll_interval_seconds, consumer_factory_fn_class) that the Kafka
IO this project runs (Beam 2.62, the newest whose Flink runner resolves here,
see ``runners/local/jvm/flink/pom.xml``) does not know, and the expansion fails
("missing a setter"); ``ReadFromKafkaTopic`` sends only fields that version
has. Records are timestamped with their Kafka CreateTime (``publish`` sets it
to the event time), so the watermark follows event time; a partition that is
caught up lets the watermark advance to the wall clock.

A message is one event: a JSON object (the ``schemas/event.avsc`` fields), or
Avro single-object encoding of that schema. Anything else becomes a dead letter
(reason ``undecodable_message``) naming the topic.

Out: ``KafkaTopicSink`` mirrors what a Redis guard script let through onto the
Redis topic streams (triggers, segment changes) to a Kafka topic, with a
confluent-kafka producer, keyed by the message id so consumers can dedupe, a
header ``kind`` telling triggers from segment changes, and waits for the
broker's acks before the bundle ends. The mirror is at most once: the guard is
already set when it publishes, so a message the broker refuses is logged and
counted (``triggers_not_mirrored``, ``segment_changes_not_mirrored``), not
retried; the Redis streams and logs keep every one. Beam's cross-language
``WriteToKafka`` is not used: what is published is decided by the guard, inside
the same DoFn, and a second Java stage per sink would cost a data-plane round
trip for a handful of messages.
"""

from __future__ import annotations

import logging
import re
import threading
import typing
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.transforms.external import ExternalTransform, NamedTupleBasedPayloadBuilder

from schemas.codecs import EVENT, SINGLE_OBJECT_MAGIC, decode_single
from transforms.sources import ERROR, LINE, RECORD

log = logging.getLogger(__name__)
READ_URN = "beam:transform:org.apache.beam:kafka_read_without_metadata:v1"
BYTES = "org.apache.kafka.common.serialization.ByteArrayDeserializer"
_URL = re.compile(r"^kafka://(?P<hosts>[A-Za-z0-9.\-_\[\]:,]+)/(?P<topic>[A-Za-z0-9._\-]{1,249})$")


# The fields this read sets, each one a setter of KafkaIO.Read.External.Configuration in
# Beam 2.62 (the expansion fails on a field without one). Those of its fields not sent
# keep their defaults: start/stop read time, max records, max read time, consumer
# polling timeout, redistribute, redistribute_num_keys, allow_duplicates.
# Functional form: Beam infers the payload schema from real types, and this module's
# ``from __future__ import annotations`` would turn class-syntax annotations into strings.
ReadSchema = typing.NamedTuple(  # noqa: UP014
    "ReadSchema",
    [
        ("consumer_config", typing.Mapping[str, str]),
        ("topics", list[str]),
        ("key_deserializer", str),
        ("value_deserializer", str),
        ("commit_offset_in_finalize", bool),
        ("timestamp_policy", str),
    ],
)


class KafkaUrlError(ValueError):
    """A ``kafka://`` URL that does not parse (the message names the option)."""


def parse_url(url: str, option: str = "--source") -> tuple[str, str]:
    """``kafka://HOST:PORT[,HOST:PORT]/TOPIC`` -> (bootstrap servers, topic)."""
    match = _URL.match(url or "")
    if match is None:
        raise KafkaUrlError(
            f"{option} {url!r} is not kafka://HOST:PORT/TOPIC "
            "(topic: letters, digits, '.', '_' and '-')"
        )
    return match["hosts"], match["topic"]


@dataclass(frozen=True)
class _Decode:
    """A Kafka message value -> a raw record of ``transforms.sources``."""

    source: str

    def __call__(self, value: bytes):
        if value is None:
            return (self.source, "", ERROR, _undecodable("empty message (a tombstone)", b""))
        stripped = value.lstrip()
        if stripped.startswith(b"{"):
            return (self.source, "", LINE, value)
        if value.startswith(SINGLE_OBJECT_MAGIC):
            try:
                record = decode_single(value, EVENT)
            except Exception as exc:  # any decoding failure is the message's fault
                return (self.source, "", ERROR, _undecodable(f"Avro: {exc}", value))
            return (self.source, "", RECORD, record)
        return (
            self.source,
            "",
            ERROR,
            _undecodable("neither a JSON object nor Avro single-object encoding", value),
        )


def _undecodable(detail: str, raw: bytes) -> dict:
    return {"reason": "undecodable_message", "detail": detail, "raw": raw[:4096]}


class ReadFromKafkaTopic(beam.PTransform):
    """Raw records ``(source, offset, kind, payload)`` of a Kafka topic, event-timed.

    ``group_id``: with one, offsets are committed as checkpoints finalize and a
    restarted job goes on where it stopped; without, it starts at the earliest
    offset.
    """

    def __init__(self, bootstrap: str, topic: str, expansion_service: str, group_id: str = ""):
        super().__init__()
        self._bootstrap = bootstrap
        self._topic = topic
        self._expansion_service = expansion_service
        self._group_id = group_id

    def expand(self, pipeline):
        config = {"bootstrap.servers": self._bootstrap, "auto.offset.reset": "earliest"}
        if self._group_id:
            config["group.id"] = self._group_id
        payload = ReadSchema(
            consumer_config=config,
            topics=[self._topic],
            key_deserializer=BYTES,
            value_deserializer=BYTES,
            commit_offset_in_finalize=bool(self._group_id),
            timestamp_policy="CreateTime",
        )
        read = ExternalTransform(
            READ_URN, NamedTupleBasedPayloadBuilder(payload), self._expansion_service
        )
        return (
            pipeline
            | "KafkaIO" >> read
            | "ToRawRecords"
            >> beam.MapTuple(
                lambda _key, value, decode=_Decode(f"kafka:{self._topic}"): decode(value)
            )
        )


_PRODUCERS: dict[str, object] = {}
_LOCK = threading.Lock()


def producer(bootstrap: str):
    """One confluent-kafka producer per worker process and bootstrap address."""
    from confluent_kafka import Producer

    with _LOCK:
        found = _PRODUCERS.get(bootstrap)
        if found is None:
            found = Producer(
                {
                    "bootstrap.servers": bootstrap,
                    "enable.idempotence": True,
                    "linger.ms": 5,
                    "compression.type": "lz4",
                    "log_level": 2,  # delivery failures are reported per message
                }
            )
            _PRODUCERS[bootstrap] = found
        return found


def deliver(
    bootstrap: str, topic: str, messages: list[tuple[str, str]], kind: str, timeout_s=60.0
) -> list[tuple[str, str]]:
    """Produce ``(key, value)`` messages, wait for the acks; returns ``(key, error)`` failures.

    Each message carries the header ``kind`` (``trigger``, ``segment_change``), so
    one topic can hold both.
    """
    client = producer(bootstrap)
    failed: list[tuple[str, str]] = []

    def on_delivery(err, message):
        if err is not None:
            failed.append((message.key().decode(), str(err)))

    headers = [("kind", kind.encode())]
    for message_key, value in messages:
        produce(
            client, topic, key=message_key, value=value, headers=headers, on_delivery=on_delivery
        )
    remaining = client.flush(timeout_s)
    if remaining:
        failed.append(("*", f"{remaining} messages not acknowledged in {timeout_s} s"))
    return failed


def produce(client, topic: str, **message) -> None:
    """``client.produce`` that waits while the producer's local queue is full."""
    while True:
        try:
            client.produce(topic, **message)
            return
        except BufferError:  # the local queue is full: let it drain
            client.poll(0.1)


@dataclass(frozen=True)
class KafkaTopicSink:
    """A Kafka topic that guarded messages (triggers, segment changes) are mirrored to."""

    bootstrap: str
    topic: str

    def publish(self, messages: list[tuple[str, str]], kind: str) -> int:
        """Deliver ``messages``; returns how many failed (each failure is logged)."""
        failed = deliver(self.bootstrap, self.topic, messages, kind)
        for message_key, error in failed[:5]:
            log.error(
                "kafka topic %s: %s %s not delivered: %s", self.topic, kind, message_key, error
            )
        # "*": messages left unacknowledged, which ones unknown: count them all as failed.
        return len(messages) if any(k == "*" for k, _ in failed) else len(failed)
