"""The command line at its edges: closed pipes, empty or invalid input, unknown flags,
Redis lost mid-run, hints, the progress line, the embedded Redis's data, quiet output."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time

import pytest
import redis

from runners import cli
from runners.local import redis_server as local_redis
from tests.conftest import ROOT, generate_events

MICROTARGET = [sys.executable, "-m", "runners.cli"]
CONFIG = str(ROOT / "examples" / "config.yaml")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return generate_events(tmp_path_factory.mktemp("gen"), 600, 20, 3)


@pytest.fixture(scope="module")
def replayed(small, redis_server, tmp_path_factory):
    """A namespace filled by a replay of the small file with the default pattern pack."""
    namespace = "edges"
    dead = tmp_path_factory.mktemp("dead")
    args = ["replay", str(small), "--redis", redis_server.url, "--namespace", namespace]
    assert cli.main(args + ["--config", CONFIG, "--quiet", "--dead-letters", str(dead)]) == 0
    return namespace


def _events(n: int, **fields) -> list[dict]:
    return [
        {
            "event_id": f"e{i}",
            "user_id": f"u{i % 3}",
            "event_type": "product_view",
            "timestamp": 1_700_000_000_000 + i * 1000,
            **fields,
        }
        for i in range(n)
    ]


def _jsonl(path, rows) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def _closed_reader(args: list[str]) -> subprocess.CompletedProcess:
    """Run a command whose standard output is a pipe nobody reads: closed before it writes."""
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    err = process.stderr.read().decode()
    return subprocess.CompletedProcess(args, process.wait(timeout=300), "", err)


def test_printing_commands_end_quietly_when_their_reader_goes_away(
    small, replayed, redis_server, tmp_path
):
    from tests.conftest import pseudo

    truth = json.loads(small.with_suffix(".personas.json").read_text())
    at = ["--redis", redis_server.url, "--namespace", replayed]
    summary = tmp_path / "summary.json"
    commands = {
        "triggers": ["triggers", *at],
        "profile": ["profile", pseudo(sorted(truth["personas"])[0]), "--pseudonymized", *at],
        "replay": ["replay", str(small), *at, "--dead-letters", str(tmp_path), "--quiet"]
        + ["--namespace", "edges-again", "--summary-json", str(summary)],
        "evaluate": ["evaluate", str(small), "--redis", redis_server.url, "--quiet"]
        + ["--config", CONFIG, "--dead-letters", str(tmp_path)],
    }
    for name, args in commands.items():
        result = _closed_reader(MICROTARGET + args)
        assert result.returncode == 141, (name, result.stderr[-2000:])
        assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, name
    # The summary file is written before the summary is printed.
    assert json.loads(summary.read_text())["events_read"] == 600


def test_nothing_valid_fails_and_invalid_shares_can_be_capped(
    tmp_path, redis_url, namespace, capsys
):
    def replay(path, *more):
        base = ["replay", path, "--redis", redis_url, "--namespace", namespace, "--quiet"]
        code = cli.main(base + ["--dead-letters", str(tmp_path / "dead"), *more])
        return code, capsys.readouterr().err

    code, err = replay(_jsonl(tmp_path / "empty.jsonl", []))
    assert code == 1 and "error: nothing was read" in err
    garbage = _jsonl(tmp_path / "garbage.jsonl", ["{not json", '{"event_id": "x"}', "[]"])
    code, err = replay(garbage)
    assert code == 1 and "error: nothing valid was read: all 3 records are invalid (" in err
    assert "invalid_json 1" in err
    from pipelines import personalize

    dead = f"--dead_letters={tmp_path / 'dead'}"
    assert personalize.main([f"--input={garbage}", f"--redis={redis_url}", dead]) == 1
    assert "error: nothing valid was read" in capsys.readouterr().err
    code, err = replay(garbage, "--streaming")
    assert code == 1 and "error: nothing valid was read: all 3 records are invalid" in err
    mixed = _jsonl(tmp_path / "mixed.jsonl", [*_events(9), "{not json"])
    code, err = replay(mixed, "--max-invalid-share", "0.05")
    assert code == 1 and "1 of 10 records (10.0%) are invalid, more than" in err
    assert replay(mixed, "--max-invalid-share", "0.2")[0] == 0
    with pytest.raises(SystemExit):
        replay(mixed, "--max-invalid-share", "1.5")
    assert "--max-invalid-share: must be between 0 and 1" in capsys.readouterr().err


def test_unknown_beam_options_stop_the_replay_naming_them(small, redis_url, tmp_path, capsys):
    from pipelines import personalize

    args = ["replay", str(small), "--redis", redis_url, "--dead-letters", str(tmp_path)]
    code = cli.main(args + ["--", "--bogus_flag=1", "--direct_num_workres", "2"])
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown Beam option after `--`: --bogus_flag, --direct_num_workres" in err
    assert "did you mean '--direct_num_workers'?" in err
    assert personalize.main([f"--input={small}", f"--redis={redis_url}", "--bogus_flag=1"]) == 2
    assert "--bogus_flag" in capsys.readouterr().err


@pytest.mark.slow
def test_redis_lost_mid_replay_says_so_in_one_line_and_leaves_no_temp_files(tmp_path):
    events = tmp_path / "events.avro"
    args = ["generate", "--events", "20000", "--users", "400", "--seed", "7", "--out", str(events)]
    assert cli.main(args) == 0
    dead = tmp_path / "dead"
    with local_redis.RedisServer(tmp_path / "redis") as server:
        client = redis.Redis.from_url(server.url)
        process = subprocess.Popen(
            MICROTARGET
            + ["replay", str(events), "--redis", server.url, "--config", CONFIG, "--quiet"]
            + ["--dead-letters", str(dead)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 240
        while not next(client.scan_iter(match="mt:*", count=100), None):
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        client.close()
        server.stop()  # the first writes are in: Redis goes away mid-run
        out, err = process.communicate(timeout=300)
    assert process.returncode == 1, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err[-3000:]
    assert f"Redis at {server.url} failed in step " in errors[0]
    assert "Connection refused" in errors[0] and "is safe" in errors[0]
    assert len(err.splitlines()) <= 3, err
    assert not list(dead.glob("beam-temp-*"))


def test_a_redis_failure_is_found_in_a_portable_runners_message():
    text = (
        "Pipeline job-001 failed: Traceback (most recent call last):\n ...\n"
        "transforms.redis_sink.RedisSinkError: writing 12 records to redis://***@h:1/0 failed "
        "(first key 'mt:ns:profile:ab'): Error 111 connecting to h:1. Connection refused. "
        "[while running 'WriteProfilesToRedis/CasWrite']\n"
    )
    said = cli.redis_failure(RuntimeError(text), "redis://user:secret@h:1/0")
    assert said.startswith(
        "Redis at redis://***@h:1/0 failed in step WriteProfilesToRedis/CasWrite"
    )
    assert "Error 111 connecting to h:1. Connection refused. Every write" in said
    assert cli.redis_failure(RuntimeError("KeyError: 'x'"), "redis://h:1/0") is None


def test_a_hint_names_the_config_keys_when_nothing_is_configured_or_consented(
    tmp_path, redis_url, namespace, capsys
):
    path = _jsonl(tmp_path / "e.jsonl", _events(30))  # no consent stated
    base = ["replay", path, "--redis", redis_url, "--namespace", namespace, "--quiet"]
    base += ["--dead-letters", str(tmp_path / "dead")]
    assert cli.main(base) == 0
    err = capsys.readouterr().err
    assert "hint: 30 of 30 events were consent-blocked (consent.default is 'denied'" in err
    assert "and no patterns, segments or models are configured" in err
    assert "consent.default, patterns, segments and models" in err
    assert "examples/config.yaml" in err
    assert cli.main(base + ["--config", CONFIG]) == 0
    assert "hint:" not in capsys.readouterr().err


def _on_a_terminal(args: list[str]) -> str:
    """What a command writes to stderr when stderr is a terminal (a pseudo-terminal here)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 300)
        if not ready:
            break
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal's other side closed: the command ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=60) == 0
    return b"".join(chunks).decode(errors="replace")


