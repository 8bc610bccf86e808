"""``microtarget publish``, ``record`` and ``kafka``: recorded files to a topic and back.

::

    microtarget publish FILES... --to kafka://HOST:PORT/TOPIC
        [--rate EVENTS_PER_S | --speed FACTOR] [--partitions N] [--format json|avro]
    microtarget record --source kafka://HOST:PORT/TOPIC --out FILE.avro
        [--idle SECONDS] [--max-records N]
    microtarget kafka {up,down,url}

``publish`` reads the files as ``replay`` does, orders the records by event
time, and produces one message per record: the event as a JSON object (or,
with ``--format avro``, Avro single-object encoding of ``schemas/event.avsc``),
keyed by the user so that each user's events stay in one partition and in
order, with the event time as the message's CreateTime (the live pipeline's
event time and watermark come from it). Records that are not events are
published as they are, so the pipeline dead-letters them. ``--rate`` paces the
messages at a fixed rate, ``--speed`` at a multiple of their recorded timing;
with neither, as fast as the broker takes them. A topic that does not exist is
created, keeping its messages forever (recorded streams have old times).

``record`` reads a topic from its earliest offset until no message came for
``--idle`` seconds after the end (or ``--max-records``) and writes the events
to an Avro container file ``replay`` accepts; messages that are not valid
events go, one per line, to ``FILE.rejected.jsonl``. Replaying both files
gives the dead letters a live run gives (with other sources and offsets;
a message that is not JSON at all is ``invalid_json`` there).

``kafka up`` starts a local broker (``runners.local.kafka_broker``) in
``.microtarget/kafka`` and prints its address; ``kafka down`` stops it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from apache_beam.io.filesystems import FileSystems

from runners import DEFAULT_HOME
from transforms.kafka import KafkaUrlError, parse_url

KAFKA_DIR = DEFAULT_HOME / "kafka"


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
        return value

    return parse


def register(subparsers) -> None:
    """Add ``publish``, ``record`` and ``kafka`` to an argparse subparsers object."""
    publish = subparsers.add_parser(
        "publish",
        help="play recorded event files into a Kafka topic, in event-time order",
        description="Reads the files as replay does, orders the records by event time and "
        "produces one message per record, keyed by the user, stamped with the event time. "
        "Records that are not events are published as they are (the pipeline dead-letters "
        "them). A topic that does not exist is created, keeping its messages forever.",
    )
    publish.add_argument("files", nargs="+", help="Avro or JSON lines files; globs allowed")
    publish.add_argument(
        "--to", required=True, metavar="kafka://HOST:PORT/TOPIC", help="the topic to write"
    )
    pace = publish.add_mutually_exclusive_group()
    pace.add_argument(
        "--rate",
        type=_positive(float),
        metavar="EVENTS_PER_S",
        help="send at this fixed rate (default: as fast as the broker takes them)",
    )
    pace.add_argument(
        "--speed",
        type=_positive(float),
        metavar="FACTOR",
        help="send at this multiple of the recorded pace (2: twice as fast)",
    )
    publish.add_argument(
        "--partitions", type=_positive(int), default=1, help="for a new topic (default: 1)"
    )
    publish.add_argument(
        "--format",
        choices=["json", "avro"],
        default="json",
        help="message value: a JSON object, or Avro single-object encoding of "
        "schemas/event.avsc (default: json)",
    )
    publish.add_argument(
        "--now",
        action="store_true",
        help="stamp messages with the time they are sent, not the recorded time "
        "(a live feed for latency measurements)",
    )
    publish.set_defaults(func=_publish)

    record = subparsers.add_parser(
        "record",
        help="record a Kafka topic into an Avro event file that replay accepts",
        description="Reads the topic from its earliest offset until no message came for "
        "--idle seconds (or --max-records were read) and writes the events to an Avro "
        "file; messages that are not valid events go to FILE.rejected.jsonl.",
    )
    record.add_argument(
        "--source", required=True, metavar="kafka://HOST:PORT/TOPIC", help="the topic to read"
    )
    record.add_argument("--out", required=True, metavar="FILE.avro", help="the event file")
    record.add_argument(
        "--idle",
        type=_positive(float),
        default=5.0,
        help="stop after this many seconds without a message (default: %(default)s)",
    )
    record.add_argument(
        "--max-records", type=_positive(int), default=None, help="stop after this many messages"
    )
    record.set_defaults(func=_record)

    kafka = subparsers.add_parser(
        "kafka",
        help="a local Kafka broker: start, stop, address",
        description="A local Kafka broker (KRaft) on 127.0.0.1, from the jars `make jvm-deps` "
        "fetched, with its data in .microtarget/kafka: `up` starts it (or finds it running) "
        "and prints its address, `url` prints the address, `down` stops it.",
    )
    kafka.add_argument("action", choices=["up", "down", "url"], help="up, down or url")
    kafka.set_defaults(func=_kafka)


# ---------------------------------------------------------------- publish


def ordered_records(patterns: list[str]) -> list[tuple[int | None, tuple]]:
    """``(event time or None, raw record)`` of the files, records that are not events first."""
    from runners.replay import _event_time
    from transforms.sources import iter_file

    timed = []
    for pattern in patterns:
        for metadata in FileSystems.match([pattern])[0].metadata_list:
            for raw in iter_file(metadata.path):
                timed.append((_event_time(raw), raw))
    timed.sort(key=lambda pair: -1 if pair[0] is None else pair[0])
    return timed


def message_of(raw: tuple, fmt: str) -> tuple[bytes | None, bytes]:
    """``(key, value)`` of one raw record: the user as key, the event as value."""
    from schemas.codecs import EVENT, SchemaError, encode_single
    from transforms.sources import ERROR, LINE

    _, _, kind, payload = raw
    if kind == LINE:
        try:
            record = json.loads(payload)
        except (ValueError, RecursionError):
            return None, payload
        return _user_of(record), payload
    if kind == ERROR:
        return None, payload.get("raw") or b"(unreadable record)"
    if fmt == "avro":
        try:
            return _user_of(payload), encode_single(payload, EVENT)
        except SchemaError:
            pass  # not an event: as JSON, so the pipeline says why
    return _user_of(payload), json.dumps(payload, ensure_ascii=False).encode()


def _user_of(record) -> bytes | None:
    if not isinstance(record, dict):
        return None
    user = record.get("user_id") or record.get("anonymous_id")
    return str(user).encode() if user is not None else None


def ensure_topic(bootstrap: str, topic: str, partitions: int = 1) -> bool:
    """Create ``topic`` (kept forever) unless it exists; True if it was created."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    if topic in admin.list_topics(timeout=10).topics:
        return False
    config = {"retention.ms": "-1", "message.timestamp.type": "CreateTime"}
    future = admin.create_topics([NewTopic(topic, partitions, 1, config=config)])[topic]
    try:
        future.result(timeout=30)
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise
        return False
    return True


