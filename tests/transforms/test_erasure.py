"""Erasure against a real redis-server: every key goes, the audit stays, stale writes bounce."""

from __future__ import annotations

import hashlib
import json

import pytest

from runners import cli
from tests.conftest import pseudo
from tests.redis_state import namespace_state
from tests.transforms.test_triggers_sink import publish, trigger
from transforms import erasure, redis_sink
from transforms.redis_sink import profile_write, run_batch

ANN, BOB = pseudo("ann"), pseudo("bob")
TTL = {"profile": 3600, "recent": 3600}


def snapshot(user: str, first_seen: int, version: int) -> dict:
    return {
        "user_id": user,
        "version": version,
        "first_seen": first_seen,
        "last_seen": version,
        "events": 3,
        "flags": {"high_engagement": True},
        "recent_items": ["p1", "p2"],
    }


def write_profiles(client, url, namespace, *snapshots) -> list:
    script = client.register_script(redis_sink.SCRIPT)
    calls = [profile_write(namespace, snap, TTL) for snap in snapshots]
    return run_batch(client, script, calls, url)


def erase(client, url, namespace, user, at, reason="erasure_requested"):
    script = client.register_script(erasure.SCRIPT)
    request = {"user_id": user, "requested_at": at, "reason": reason, "event_id": "x1"}
    return erasure.erase_users(client, script, namespace, [request], 86_400, url)


def mentions(client, namespace: str, needle: str) -> list[str]:
    """Keys whose name or content (set members, stream entries, values) holds ``needle``."""
    found = []
    for name, content in namespace_state(client, namespace).items():
        if needle in name or needle.encode() in repr(content).encode():
            found.append(name)
    return found


@pytest.fixture
def populated(redis_url, namespace, redis_client):
    """Two users with a profile, recent items, triggers on log and stream, two segments."""
    write_profiles(
        redis_client, redis_url, namespace, snapshot(ANN, 100, 500), snapshot(BOB, 100, 500)
    )
    publish(
        redis_url,
        namespace,
        [trigger(ANN, "a1", 200), trigger(ANN, "a2", 400), trigger(BOB, "b1", 300)],
    )
    redis_client.sadd(f"mt:{namespace}:segments:{ANN}", "vip", "bargain")
    redis_client.sadd(f"mt:{namespace}:segments:{BOB}", "vip")
    redis_client.zadd(f"mt:{namespace}:segment:vip", {ANN: 200, BOB: 150})
    redis_client.zadd(f"mt:{namespace}:segment:bargain", {ANN: 300})
    assert mentions(redis_client, namespace, ANN)
    return redis_client


def test_erasure_leaves_nothing_that_mentions_the_user(populated, redis_url, namespace):
    client = populated
    bob_before = {k: v for k, v in namespace_state(client, namespace).items() if BOB in k}
    audits = erase(client, redis_url, namespace, ANN, 1000)
    assert mentions(client, namespace, ANN) == []
    assert audits == [
        {
            "subject": hashlib.sha256(ANN.encode()).hexdigest(),
            "reason": "erasure_requested",
            "source": "x1",
            "requested_at": "1000",
            # profile, recent items, trigger log, segment set, two send-once guards
            "keys_deleted": "6",
            "memberships_removed": "2",
            "log_entries_removed": "2",
            "stream_entries_removed": "2",
        }
    ]
    assert [fields for _, fields in erasure.read_audit(client, namespace)] == audits
    guards = [k for k in client.scan_iter(match=f"mt:{namespace}:trigger:*")]
    assert len(guards) == 1  # bob's
    # Bob is untouched, in his keys and in the shared ones.
    assert {k: v for k, v in namespace_state(client, namespace).items() if BOB in k} == bob_before
    assert client.zrange(f"mt:{namespace}:segment:vip", 0, -1) == [BOB.encode()]
    stream = client.xrange(f"mt:{namespace}:topic:triggers")
    assert [json.loads(f[b"trigger"])["user_id"] for _, f in stream] == [BOB]


def test_writes_that_raced_the_erasure_bounce_newer_data_lands(populated, redis_url, namespace):
    client = populated
    erase(client, redis_url, namespace, ANN, 1000)
    # A snapshot holding data from before the erasure, even with a newer version: refused.
    assert write_profiles(client, redis_url, namespace, snapshot(ANN, 100, 900)) == [2]
    publish(redis_url, namespace, [trigger(ANN, "a3", 900)])
    # A match completed after the erasure from an event before it (a pipeline that still
    # held the erased state): refused too.
    publish(redis_url, namespace, [{**trigger(ANN, "a5", 1200), "first_event_time": 100}])
    assert mentions(client, namespace, ANN) == []
    # After consent was granted again, the new profile and trigger are written.
    assert write_profiles(client, redis_url, namespace, snapshot(ANN, 1500, 1600)) == [1]
    publish(redis_url, namespace, [trigger(ANN, "a4", 1600)])
    assert redis_sink.read_profile(client, namespace, ANN)["first_seen"] == 1500
    assert len(client.lrange(f"mt:{namespace}:triggers:{ANN}", 0, -1)) == 1
    # The same erasure again (a replay) takes nothing that came after it.
    again = erase(client, redis_url, namespace, ANN, 1000)
    assert again[0]["keys_deleted"] == "0" and again[0]["stream_entries_removed"] == "0"
    assert redis_sink.read_profile(client, namespace, ANN)["first_seen"] == 1500
    assert len(erasure.read_audit(client, namespace)) == 2


def test_a_key_of_the_wrong_type_fails_the_erasure_and_changes_nothing(
    populated, redis_url, namespace
):
    client = populated
    client.set(f"mt:{namespace}:segments:{ANN}", "squatter")
    before = namespace_state(client, namespace)
    with pytest.raises(redis_sink.RedisSinkError, match="holds a string"):
        erase(client, redis_url, namespace, ANN, 1000)
    assert namespace_state(client, namespace) == before


def test_erase_command_pseudonymizes_and_prints_no_id(populated, redis_url, namespace, capsys):
    code = cli.main(["erase", "ann", "--redis", redis_url, "--namespace", namespace])
    assert code == 0
    printed = capsys.readouterr()
    assert "ann" not in printed.out and ANN not in printed.out + printed.err
    assert "erased subject" in printed.out and "6 keys" in printed.out
    assert mentions(populated, namespace, ANN) == []
    assert mentions(populated, namespace, BOB)
    (entry,) = erasure.read_audit(populated, namespace)
    assert entry[1]["source"] == "request"


def test_commands_refuse_to_run_without_a_key(monkeypatch, redis_url, namespace, capsys):
    monkeypatch.delenv("MICROTARGET_PSEUDONYM_KEY")
    assert cli.main(["erase", "ann", "--redis", redis_url, "--namespace", namespace]) == 2
    assert "no pseudonym key" in capsys.readouterr().err
    monkeypatch.setenv("MICROTARGET_PSEUDONYM_KEY", "short")
    assert cli.main(["pseudonym", "ann"]) == 2
    assert "needs 16+" in capsys.readouterr().err