def test_progress_shows_on_a_terminal_only_and_nothing_else_is_noise(
    small, redis_url, namespace, tmp_path
):
    args = MICROTARGET + ["replay", str(small), "--redis", redis_url, "--namespace", namespace]
    args += ["--config", CONFIG, "--dead-letters", str(tmp_path / "dead")]
    shown = _on_a_terminal(args)
    final = shown.rsplit("\r\x1b[K", 1)[-1]
    assert "read 600 records" in final and "events and sessions" in final, shown[-2000:]
    assert "profiles written 0" not in final
    quiet = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0
    # Not a terminal: no progress line, no Beam warnings, no dead-letter folder without letters.
    assert quiet.stderr == "", quiet.stderr
    helped = subprocess.run(MICROTARGET + ["--help"], cwd=ROOT, capture_output=True, text=True)
    assert helped.returncode == 0 and helped.stderr == ""


def test_the_embedded_redis_keeps_its_data_across_a_stop(tmp_path):
    url = local_redis.ensure_embedded(tmp_path)
    client = redis.Redis.from_url(url)
    client.set("mt:kept:k", "v")
    client.close()
    assert local_redis.stop_embedded(tmp_path)
    url = local_redis.ensure_embedded(tmp_path)
    client = redis.Redis.from_url(url)
    try:
        assert client.get("mt:kept:k") == b"v"
    finally:
        client.close()
        local_redis.stop_embedded(tmp_path)


def test_profile_and_triggers_show_times_readably_and_json_as_stored(
    small, replayed, redis_server, capsys
):
    from tests.conftest import pseudo

    truth = json.loads(small.with_suffix(".personas.json").read_text())
    user = pseudo(sorted(truth["personas"])[0])
    at = ["--redis", redis_server.url, "--namespace", replayed, "--pseudonymized"]
    assert cli.main(["profile", user, *at]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert cli.main(["profile", user, *at, "--json"]) == 0
    stored = json.loads(capsys.readouterr().out)
    assert isinstance(stored["last_seen"], int)
    assert shown["last_seen"] == cli.iso(stored["last_seen"]) and shown["last_seen"].endswith("Z")
    assert shown["last_session"]["start"] == cli.iso(stored["last_session"]["start"])
    assert shown["events"] == stored["events"] and shown["version"] == stored["version"]
    for name, at_ms in stored.get("segments", {}).items():
        assert shown["segments"][name] == cli.iso(at_ms)
    assert cli.main(["triggers", "--redis", redis_server.url, "--namespace", replayed]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["time", "(UTC)", "pattern", "user", "keys"]
    assert len(lines) > 1
    assert not any("session_start=1" in line for line in lines)
