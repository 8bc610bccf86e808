"""The job's metrics for Prometheus: served while it runs, equal to its counters, scraped.

* A batch replay with ``metrics_port`` serves counters that equal the run
  summary's (events read, dead letters by reason, triggers by pattern), and the
  models' progressive metrics.
* ``ops/prometheus/alerts.yml`` passes ``promtool check rules`` and its unit tests
  (each alert fires on series that should fire it, and only then).
* A live job on Flink ``[local]`` reading Kafka is scraped by a real Prometheus
  server: the events read, the dead letters by reason, the Kafka consumer lag,
  the latency and the watermark lag come back from Prometheus's query API, and
  every query of the dashboard and the alert rules runs there.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections import Counter

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from pipelines.config import load_config, parse_config
from runners import kafka_cmd, live, metrics_server, replay
from runners.local.prometheus_server import PrometheusServer, binary
from tests.conftest import ROOT, LiveJob, generate_events, key_source_of_tests

OPS = ROOT / "ops"


def _scrape(port: int) -> dict[tuple, float]:
    """``{(name, sorted labels): value}`` of every sample served on ``port``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _delta(before: dict, after: dict, name: str, label: str | None = None) -> dict | float:
    """What ``name`` grew by between two scrapes: a number, or by ``label``'s value."""
    grown = Counter()
    for (sample, labels), value in after.items():
        if sample == name:
            key = dict(labels).get(label) if label else None
            grown[key] += value - before.get((sample, labels), 0.0)
    if label is None:
        return grown[None]
    return {key: n for key, n in grown.items() if n}


def test_a_replay_serves_counters_equal_to_its_summary(redis_url, namespace, tmp_path):
    events = generate_events(tmp_path, 3000, 60, 11)
    broken = tmp_path / "broken.jsonl"
    good = {"event_id": "x1", "user_id": "u1", "event_type": "product_view", "timestamp": 1}
    broken.write_text(
        "not json\n"
        + json.dumps({**good, "event_type": "teleport"})
        + "\n"
        + json.dumps({k: v for k, v in good.items() if k != "user_id"})
        + "\n"
    )
    port = metrics_server.serve(0)
    before = _scrape(port)
    summary = replay.run(
        replay.ReplayRequest(
            inputs=[str(events), str(broken)],
            redis_url=redis_url,
            namespace=namespace,
            config=load_config(ROOT / "examples" / "config.yaml"),
            dead_letters_dir=str(tmp_path / "dead"),
            key_source=key_source_of_tests(),
            metrics_port=port,
        )
    )
    after = _scrape(port)

    assert summary["events_read"] == 3003
    assert _delta(before, after, "microtarget_events_read_total") == summary["events_read"]
    assert _delta(before, after, "microtarget_unique_total") == summary["unique"]
    assert summary["invalid"] == 3 and summary["dead_letters"] >= 3
    dead = _delta(before, after, "microtarget_dead_letters_total", "reason")
    assert sum(dead.values()) == summary["dead_letters"]
    invalid = _delta(before, after, "microtarget_invalid_by_reason_total", "reason")
    assert invalid == summary["invalid_by_reason"] and len(invalid) >= 2
    assert all(dead[reason] >= n for reason, n in invalid.items())
    triggered = _delta(before, after, "microtarget_triggers_by_pattern_total", "pattern")
    assert triggered == summary["triggers_by_pattern"] and triggered
    suppressed = _delta(before, after, "microtarget_triggers_suppressed_total", "reason")
    assert suppressed == summary["triggers_suppressed"]
    # The models' progressive metrics, as of their newest summaries.
    auc = after[("microtarget_model_metric", (("metric", "roc_auc"), ("model", "purchase_intent")))]
    assert 0.5 < auc <= 1.0
    assert after[("microtarget_model_samples", (("model", "purchase_intent"),))] > 0
    # Every profile written was timed from its event (a replay: the age of its file).
    written = _delta(before, after, "microtarget_redis_write_latency_seconds_count", "sink").get(
        "profiles"
    )
    assert written and written <= summary["redis_writes_applied"]