def publish(
    patterns: list[str],
    bootstrap: str,
    topic: str,
    rate: float | None = None,
    speed: float | None = None,
    fmt: str = "json",
    partitions: int = 1,
    now: bool = False,
    on_sent=None,
) -> dict:
    """Publish the files' records to ``topic``; returns counts and timing.

    ``on_sent(index, wall_time_ms, key)`` is called after each message is handed
    to the producer (benchmarks measure latency from it).
    """
    from confluent_kafka import Producer

    from transforms.kafka import produce

    records = ordered_records(patterns)
    created = ensure_topic(bootstrap, topic, partitions)
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5}
    )
    failures: list[str] = []

    def on_delivery(err, _message):
        if err is not None:
            failures.append(str(err))

    first_event = next((ts for ts, _ in records if ts is not None), 0)
    started = time.monotonic()
    for index, (event_time, raw) in enumerate(records):
        if rate is not None:
            due = started + index / rate
        elif speed is not None and event_time is not None:
            due = started + (event_time - first_event) / 1000.0 / speed
        else:
            due = None
        if due is not None:
            wait = due - time.monotonic()
            if wait > 0:
                producer.poll(0)
                time.sleep(wait)
        key, value = message_of(raw, fmt)
        sent_ms = int(time.time() * 1000)
        stamp = sent_ms if now else (event_time if event_time is not None else first_event)
        produce(producer, topic, key=key, value=value, timestamp=stamp, on_delivery=on_delivery)
        if on_sent is not None:
            on_sent(index, sent_ms, key)
    remaining = producer.flush(120)
    wall = time.monotonic() - started
    if remaining or failures:
        raise RuntimeError(
            f"{remaining + len(failures)} of {len(records)} messages not delivered to "
            f"{topic}: {failures[:1]}"
        )
    return {
        "topic": topic,
        "created": created,
        "messages": len(records),
        "not_events": sum(1 for ts, _ in records if ts is None),
        "wall_seconds": round(wall, 3),
        "messages_per_second": round(len(records) / wall, 1) if wall > 0 else 0.0,
    }


