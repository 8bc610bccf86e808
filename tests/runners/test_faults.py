"""Faults on real components: a replay's Redis restarted while the replay writes.

The sinks retry a write with exponential backoff while Redis cannot be reached
(``redis.retry_for``, a minute by default) and their writes are idempotent, so a
replay that outlives a restart leaves the namespace a fault-free replay leaves;
with a budget shorter than the outage it fails, naming Redis.
"""

from __future__ import annotations

import threading
import time

import pytest
import redis
import yaml

from pipelines.config import parse_config
from runners import replay
from runners.local.redis_server import RedisServer
from tests.conftest import ROOT, generate_events, key_source_of_tests
from tests.redis_state import namespace_state

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
    """Once the namespace holds a key, stops Redis (SIGTERM, by its PID) for
    ``OUTAGE_S`` seconds and starts it again on the same port and data."""

    def __init__(self, server: RedisServer, namespace: str):
        super().__init__(daemon=True)
        self.server, self.namespace = server, namespace
        self.keys_at_stop = None
        self.restarted_at = None

    def run(self):
        client = redis.Redis.from_url(self.server.url, socket_timeout=5)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if next(client.scan_iter(match=f"mt:{self.namespace}:*", count=1000), None):
                break
            time.sleep(0.02)
        self.keys_at_stop = sum(1 for _ in client.scan_iter(match=f"mt:{self.namespace}:*"))
        client.close()
        self.server.stop()
        time.sleep(OUTAGE_S)
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