def test_a_metrics_port_in_use_fails_at_start_naming_the_flag(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(replay.InputError, match="--metrics-port"):
            metrics_server.serve(port)
    with pytest.raises(replay.InputError, match="--metrics-port 70000 is not a TCP port"):
        metrics_server.serve(70000)


def test_the_alert_rules_pass_promtool_and_their_unit_tests():
    promtool = binary("promtool")
    checked = subprocess.run(
        [promtool, "check", "rules", str(OPS / "prometheus" / "alerts.yml")],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 6 rules found" in checked.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"],
        capture_output=True,
        text=True,
        cwd=OPS / "prometheus",
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def _queries() -> list[str]:
    """Every PromQL expression of the dashboard and the alert rules."""
    dashboard = json.loads((OPS / "grafana" / "microtarget.json").read_text())
    found = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    rules = yaml.safe_load((OPS / "prometheus" / "alerts.yml").read_text())
    found += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    return found


def _publish_fresh(bootstrap: str, topic: str, events: int, users: int) -> int:
    """Views of ``users`` users happening now (event time and Kafka time the wall clock),
    and two messages that are no events; how many messages in all."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(events):
        now_ms = int(time.time() * 1000)
        event = {
            "event_id": f"e{i}",
            "user_id": f"u{i % users}",
            "event_type": "product_view",
            "timestamp": now_ms,
            "product_id": f"p{i % 97}",
            "category": f"c{i % 7}",
            "price": 19.99,
        }
        producer.produce(topic, json.dumps(event).encode(), key=event["user_id"], timestamp=now_ms)
        if i % 100 == 99:
            producer.flush(30)
            time.sleep(0.05)
    for value in (b"not an event", b"\x00\x01"):
        producer.produce(topic, value, timestamp=int(time.time() * 1000))
    assert producer.flush(30) == 0
    return events + 2


@pytest.mark.slow
@pytest.mark.flink
@pytest.mark.kafka
def test_a_live_job_is_scraped_by_a_real_prometheus(
    kafka_server, redis_url, namespace, topic, tmp_path
):
    data = yaml.safe_load((ROOT / "examples" / "config.yaml").read_text())
    data["models"]["enabled"] = []
    config = parse_config(data, "examples/config.yaml without models", ROOT / "examples")
    kafka_cmd.ensure_topic(kafka_server.bootstrap, topic, partitions=2)
    port = metrics_server.serve(0)
    # Counters are the process's: other runs in this process counted before this one.
    base = _scrape(port)
    request = live.RunRequest(
        source=kafka_server.url(topic),
        redis_url=redis_url,
        namespace=namespace,
        config=config,
        group_id=f"g-{topic}",
        dead_letters_dir=str(tmp_path / "dead"),
        key_source=key_source_of_tests(),
        work_dir=str(tmp_path / "flink"),
        checkpoint_interval_ms=1000,
        metrics_port=port,
    )
    job = LiveJob(request).start()
    prometheus = PrometheusServer(tmp_path / "prometheus", [f"127.0.0.1:{port}"]).start()
    try:
        total = _publish_fresh(kafka_server.bootstrap, topic, 2000, 80)

        def read() -> float:
            job.check()
            found = prometheus.values("sum(microtarget_events_read_total)")
            if not found:  # not scraped yet
                return 0.0
            return found[0][1] - base.get(("microtarget_events_read_total", ()), 0.0)

        deadline = time.monotonic() + 600
        while read() < total and time.monotonic() < deadline:
            time.sleep(2)
        assert read() == total
        assert prometheus.values('up{job="microtarget"}')[0][1] == 1.0
        dead = {
            labels["reason"]: value - base.get(("microtarget_dead_letters_total", ((k, r),)), 0.0)
            for labels, value in prometheus.values("microtarget_dead_letters_total")
            for k, r in labels.items()
            if k == "reason"
        }
        assert {reason: n for reason, n in dead.items() if n} == {"undecodable_message": 2.0}

        # The consumer group's offsets are committed as checkpoints finalize: the lag
        # falls to 0 once a checkpoint covers everything.
        def lag() -> float | None:
            found = prometheus.values("sum(microtarget_kafka_consumer_lag)")
            return found[0][1] if found else None

        deadline = time.monotonic() + 120
        while lag() != 0.0 and time.monotonic() < deadline:
            time.sleep(2)
        assert lag() == 0.0
        partitions = prometheus.values("microtarget_kafka_consumer_lag")
        assert sorted(labels["partition"] for labels, _ in partitions) == ["0", "1"]

        # Fresh events reach Redis within seconds, not at the age of a file: most of
        # this job's profile writes (the histogram's growth since it started; replays
        # earlier in this process observed the age of their files) took under 60 s.
        name = "microtarget_redis_write_latency_seconds_bucket"
        grown = {
            labels["le"]: value - base.get((name, (("le", labels["le"]), ("sink", "profiles"))), 0)
            for labels, value in prometheus.values(f'{name}{{sink="profiles"}}')
        }
        assert grown["+Inf"] > 0 and grown["60.0"] / grown["+Inf"] > 0.5, grown
        watermark_lag = prometheus.values("max(microtarget_watermark_lag_seconds)")
        assert 0 <= watermark_lag[0][1] < 600, watermark_lag
        info = prometheus.values("microtarget_job_info")
        assert [labels["namespace"] for labels, _ in info] == [namespace]

        for query in _queries():
            answer = prometheus.query(query)
            assert answer["status"] == "success", (query, answer)
    finally:
        prometheus.stop()
        job.stop()
    job.assert_cancelled()