def _publish(args) -> int:
    from runners.replay import InputError, check_inputs

    try:
        bootstrap, topic = parse_url(args.to, "--to")
        check_inputs(args.files)
    except (KafkaUrlError, InputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        summary = publish(
            args.files,
            bootstrap,
            topic,
            args.rate,
            args.speed,
            args.format,
            args.partitions,
            args.now,
        )
    except Exception as exc:  # KafkaException and delivery failures
        print(f"error: publishing to {args.to}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


# ---------------------------------------------------------------- record


def record(
    bootstrap: str, topic: str, out: str, idle_s: float = 5.0, max_records: int | None = None
) -> dict:
    """Read ``topic`` from the start into ``out`` (events) and ``out``.rejected.jsonl."""
    import uuid

    from confluent_kafka import Consumer, KafkaError

    from models.validation import validate_event
    from schemas.codecs import write_container
    from transforms.kafka import _Decode
    from transforms.sources import ERROR, LINE

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"microtarget-record-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    decode = _Decode(f"kafka:{topic}")
    events: list[dict] = []
    rejected = Path((out[:-5] if out.endswith(".avro") else out) + ".rejected.jsonl")
    reasons: dict[str, int] = {}
    seen = 0
    last = time.monotonic()
    with open(rejected, "w", encoding="utf-8") as bad:
        try:
            while max_records is None or seen < max_records:
                message = consumer.poll(0.5)
                if message is None:
                    if time.monotonic() - last >= idle_s:
                        break
                    continue
                if message.error() is not None:
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise RuntimeError(f"reading {topic}: {message.error()}")
                last = time.monotonic()
                seen += 1
                _, _, kind, payload = decode(message.value())
                if kind == ERROR:
                    reason, line = payload["reason"], payload["raw"].decode("utf-8", "replace")
                else:
                    try:
                        candidate = json.loads(payload) if kind == LINE else payload
                    except (ValueError, RecursionError):
                        candidate = None
                    event, error = validate_event(candidate)
                    if error is None:
                        events.append(candidate)
                        continue
                    reason = error[0]
                    line = json.dumps(candidate, ensure_ascii=False, default=str)
                    if kind == LINE and candidate is None:
                        line = payload.decode("utf-8", "replace")
                reasons[reason] = reasons.get(reason, 0) + 1
                bad.write(line.replace("\n", " ") + "\n")
        finally:
            consumer.close()
    written = write_container(out, events)
    return {
        "topic": topic,
        "messages": seen,
        "events": written,
        "rejected": sum(reasons.values()),
        "rejected_by_reason": reasons,
        "out": out,
        "rejected_file": str(rejected),
    }


def _record(args) -> int:
    try:
        bootstrap, topic = parse_url(args.source, "--source")
    except KafkaUrlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        summary = record(bootstrap, topic, args.out, args.idle, args.max_records)
    except Exception as exc:  # KafkaException, unreadable topic
        print(f"error: recording {args.source}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


# ---------------------------------------------------------------- kafka


def _kafka(args) -> int:
    from runners.local import kafka_broker as local_kafka

    if args.action == "down":
        stopped = local_kafka.stop_embedded(KAFKA_DIR)
        print("stopped" if stopped else "not running")
        return 0
    if args.action == "url" and local_kafka._read_state(KAFKA_DIR.resolve()) is None:
        print("not running (microtarget kafka up starts it)", file=sys.stderr)
        return 1
    print(f"kafka://{local_kafka.ensure_embedded(KAFKA_DIR)}/TOPIC")
    return 0
