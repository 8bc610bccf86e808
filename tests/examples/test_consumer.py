"""examples/consumer.py, run as a separate process against a real replay's Redis output."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import uuid

import pytest
import redis

from models.personas import generate
from pipelines.config import load_config
from runners import replay
from schemas.codecs import write_container
from tests.conftest import ROOT, key_source_of_tests, pseudo

CONSUMER = ROOT / "examples" / "consumer.py"


@pytest.fixture(scope="module")
def client(redis_server):
    """A client for the module's fixtures, answering in str."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="module")
def replayed(redis_server, client, tmp_path_factory):
    """2,000 generated events replayed with the example config (patterns, segments, models)."""
    folder = tmp_path_factory.mktemp("consumer")
    records, personas = generate(events=2000, users=40, seed=11)
    write_container(folder / "events.avro", records)
    namespace = f"consumer-{uuid.uuid4().hex[:8]}"
    replay.run(
        replay.ReplayRequest(
            inputs=[str(folder / "events.avro")],
            redis_url=redis_server.url,
            namespace=namespace,
            config=load_config(ROOT / "examples" / "config.yaml"),
            dead_letters_dir=str(folder / "dead"),
            key_source=key_source_of_tests(),
        )
    )
    # A user with segments and scores, named by the raw id the consumer must pseudonymize.
    raw = next(
        u
        for u in sorted(personas)
        if client.scard(f"mt:{namespace}:segments:{pseudo(u)}") >= 2
        and client.hlen(f"mt:{namespace}:scores:{pseudo(u)}")
    )
    events = len({r["event_id"] for r in records if r["user_id"] == raw})
    return {
        "url": redis_server.url,
        "namespace": namespace,
        "raw": raw,
        "user": pseudo(raw),
        "events": events,
    }


def consume(replayed, *flags: str) -> list[dict]:
    """Run the consumer with ``--json``; its lines, parsed."""
    args = ["--redis", replayed["url"], "--namespace", replayed["namespace"], "--json"]
    done = subprocess.run(
        [sys.executable, str(CONSUMER), *args, *flags],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=CONSUMER.parent,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def only(lines: list[dict], kind: str) -> list:
    return [line[kind] for line in lines if kind in line]


def test_it_reads_the_users_profile_segments_and_scores(replayed, client):
    ns, user = replayed["namespace"], replayed["user"]
    lines = consume(replayed, "--user-id", replayed["raw"], "--start", "newest", "--idle", "0.2")
    (profile,) = only(lines, "profile")
    (snapshot,) = only(lines, "snapshot")
    stored = client.hgetall(f"mt:{ns}:profile:{user}")
    assert snapshot == json.loads(stored.pop("snapshot"))
    assert profile == stored and profile["user_id"] == user
    assert int(profile["events"]) == replayed["events"]  # the user's unique events in the file
    assert snapshot["user_id"] == user and snapshot["version"] == int(profile["version"])
    (segments,) = only(lines, "segments")
    assert set(segments) == client.smembers(f"mt:{ns}:segments:{user}")
    assert segments == {n: int(client.zscore(f"mt:{ns}:segment:{n}", user)) for n in segments}
    assert segments == snapshot["segments"]
    (scores,) = only(lines, "scores")
    for model, fields in scores.items():
        assert set(fields) == {"score", "version", "at"}
        assert fields["score"] == client.hget(f"mt:{ns}:scores:{user}", model)
    assert len(scores) == client.hlen(f"mt:{ns}:scores:{user}") // 3 > 0
    # A new group that starts at the newest entry has nothing to read.
    assert only(lines, "trigger") == [] and only(lines, "done")[0]["read"] == 0


def test_it_follows_the_trigger_stream_through_a_group_and_acknowledges(replayed, client):
    ns = replayed["namespace"]
    stream, group = f"mt:{ns}:topic:triggers", "mailer"
    entries = client.xrange(stream)
    assert len(entries) >= 6
    who = ["--user", replayed["user"], "--group", group, "--consumer", "w1"]

    first = consume(replayed, *who, "--count", "3")
    assert only(first, "done")[0]["read"] == 3
    assert [t["entry"] for t in only(first, "trigger")] == [e for e, _ in entries[:3]]
    assert client.xpending(stream, group)["pending"] == 0
    # w1 takes two more and stops before acknowledging them: they are pending for w1 ...
    client.xreadgroup(group, "w1", {stream: ">"}, count=2)
    assert client.xpending(stream, group)["pending"] == 2
    # ... so its next run handles them first, then the rest, until the stream is idle.
    rest = consume(replayed, *who, "--idle", "0.5")
    triggers = only(rest, "trigger")
    assert [t["entry"] for t in triggers] == [e for e, _ in entries[3:]]
    assert only(rest, "done")[0]["read"] == len(entries) - 3 == client.xlen(stream) - 3
    assert client.xpending(stream, group)["pending"] == 0
    for shown, (_, fields) in zip(triggers, entries[3:]):
        assert shown["trigger"] == json.loads(fields["trigger"])
        assert shown["trigger_id"] == shown["trigger"]["trigger_id"] == fields["trigger_id"]
        assert shown["trigger"]["holdout"] is False and shown["user"] == fields["user"]


def test_text_output_and_a_user_with_no_profile(replayed):
    args = ["--redis", replayed["url"], "--namespace", replayed["namespace"]]
    done = subprocess.run(
        [sys.executable, str(CONSUMER), *args, "--user", "nobody", "--idle", "0.2"]
        + ["--group", "reader", "--count", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "no profile for user nobody" in done.stderr
    assert done.stdout.count("\ntrigger ") == 2 and "  read: 2" in done.stdout


def test_it_needs_nothing_but_the_standard_library_and_redis():
    tree = ast.parse(CONSUMER.read_text())
    imported = {
        alias.name.split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, ast.Import)
        for alias in n.names
    }
    imported |= {
        n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
    }
    assert imported - set(sys.stdlib_module_names) == {"redis"}
