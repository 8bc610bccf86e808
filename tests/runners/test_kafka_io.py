"""Kafka in and out against a real broker: publish, record, the topic mirror, start checks."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest
from confluent_kafka import Consumer, TopicPartition

from runners import cli, kafka_cmd, live, replay
from runners.local import flink, jvm
from runners.replay import InputError
from tests.conftest import granted_config, key_source_of_tests
from tests.redis_state import namespace_state
from transforms.kafka import KafkaTopicSink, KafkaUrlError, parse_url

pytestmark = pytest.mark.kafka


def _consume(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0) -> list:
    """Every message of ``topic`` from the start (at least ``expected`` of them)."""
    import time

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"test-{topic}", "enable.auto.commit": False}
    )
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, 0) for p in metadata.partitions])
    messages, deadline = [], time.monotonic() + timeout_s
    while len(messages) < expected and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            messages.append(message)
    consumer.close()
    return messages


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A generated event file and a JSON lines file of records that are not events."""
    folder = tmp_path_factory.mktemp("kafka-io")
    events = folder / "events.avro"
    assert (
        cli.main(
            ["generate", "--events", "1500", "--users", "40", "--seed", "9"]
            + [
                "--out",
                str(events),
            ]
        )
        == 0
    )
    bad = folder / "bad.jsonl"
    bad.write_text(
        "\n".join(
            [
                '{"event_id": "x1", "event_type": "click", "timestamp": 1704067200000}',
                "not json at all",
                '{"event_id": "x2", "user_id": "u9", "event_type": "click", "timestamp": 17}',
            ]
        )
        + "\n"
    )
    return {"events": events, "bad": bad, "folder": folder}


def test_kafka_urls_parse_or_fail_naming_the_option():
    assert parse_url("kafka://127.0.0.1:9092/events") == ("127.0.0.1:9092", "events")
    assert parse_url("kafka://a:1,b:2/t.x-y_z") == ("a:1,b:2", "t.x-y_z")
    for bad in ("kafka://host:1", "redis://h:1/t", "kafka://h:1/a b", "kafka:///t"):
        with pytest.raises(KafkaUrlError, match="--sink"):
            parse_url(bad, "--sink")


def test_flink_jobs_finish_bundles_before_checkpoints_unless_told_not_to(tmp_path, capsys):
    def options(*beam_args):
        request = live.RunRequest(
            source="kafka://127.0.0.1:9/t", redis_url="redis://127.0.0.1:9", beam_args=beam_args
        )
        return live._options(request, "127.0.0.1:9", tmp_path).get_all_options()

    assert options()["finish_bundle_before_checkpointing"] is True
    assert (
        options("--finish_bundle_before_checkpointing=false")["finish_bundle_before_checkpointing"]
        is False
    )
    with pytest.raises(SystemExit):
        options("--finish_bundle_before_checkpointing=sometimes")
    assert "--finish_bundle_before_checkpointing" in capsys.readouterr().err


def test_live_jobs_close_bundles_after_50_ms_where_the_workers_are_ours(tmp_path):
    def options(*beam_args, worker_pool=False):
        request = live.RunRequest(
            source="kafka://127.0.0.1:9/t",
            redis_url="redis://127.0.0.1:9",
            beam_args=beam_args,
            worker_pool=worker_pool,
        )
        return live._options(request, "127.0.0.1:9", tmp_path).get_all_options()

    loopback = options()
    assert loopback["max_bundle_time_mills"] == 50 and loopback["auto_watermark_interval"] == 50
    assert loopback["max_cache_memory_usage_mb"] == 256
    pool = ("--environment_type=EXTERNAL", "--environment_config=127.0.0.1:9")
    assert options(*pool, worker_pool=True)["max_bundle_time_mills"] == 50
    # Somebody else's pool (Beam's own has no state cache): Beam's default bundles.
    assert options(*pool)["max_bundle_time_mills"] is None
    given = options("--max_bundle_time_mills=500", "--auto_watermark_interval=1000")
    assert given["max_bundle_time_mills"] == 500 and given["auto_watermark_interval"] == 1000


def test_run_warns_at_start_when_the_sdk_and_the_jars_beam_are_an_untested_pair(
    tmp_path, monkeypatch, caplog
):
    assert flink.untested_pair("2.77.0", "2.62.0") is None
    warning = flink.untested_pair("2.78.0", "2.62.0")
    assert "Beam Python 2.78.0 with Beam Java 2.62.0" in warning
    assert "not run" in warning and "tested: Python 2.77.0 with Java 2.62.0" in warning
    if flink.java_versions() is not None:  # the jars fetched here: bumping the pom needs the table
        assert flink.untested_pair() is None, flink.untested_pair()

    # The job server's Beam Java is read from the fetched runner jar's name.
    monkeypatch.setattr(jvm, "BUILD", tmp_path)
    lib = tmp_path / "flink" / "lib"
    assert flink.java_versions() is None and flink.untested_pair("9.0.0") is None
    lib.mkdir(parents=True)
    for name in ("beam-runners-core-java-2.61.0.jar", "beam-runners-flink-1.18-2.61.0.jar"):
        (lib / name).touch()
    assert flink.java_versions() == ("2.61.0", "1.18")
    assert flink.java_versions(lib) == ("2.61.0", "1.18")

    # run() logs it first thing, then goes on (here to fail on the request).
    request = live.RunRequest(
        source="kafka://127.0.0.1:9/t", redis_url="redis://127.0.0.1:9", parallelism=0
    )
    with (
        caplog.at_level(logging.WARNING, logger="runners.live"),
        pytest.raises(InputError, match="--parallelism"),
    ):
        live.run(request)
    assert "with Beam Java 2.61.0" in caplog.text and "have not run" in caplog.text
    # A job server and an expansion service given by address: not this checkout's jars.
    caplog.clear()
    given = dataclasses.replace(
        request, job_endpoint="127.0.0.1:9", expansion_service="127.0.0.1:9"
    )
    with caplog.at_level(logging.WARNING, logger="runners.live"), pytest.raises(InputError):
        live.run(given)
    assert "have not run" not in caplog.text
    assert live.warn_untested_pair(dataclasses.replace(given, expansion_service=None))


