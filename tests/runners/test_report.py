"""`microtarget report`: the page and its numbers, reconciled with what a replay leaves."""

from __future__ import annotations

import json
import re

import pytest

from pipelines.config import load_config
from runners import cli
from tests.conftest import ROOT, generate_events

CONFIG = ROOT / "examples" / "config.yaml"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    return generate_events(tmp_path_factory.mktemp("gen"), 6000, 120, 11)


def test_the_report_s_a_b_tests_and_segments_agree_with_a_replay_s_redis(
    generated, tmp_path, redis_url, redis_client, namespace, capsys
):
    flags = ["--redis", redis_url, "--insecure-dev-key", "--quiet"]
    out = tmp_path / "report"
    code = cli.main(
        ["report", str(generated), "--config", str(CONFIG), "--out", str(out), *flags]
        + ["--dead-letters", str(tmp_path / "dead")]
    )
    assert code == 0
    printed = capsys.readouterr().out
    found = json.loads((out / "report.json").read_text())
    # The report's own namespace is gone; nothing per user reached the folder.
    assert not list(redis_client.scan_iter(match="mt:report-*", count=1000))
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "report.json"]

    # The same events replayed into a namespace: each user's trigger log says who was
    # sent and who was held out of each pattern.
    assert cli.main(
        ["replay", str(generated), "--config", str(CONFIG), "--namespace", namespace, *flags]
        + ["--dead-letters", str(tmp_path / "dead2")]
    ) == 0  # fmt: skip
    groups: dict = {}
    for log in redis_client.scan_iter(match=f"mt:{namespace}:triggers:*", count=1000):
        for entry in redis_client.lrange(log, 0, -1):
            trigger = json.loads(entry)
            groups.setdefault(trigger["pattern"], {}).setdefault(trigger["user_id"], set()).add(
                trigger["holdout"]
            )
    config = load_config(CONFIG)
    assert set(found["triggers"]) == set(config.patterns)
    tested = 0
    for pattern, test in found["triggers"].items():
        users = groups.get(pattern, {})
        # A user is held out of a pattern for good: one group per user and pattern.
        assert all(len(held) == 1 for held in users.values())
        control = sum(1 for held in users.values() if True in held)
        by_user = test["by_user"]
        assert (by_user["treatment"]["n"], by_user["control"]["n"]) == (
            len(users) - control,
            control,
        ), pattern
        assert test["by_trigger"]["treatment"]["n"] >= by_user["treatment"]["n"]
        assert by_user["sentence"] in printed
        tested += by_user["difference"] is not None
    assert tested >= 3

    # Members at the end of each segment's series: the segment's size in Redis.
    for name, segment in found["segments"].items():
        size = redis_client.zcard(f"mt:{namespace}:segment:{name}")
        members = segment["series"][-1][3] if segment["series"] else 0
        assert members == size, name
        assert segment["min_size"] == config.segments[name].min_size
        assert segment["entries"] - segment["exits"] == members
    lifted = [s["lift"] for s in found["segments"].values() if s["lift"]["ratio"] is not None]
    assert lifted and all(x["ci95"][0] <= x["ratio"] <= x["ci95"][1] for x in lifted)
    assert set(found["models"]) == set(config.models.enabled)
    for name in ("purchase_intent", "churn_risk"):
        summary = found["models"][name]["summary"]
        points = summary["series"]["points"]
        assert len(points) > 10 and points[-1][1] <= summary["samples"]
        assert sum(b["examples"] for b in summary["calibration"]) == summary["samples"]
    served = found["served_intent"]
    assert sorted(served["by_event"]) == ["1", "3", "5"]
    assert all(f["n"] <= served["test_sessions"] for f in served["by_event"].values())
    assert 0.5 < served["by_event"]["1"]["auc"] <= 1 and served["reference"]["auc"] > 0.5
    bias = found["bias"]
    assert {"device", "country", "region", "visitor"} <= set(bias["attributes"])
    device = bias["attributes"]["device"]
    assert sum(device["rates"]["trigger_rate"]["users"].values()) <= found["audited_users"]
    assert set(device["rates"]) == {"trigger_rate"} | {f"segment:{s}" for s in config.segments}
    assert all(f["sentence"] for f in bias["flags"])

    # From the namespace alone: the same segment sizes over time and models; the rest
    # needs a replay, and the page says so.
    from_redis = tmp_path / "from-redis"
    assert cli.main(
        ["report", "--from-redis", namespace, "--config", str(CONFIG), "--out", str(from_redis)]
        + ["--redis", redis_url, "--quiet"]
    ) == 0  # fmt: skip
    kept = json.loads((from_redis / "report.json").read_text())
    assert kept["models"] == found["models"]
    assert {n: s["series"] for n, s in kept["segments"].items()} == {
        n: s["series"] for n, s in found["segments"].items()
    }
    assert set(kept["unavailable"]) == {"triggers", "served_intent", "bias"}
    shown = (from_redis / "index.html").read_text()
    assert sorted(re.findall(r"<figure data-plot='(\w+)'>", shown)) == sorted(kept["plots"])
    assert "run `microtarget report FILES`" in shown

    # The page: one static file, a figure with an SVG for each plot, no script.
    page = (out / "index.html").read_text()
    plots = re.findall(r"<figure data-plot='(\w+)'>.*?<svg", page, flags=re.S)
    assert sorted(plots) == sorted(found["plots"])
    assert "<script" not in page
    assert not re.search(r"""(src|href|url)\s*[=(]\s*["']?https?:""", page)


def test_audit_records_come_from_a_batch_release_only():
    from transforms.timeline import UserTimeline

    with pytest.raises(ValueError, match="batch release only"):
        UserTimeline(load_config(CONFIG).timeline_params(), streaming=True, audit=True)


def test_what_the_report_records_changes_nothing_the_replay_stores(
    generated, tmp_path, redis_url, redis_client, namespace
):
    from runners import replay
    from tests.conftest import key_source_of_tests
    from tests.redis_state import namespace_state

    states = {}
    for mode in ("plain", "recorded"):
        request = replay.ReplayRequest(
            inputs=[str(generated)],
            redis_url=redis_url,
            namespace=f"{namespace}{mode}",
            config=load_config(CONFIG),
            dead_letters_dir=str(tmp_path / f"dead-{mode}"),
            key_source=key_source_of_tests(),
            record_dir=str(tmp_path / "records") if mode == "recorded" else None,
        )
        summary = replay.run(request)
        states[mode] = namespace_state(redis_client, request.namespace, rename_to=namespace)
        summary.pop("wall_seconds"), summary.pop("events_per_second")
        states[f"{mode} summary"] = summary
    assert states["recorded"] == states["plain"]
    assert states["recorded summary"] == states["plain summary"]
    probes = replay.read_records(str(tmp_path / "records"), "probes")
    inputs = replay.read_records(str(tmp_path / "records"), "intent_inputs")
    sessions = {i["id"] for i in inputs if i["kind"] == "example"}
    assert len(probes) > len(sessions) > 100
    assert {probe["probe"].rpartition(":")[0] for probe in probes} <= sessions
    # The probes' features, and the sessions' prefixes learned (each of a whole session).
    assert sorted(i["id"] for i in inputs if i["kind"] == "probe") == sorted(
        probe["probe"] for probe in probes
    )
    prefixes = [i["id"] for i in inputs if i["kind"] == "prefix"]
    assert prefixes and {p.rpartition("#")[0] for p in prefixes} <= sessions
