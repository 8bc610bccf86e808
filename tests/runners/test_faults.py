"""Faults on real components, each run compared with a fault-free run of the same events.

* Replays: Redis restarted while a replay writes. The sinks retry a write with
  exponential backoff while Redis cannot be reached (``redis.retry_for``, a minute
  by default) and their writes are idempotent, so a replay that outlives a
  restart leaves the namespace a fault-free replay leaves; with a budget shorter
  than the outage it fails, naming Redis.
* Live jobs on Flink reading Kafka (the reference: a batch replay of the same
  file): Redis stopped for 10 s, the Kafka broker stopped for 10 s, and a
  standalone cluster's TaskManager killed (the job restarts from its last
  checkpoint on a new one). Each ends with the batch replay's namespace and each
  trigger once on the mirror topic.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
import time
from collections import Counter

import pytest
import redis
import yaml

from pipelines.config import parse_config
from runners import kafka_cmd, live, replay
from runners.local.redis_server import RedisServer
from tests.conftest import ROOT, LiveJob, generate_events, key_source_of_tests
from tests.redis_state import namespace_state
from tests.runners.test_kafka_io import _consume
from tests.test_patterns_taobao import _comparable

pytestmark = pytest.mark.faults
OUTAGE_S = 4.0


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    return generate_events(tmp_path_factory.mktemp("gen"), 4000, 80, 5)


@pytest.fixture
def server(tmp_path):
    # Saves on SIGTERM (a save point is set), so a restart keeps what was written.
    started = RedisServer(tmp_path / "redis", extra=["--save", "3600", "1"]).start()
    yield started
    started.stop()


def _request(
    generated, server, namespace: str, tmp_path, retry_for: str | None = None
) -> replay.ReplayRequest:
    data = yaml.safe_load((ROOT / "examples" / "config.yaml").read_text())
    if retry_for is not None:
        data.setdefault("redis", {})["retry_for"] = retry_for
    return replay.ReplayRequest(
        inputs=[str(generated)],
        redis_url=server.url,
        namespace=namespace,
        config=parse_config(data, "examples/config.yaml", ROOT / "examples"),
        dead_letters_dir=str(tmp_path / f"dead-{namespace}"),
        key_source=key_source_of_tests(),
    )


class _Outage(threading.Thread):
    """Once the namespace holds a key, stops ``server`` (Redis, or the Kafka broker of
    ``watch_url``'s job: SIGTERM, by its PID) for ``outage_s`` seconds and starts it
    again on the same port and data."""

    def __init__(self, server, namespace: str, outage_s: float = OUTAGE_S, watch_url=None):
        super().__init__(daemon=True)
        self.server, self.namespace, self.outage_s = server, namespace, outage_s
        self.watch_url = watch_url or server.url
        self.keys_at_stop = None
        self.restarted_at = None

    def run(self):
        client = redis.Redis.from_url(self.watch_url, socket_timeout=5)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if next(client.scan_iter(match=f"mt:{self.namespace}:*", count=1000), None):
                break
            time.sleep(0.02)
        self.keys_at_stop = sum(1 for _ in client.scan_iter(match=f"mt:{self.namespace}:*"))
        client.close()
        self.server.stop()
        time.sleep(self.outage_s)
        self.server.start()
        self.restarted_at = time.monotonic()


def test_a_replay_rides_out_a_redis_restart_and_leaves_a_fault_free_namespace(
    generated, server, tmp_path
):
    replay.run(_request(generated, server, "clean", tmp_path))
    outage = _Outage(server, "faulty")
    outage.start()
    summary = replay.run(_request(generated, server, "faulty", tmp_path))
    finished = time.monotonic()
    outage.join(timeout=60)
    assert outage.restarted_at is not None and outage.restarted_at < finished
    client = redis.Redis.from_url(server.url)
    clean = namespace_state(client, "clean")
    # The replay went on writing after the restart ...
    assert 0 < outage.keys_at_stop < len(clean)
    # ... and nothing was lost or written twice.
    assert namespace_state(client, "faulty", rename_to="clean") == clean
    assert summary["dead_letters"] == 0 and summary["events_read"] == 4000
    client.close()


def test_an_outage_longer_than_the_retries_fails_the_replay_naming_redis(
    generated, server, tmp_path
):
    # redis.retry_for 500ms: that this fails shows that the outage falls while the
    # replay writes.
    outage = _Outage(server, "short")
    outage.start()
    with pytest.raises(
        Exception, match=rf"writing \d+ records to redis://127\.0\.0\.1:{server.port}"
    ):
        replay.run(_request(generated, server, "short", tmp_path, retry_for="500ms"))
    outage.join(timeout=60)


LIVE_OUTAGE_S = 10.0
LIVE_SETTLED_S = 120


def _live_config():
    data = yaml.safe_load((ROOT / "examples" / "config.yaml").read_text())
    data["models"]["enabled"] = []  # as in tests/runners/test_flink_kafka.py
    return parse_config(data, "examples/config.yaml without models", ROOT / "examples")


def _reference(generated, redis_url: str, config, tmp_path) -> tuple[dict, set, int]:
    """A batch replay into ``clean``: its state, its trigger ids, its segment changes."""
    summary = replay.run(
        replay.ReplayRequest(
            inputs=[str(generated)],
            redis_url=redis_url,
            namespace="clean",
            config=config,
            dead_letters_dir=str(tmp_path / "dead-clean"),
            key_source=key_source_of_tests(),
        )
    )
    assert summary["triggers_published"] > 50
    client = redis.Redis.from_url(redis_url)
    clean = _comparable(client, "clean")
    triggers = {f[b"trigger_id"] for _, f in client.xrange("mt:clean:topic:triggers")}
    changes = client.xlen("mt:clean:topic:segments")
    client.close()
    return clean, triggers, changes


def _live_through(outage: _Outage, request: live.RunRequest, clean: dict) -> float:
    """Run the live job with ``outage`` until its namespace equals ``clean`` (or settles
    unequal), cancel it; the seconds from the restart until it was equal."""
    outage.start()
    job = LiveJob(request).start()
    client = redis.Redis.from_url(request.redis_url, socket_timeout=10)
    seen = {"state": None, "since": time.monotonic(), "equal_at": None}
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            job.check()
            time.sleep(2)
            if outage.restarted_at is None:
                continue
            try:
                state = _comparable(client, request.namespace)
            except redis.exceptions.ConnectionError:
                continue
            if state == clean:
                seen["equal_at"] = time.monotonic()
                break
            if state != seen["state"]:
                seen.update(state=state, since=time.monotonic())
            elif time.monotonic() - seen["since"] > LIVE_SETTLED_S:
                break  # settled, and not equal
    finally:
        job.stop()
    job.assert_cancelled()
    assert 0 < outage.keys_at_stop < len(clean)
    final = _comparable(client, request.namespace)
    client.close()
    assert final == clean, _difference(clean, final)
    return seen["equal_at"] - outage.restarted_at


def _mirrored_once(bootstrap: str, mirror: str, triggers: set, changes: int) -> None:
    """The mirror topic holds each trigger of the reference once, and as many changes."""
    # One more than were published: whatever the topic holds within the timeout.
    total = len(triggers) + changes
    messages = _consume(bootstrap, mirror, total + 1, timeout_s=30)
    kinds = Counter(dict(message.headers())["kind"] for message in messages)
    assert kinds == {b"trigger": len(triggers), b"segment_change": changes}
    mirrored = Counter(
        message.key() for message in messages if dict(message.headers())["kind"] == b"trigger"
    )
    assert set(mirrored) == triggers
    assert max(mirrored.values()) == 1  # none twice


def _live_request(kafka, topic: str, mirror: str, redis_url: str, tmp_path) -> live.RunRequest:
    return live.RunRequest(
        source=kafka.url(topic),
        sink=kafka.url(mirror),
        redis_url=redis_url,
        namespace="faulty",
        config=_live_config(),
        group_id=f"g-{topic}",
        dead_letters_dir=str(tmp_path / "dead-live"),
        key_source=key_source_of_tests(),
        work_dir=str(tmp_path / "flink"),
        checkpoint_interval_ms=1000,
    )


@pytest.mark.slow
@pytest.mark.flink
@pytest.mark.kafka
def test_a_live_job_rides_out_a_redis_outage_without_losing_or_repeating_a_trigger(
    generated, server, kafka_server, topic, tmp_path
):
    """Redis stopped for 10 s while a live job on Flink ``[local]`` writes: the sinks
    retry (``redis.retry_for``), the job goes on, and its namespace ends equal to a
    batch replay's of the same events; the mirror topic has each trigger once."""
    clean, triggers, changes = _reference(generated, server.url, _live_config(), tmp_path)
    kafka_cmd.publish([str(generated)], kafka_server.bootstrap, topic, partitions=2)
    mirror = f"{topic}-actions"
    kafka_cmd.ensure_topic(kafka_server.bootstrap, mirror)
    request = _live_request(kafka_server, topic, mirror, server.url, tmp_path)
    outage = _Outage(server, "faulty", LIVE_OUTAGE_S)
    recovered = _live_through(outage, request, clean)
    print(f"Redis down {LIVE_OUTAGE_S:g} s: equal {recovered:.1f} s after its restart")
    _mirrored_once(kafka_server.bootstrap, mirror, triggers, changes)


@pytest.mark.slow
@pytest.mark.flink
@pytest.mark.kafka
def test_a_live_job_rides_out_a_kafka_broker_restart(generated, server, topic, tmp_path):
    """The broker the job reads from and mirrors to stopped for 10 s mid-run: its
    consumer and the mirror's producer reconnect, the namespace ends equal to a batch
    replay's, and the mirror topic has each trigger once."""
    from runners.local.kafka_broker import KafkaServer

    clean, triggers, changes = _reference(generated, server.url, _live_config(), tmp_path)
    broker = KafkaServer(tmp_path / "kafka").start()
    try:
        kafka_cmd.publish([str(generated)], broker.bootstrap, topic, partitions=2)
        mirror = f"{topic}-actions"
        kafka_cmd.ensure_topic(broker.bootstrap, mirror)
        request = _live_request(broker, topic, mirror, server.url, tmp_path)
        outage = _Outage(broker, "faulty", LIVE_OUTAGE_S, watch_url=server.url)
        recovered = _live_through(outage, request, clean)
        print(f"Kafka down {LIVE_OUTAGE_S:g} s: equal {recovered:.1f} s after its restart")
        _mirrored_once(broker.bootstrap, mirror, triggers, changes)
    finally:
        broker.stop()


class _TaskManagerKill(threading.Thread):
    """Once the namespace holds a key and the job has a completed checkpoint, kills the
    cluster's TaskManager (SIGKILL) and starts another ``down_s`` seconds later."""

    def __init__(self, cluster, redis_url: str, namespace: str, down_s: float = 5.0):
        super().__init__(daemon=True)
        self.cluster, self.redis_url, self.namespace, self.down_s = (
            cluster,
            redis_url,
            namespace,
            down_s,
        )
        self.keys_at_stop = None
        self.restarted_at = None
        self.restored = None

    def _job(self):
        running = [job["id"] for job in self.cluster.jobs() if job["status"] == "RUNNING"]
        return running[0] if running else None

    def run(self):
        client = redis.Redis.from_url(self.redis_url, socket_timeout=5)
        deadline = time.monotonic() + 300
        job = None
        while time.monotonic() < deadline:
            job = job or self._job()
            if (
                job is not None
                and next(client.scan_iter(match=f"mt:{self.namespace}:*", count=1000), None)
                and self.cluster.checkpoints(job)["completed"] > 0
            ):
                break
            time.sleep(0.05)
        self.keys_at_stop = sum(1 for _ in client.scan_iter(match=f"mt:{self.namespace}:*"))
        client.close()
        for pid in self.cluster.taskmanager_pids():
            os.kill(pid, signal.SIGKILL)
        time.sleep(self.down_s)
        self.cluster.start_taskmanager()
        self.restarted_at = time.monotonic()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not self.restored:
            with contextlib.suppress(OSError, KeyError):
                self.restored = self.cluster.checkpoints(job)["restored"]
            time.sleep(1)


@pytest.mark.slow
@pytest.mark.flink
@pytest.mark.kafka
def test_a_job_on_a_flink_cluster_whose_taskmanager_is_killed_restarts_from_its_checkpoint(
    generated, server, kafka_server, topic, tmp_path
):
    """kill -9 of the standalone cluster's TaskManager mid-run: the job restarts from its
    last checkpoint on a new TaskManager, reads again what that checkpoint had not
    covered, and ends with a batch replay's namespace and each trigger once."""
    import prometheus_client

    from runners.local.flink_cluster import FlinkCluster

    clean, triggers, changes = _reference(generated, server.url, _live_config(), tmp_path)
    sent = kafka_cmd.publish([str(generated)], kafka_server.bootstrap, topic, partitions=2)
    mirror = f"{topic}-actions"
    kafka_cmd.ensure_topic(kafka_server.bootstrap, mirror)
    # The workers run in this process: its counters count every attempt of a bundle.
    read_before = prometheus_client.REGISTRY.get_sample_value("microtarget_events_read_total")
    with FlinkCluster(tmp_path / "cluster") as cluster:
        request = dataclasses.replace(
            _live_request(kafka_server, topic, mirror, server.url, tmp_path),
            flink_master=cluster.rest,
        )
        kill = _TaskManagerKill(cluster, server.url, "faulty")
        recovered = _live_through(kill, request, clean)
    read = prometheus_client.REGISTRY.get_sample_value("microtarget_events_read_total")
    again = read - (read_before or 0) - sent["messages"]
    print(
        f"TaskManager killed: restored {kill.restored} time(s), {again:.0f} events read "
        f"again, equal {recovered:.1f} s after the new TaskManager started"
    )
    assert kill.restored and kill.restored >= 1
    assert again >= 0
    _mirrored_once(kafka_server.bootstrap, mirror, triggers, changes)


def _difference(expected: dict, actual: dict) -> str:
    missing = sorted(expected.keys() - actual.keys())
    extra = sorted(actual.keys() - expected.keys())
    differ = sorted(k for k in expected.keys() & actual.keys() if expected[k] != actual[k])
    return f"{len(missing)} missing {missing[:3]}, {len(extra)} extra {extra[:3]}, {differ[:3]}"