def test_publish_orders_by_event_time_keys_by_user_and_stamps_the_event_time(
    kafka_server, topic, recorded
):
    summary = kafka_cmd.publish(
        [str(recorded["events"]), str(recorded["bad"])],
        kafka_server.bootstrap,
        topic,
        partitions=3,
    )
    assert summary["created"] and summary["messages"] == 1503 and summary["not_events"] == 3
    messages = _consume(kafka_server.bootstrap, topic, 1503)
    assert len(messages) == 1503
    by_partition: dict[int, list] = {}
    for message in messages:
        by_partition.setdefault(message.partition(), []).append(message)
    assert len(by_partition) > 1
    users_seen: dict[bytes, int] = {}
    for partition, in_order in by_partition.items():
        stamps = [m.timestamp()[1] for m in in_order]
        assert stamps == sorted(stamps), f"partition {partition} is not in event-time order"
        for message in in_order:
            if message.key() is not None:
                # a user's events all go to one partition
                assert users_seen.setdefault(message.key(), partition) == partition
    events = {}
    for message in messages:
        if message.key() is not None:
            event = json.loads(message.value())
            events[event["event_id"]] = event
            if event["event_id"] != "x2":  # x2's time is out of range: stamped as the first
                assert message.timestamp()[1] == event["timestamp"]
    assert len(events) == 1500 - 15 + 1  # retried duplicates share an id; x2 has a user


def test_a_recorded_topic_replays_to_the_same_redis_state(
    kafka_server, topic, recorded, redis_url, redis_client, tmp_path
):
    inputs = [str(recorded["events"]), str(recorded["bad"])]
    kafka_cmd.publish(inputs, kafka_server.bootstrap, topic, fmt="avro")
    out = tmp_path / "recorded.avro"
    summary = kafka_cmd.record(kafka_server.bootstrap, topic, str(out), idle_s=2.0)
    assert summary["messages"] == 1503
    assert summary["events"] == 1500 and summary["rejected"] == 3
    assert summary["rejected_by_reason"] == {
        "missing_user": 1,
        "undecodable_message": 1,
        "timestamp_out_of_range": 1,
    }
    states = {}
    letters = {}
    for name, files in (
        ("original", inputs),
        ("recorded", [str(out), summary["rejected_file"]]),
    ):
        request = replay.ReplayRequest(
            inputs=files,
            redis_url=redis_url,
            namespace=f"{topic}-{name}",
            config=granted_config(),
            dead_letters_dir=str(tmp_path / f"dead-{name}"),
            key_source=key_source_of_tests(),
        )
        result = replay.run(request)
        letters[name] = result["dead_letters"]
        state = namespace_state(redis_client, request.namespace)
        states[name] = {k.split(":", 2)[2]: v for k, v in state.items()}
    assert len(states["original"]) > 40
    assert states["original"] == states["recorded"]
    assert letters["original"] == letters["recorded"] == 3


def test_the_mirror_delivers_with_the_kind_header(kafka_server, topic):
    kafka_cmd.ensure_topic(kafka_server.bootstrap, topic)
    sink = KafkaTopicSink(kafka_server.bootstrap, topic)
    assert sink.publish([("t1", '{"a": 1}'), ("t2", '{"a": 2}')], kind="trigger") == 0
    assert sink.publish([("c1", '{"b": 1}')], kind="segment_change") == 0
    messages = _consume(kafka_server.bootstrap, topic, 3)
    seen = [(m.key(), dict(m.headers())["kind"], m.value()) for m in messages]
    assert seen == [
        (b"t1", b"trigger", b'{"a": 1}'),
        (b"t2", b"trigger", b'{"a": 2}'),
        (b"c1", b"segment_change", b'{"b": 1}'),
    ]


def test_run_fails_at_start_naming_a_missing_topic(kafka_server, redis_url):
    request = live.RunRequest(
        source=kafka_server.url("no-such-topic"),
        redis_url=redis_url,
        key_source=key_source_of_tests(),
    )
    with pytest.raises(InputError, match="--source: topic 'no-such-topic' does not exist"):
        live.check(request)
    request.source = "kafka://127.0.0.1:1/x"
    with pytest.raises(InputError, match="cannot reach Kafka at --source"):
        live.check(request)
    request.source = "kafka:/nope"
    with pytest.raises(InputError, match="--source 'kafka:/nope' is not kafka://"):
        live.check(request)


def test_cli_publish_and_record_report_bad_urls(capsys, tmp_path):
    assert cli.main(["publish", str(tmp_path / "x.avro"), "--to", "kafka://h/"]) == 2
    assert "--to 'kafka://h/' is not kafka://" in capsys.readouterr().err
    code = cli.main(["record", "--source", "nope", "--out", str(tmp_path / "r.avro")])
    assert code == 2 and "--source 'nope'" in capsys.readouterr().err
