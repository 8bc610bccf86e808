"""Live on Flink, reading Kafka: the same Redis state and topic contents as a batch replay.

* The Taobao file is published to a real Kafka broker (two partitions, event
  times as CreateTime); ``microtarget run`` runs on Beam's Flink runner with
  ``[local]`` (an embedded mini-cluster) reading that topic and mirroring
  triggers and segment changes to a second topic; the final Redis namespace
  and the mirror topic equal those of the batch replay of the same file.
* A generated file through the same command submitted to a standalone Flink
  1.19 cluster: the job shows RUNNING in the cluster's REST API, its results
  land in Redis, and cancelling it there ends the command.

The online models are off here: their streaming inputs can still come late to
the learners (see the note in tests/test_patterns_taobao.py), and everything
else must be identical.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from pipelines.config import parse_config
from runners import kafka_cmd, live, replay
from runners.local.flink_cluster import FlinkCluster
from tests.conftest import DATASETS, ROOT, key_source_of_tests
from tests.runners.test_kafka_io import _consume
from tests.test_patterns_taobao import _comparable
from tests.test_replay_taobao import taobao  # noqa: F401 (a fixture)

TAOBAO = DATASETS / "taobao_userbehavior" / "UserBehavior.csv"
pytestmark = [pytest.mark.slow, pytest.mark.flink, pytest.mark.kafka]
LIVE_TIMEOUT_S = 900
SETTLED_S = 120


def _config():
    data = yaml.safe_load((ROOT / "examples" / "config.yaml").read_text())
    data["models"]["enabled"] = []
    return parse_config(data, "examples/config.yaml without models", ROOT / "examples")


CONFIG = _config()


def _batch(path, redis_url, namespace, tmp_path):
    request = replay.ReplayRequest(
        inputs=[str(path)],
        redis_url=redis_url,
        namespace=namespace,
        config=CONFIG,
        dead_letters_dir=str(tmp_path / f"dead-{namespace}"),
        key_source=key_source_of_tests(),
    )
    return replay.run(request)


def _wait_for(done, timeout_s: float, every_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(every_s)
    return done()


def _differences(expected: dict, actual: dict, letters_dir) -> str:
    """What a failing comparison needs to be explained: the keys, the fields, the dead letters."""
    missing = sorted(expected.keys() - actual.keys())
    extra = sorted(actual.keys() - expected.keys())
    differ = sorted(k for k in expected.keys() & actual.keys() if expected[k] != actual[k])
    lines = [
        f"{len(missing)} keys missing {missing[:3]}, {len(extra)} extra {extra[:3]}, "
        f"{len(differ)} differ {differ[:3]}"
    ]
    for key in differ[:2]:
        (kind, want), (_, got) = expected[key], actual[key]
        if kind == "hash":
            fields = sorted(set(want) | set(got))
            changed = {f: (want.get(f), got.get(f)) for f in fields if want.get(f) != got.get(f)}
            for name, (before, after) in changed.items():
                if name == b"snapshot" and before and after:
                    # The whole profile as JSON: only its entries that differ.
                    before, after = json.loads(before), json.loads(after)
                    changed[name] = {
                        k: (before.get(k), after.get(k))
                        for k in sorted(set(before) | set(after))
                        if before.get(k) != after.get(k)
                    }
            lines.append(f"{key}: fields (batch, live) {changed}"[:3000])
        else:
            lines.append(f"{key}: batch {want!r} live {got!r}"[:3000])
    reasons = collections.Counter()
    for path in sorted(Path(letters_dir).glob("**/*.jsonl")):
        for line in path.read_text().splitlines():
            letter = json.loads(line)
            reasons[letter["reason"]] += 1
            if letter["reason"] == "late" and reasons["late"] <= 3:
                lines.append(f"late: {letter['detail']}")
    lines.append(f"live dead letters by reason: {dict(reasons)}")
    return "\n".join(lines)


@pytest.mark.skipif(not TAOBAO.exists(), reason=f"Taobao file not found at {TAOBAO}")
def test_flink_local_reading_kafka_equals_the_batch_replay(
    taobao,  # noqa: F811
    kafka_server,
    redis_url,
    redis_client,
    tmp_path,
):
    batch = _batch(taobao["path"], redis_url, "flink-batch", tmp_path)
    expected = _comparable(redis_client, "flink-batch")
    assert batch["events_read"] == 84_440 and batch["triggers_published"] > 1000

    kafka_cmd.publish([str(taobao["path"])], kafka_server.bootstrap, "taobao", partitions=2)
    kafka_cmd.ensure_topic(kafka_server.bootstrap, "taobao-actions")
    request = live.RunRequest(
        source=kafka_server.url("taobao"),
        sink=kafka_server.url("taobao-actions"),
        redis_url=redis_url,
        namespace="flink-live",
        config=CONFIG,
        dead_letters_dir=str(tmp_path / "dead-live"),
        key_source=key_source_of_tests(),
        work_dir=str(tmp_path / "flink"),
        # Checkpoints every 100 ms: with Beam's default of buffering a bundle's output
        # into the checkpoint, this made the comparison fail (see runners/live.py).
        checkpoint_interval_ms=100,
    )
    jobs, outcome = [], {}

    def run_live() -> None:
        try:
            outcome.update(live.run(request, on_running=jobs.append))
        except BaseException as exc:  # a service that died at start: fail now, not at timeout
            outcome["error"] = exc

    runner = threading.Thread(target=run_live, daemon=True)
    runner.start()

    seen = {"state": None, "since": time.monotonic()}

    def caught_up_or_settled() -> bool:
        if "error" in outcome:
            raise AssertionError(f"the live run failed: {outcome['error']!r}")
        # Cheap first: the number of keys; then the whole namespace. A namespace that
        # stays the same for SETTLED_S without being equal will not become equal.
        count = sum(1 for _ in redis_client.scan_iter(match="mt:flink-live:*", count=2000))
        if count != len(expected):
            return False
        state = _comparable(redis_client, "flink-live")
        if state != seen["state"]:
            seen.update(state=state, since=time.monotonic())
        return state == expected or time.monotonic() - seen["since"] > SETTLED_S

    _wait_for(caught_up_or_settled, LIVE_TIMEOUT_S, every_s=15)
    assert jobs, "the job was never submitted"
    jobs[0].cancel()
    runner.join(120)
    assert not runner.is_alive()
    assert "CANCEL" in outcome["state"], outcome
    actual = _comparable(redis_client, "flink-live")
    if actual != expected:
        pytest.fail(_differences(expected, actual, tmp_path / "dead-live"))

    # The mirror topic holds what the Redis topics hold, once each.
    topics = {
        "trigger": [f for _, f in redis_client.xrange("mt:flink-batch:topic:triggers")],
        "segment_change": [f for _, f in redis_client.xrange("mt:flink-batch:topic:segments")],
    }
    wanted = {
        "trigger": sorted((f[b"trigger_id"], f[b"trigger"]) for f in topics["trigger"]),
        "segment_change": sorted(
            (f[b"change_id"], f[b"change_json"]) for f in topics["segment_change"]
        ),
    }
    total = sum(len(v) for v in wanted.values())
    messages = _consume(kafka_server.bootstrap, "taobao-actions", total, timeout_s=60)
    mirrored = {"trigger": [], "segment_change": []}
    for message in messages:
        kind = dict(message.headers())["kind"].decode()
        mirrored[kind].append((message.key(), message.value()))
    assert len(messages) == total
    assert {k: sorted(v) for k, v in mirrored.items()} == wanted


def test_a_job_on_a_standalone_flink_cluster_runs_writes_redis_and_cancels(
    kafka_server, redis_url, redis_client, tmp_path
):
    events = tmp_path / "events.avro"
    from runners import cli

    assert (
        cli.main(
            ["generate", "--events", "2000", "--users", "50", "--seed", "4"]
            + [
                "--out",
                str(events),
            ]
        )
        == 0
    )
    _batch(events, redis_url, "cluster-batch", tmp_path)
    expected = _comparable(redis_client, "cluster-batch")
    kafka_cmd.publish([str(events)], kafka_server.bootstrap, "generated")

    with FlinkCluster(tmp_path / "cluster") as cluster:
        config = tmp_path / "config.yaml"
        data = yaml.safe_load((ROOT / "examples" / "config.yaml").read_text())
        data["models"]["enabled"] = []
        data["patterns"] = str(ROOT / "examples" / "patterns.yaml")
        data["segments"] = str(ROOT / "examples" / "segments.yaml")
        config.write_text(yaml.safe_dump(data))
        command = [
            sys.executable,
            "-m",
            "runners.cli",
            "run",
            "--source",
            kafka_server.url("generated"),
            "--flink-master",
            cluster.rest,
            "--redis",
            redis_url,
            "--namespace",
            "cluster-live",
            "--config",
            str(config),
            "--dead-letters",
            str(tmp_path / "dead-live"),
            "--duration",
            "15m",
        ]
        log = open(tmp_path / "run.log", "w")  # noqa: SIM115 (closed below)
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ}
        )
        try:
            running = []
            assert _wait_for(
                lambda: (
                    running.extend(j for j in cluster.jobs() if j["status"] == "RUNNING")
                    or bool(running)
                ),
                240,
                every_s=2,
            ), (tmp_path / "run.log").read_text()[-3000:]
            assert _wait_for(
                lambda: _comparable(redis_client, "cluster-live") == expected, 300, every_s=5
            ), _differences(
                expected, _comparable(redis_client, "cluster-live"), tmp_path / "dead-live"
            )
            cluster.cancel(running[0]["id"])
            assert process.wait(120) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()
        assert {j["id"]: j["status"] for j in cluster.jobs()}[running[0]["id"]] == "CANCELED"
    printed = (tmp_path / "run.log").read_text()
    assert "CANCELLED" in printed, printed[-2000:]
