"""Shared fixtures: a real redis-server for the whole test run, one namespace per test."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import redis

from runners.local.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]

# The pseudonym key of every run in the tests (the job refuses to start without one).
TEST_KEY = b"microtarget test pseudonym key, not a secret"
os.environ["MICROTARGET_PSEUDONYM_KEY"] = TEST_KEY.decode()


def key_source_of_tests():
    """Where the tests' pipelines read the pseudonym key: the variable set above."""
    from pipelines.keys import ENV, KeySource

    return KeySource("env", ENV)


def generate_events(folder: Path, events: int, users: int, seed: int) -> Path:
    """``microtarget generate`` into ``folder/events.avro``; its path."""
    from runners import cli

    out = folder / "events.avro"
    args = ["generate", "--events", str(events), "--users", str(users), "--seed", str(seed)]
    assert cli.main([*args, "--out", str(out)]) == 0
    return out


def granted_config(**sections):
    """A config whose users, stating no consent, are taken as consenting (the data sets)."""
    from pipelines.config import parse_config

    return parse_config({"consent": {"default": "granted"}, **sections})


def pseudo(user: str) -> str:
    """What a raw user id is stored under with the tests' key."""
    from models.privacy import pseudonym

    return pseudonym(TEST_KEY, user)


def _datasets() -> Path:
    """The recorded datasets: $MICROTARGET_DATASETS, else ../shared/datasets, else /work's."""
    override = os.environ.get("MICROTARGET_DATASETS")
    if override:
        return Path(override)
    for candidate in (ROOT.parent / "shared" / "datasets", Path("/work/shared/datasets")):
        if candidate.exists():
            return candidate
    return ROOT.parent / "shared" / "datasets"


DATASETS = _datasets()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real redis-server on 127.0.0.1 and a free port, stopped by PID at the end."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kafka_server(tmp_path_factory):
    """A real Kafka broker (KRaft) on 127.0.0.1 and free ports, stopped by PID at the end."""
    from runners.local.kafka_broker import KafkaServer

    server = KafkaServer(tmp_path_factory.mktemp("kafka")).start()
    yield server
    server.stop()


@pytest.fixture
def topic() -> str:
    """A topic name of its own for each test."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def redis_url(redis_server) -> str:
    return redis_server.url


@pytest.fixture
def namespace() -> str:
    """A namespace of its own for each test, so tests share the server safely."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


class LiveJob:
    """``runners.live.run(request)`` in a thread of this process (its LOOPBACK workers too).

    ``check()`` raises if the run failed; ``stop()`` (for a ``finally``) cancels the
    job, waiting for its submission if a failure came first, so that the run's Java
    services stop with it; ``assert_cancelled()`` then checks how it ended.
    """

    def __init__(self, request):
        import threading

        self.request = request
        self.jobs: list = []
        self.outcome: dict = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from runners import live

        try:
            self.outcome.update(live.run(self.request, on_running=self.jobs.append))
        except BaseException as exc:  # a service that died at start: fail now, not at timeout
            self.outcome["error"] = exc

    def start(self) -> LiveJob:
        self._thread.start()
        return self

    def check(self) -> None:
        if "error" in self.outcome and self.outcome["error"] is not None:
            raise AssertionError(f"the live run failed: {self.outcome['error']!r}")

    def stop(self, timeout_s: float = 180) -> None:
        import time

        submitted = time.monotonic() + timeout_s
        while not self.jobs and self._thread.is_alive() and time.monotonic() < submitted:
            time.sleep(1)
        if self.jobs:
            self.jobs[0].cancel()
        self._thread.join(timeout_s)

    def assert_cancelled(self) -> None:
        assert not self._thread.is_alive()
        outcome = self.outcome
        assert outcome.get("error") is None and "CANCEL" in outcome["state"], outcome
