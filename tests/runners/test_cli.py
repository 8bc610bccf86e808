"""The ``microtarget`` command and ``python -m pipelines.personalize`` on a generated file."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from runners import cli
from runners.local import redis_server as local_redis
from tests.conftest import ROOT, pseudo


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "events.avro"
    assert (
        cli.main(
            ["generate", "--events", "3000", "--users", "60", "--seed", "5", "--out", str(out)]
        )
        == 0
    )
    return out


def test_replay_writes_profiles_and_a_summary_that_reconciles(
    generated, tmp_path, redis_url, namespace, capsys
):
    summary_path = tmp_path / "summary.json"
    code = cli.main(
        [
            "replay",
            str(generated),
            "--redis",
            redis_url,
            "--namespace",
            namespace,
            "--dead-letters",
            str(tmp_path / "dead"),
            "--summary-json",
            str(summary_path),
            "--quiet",
        ]
    )
    assert code == 0
    summary = json.loads(summary_path.read_text())
    truth = json.loads(generated.with_suffix(".personas.json").read_text())
    assert summary["events_read"] == 3000
    assert summary["duplicates"] == truth["duplicates"] > 0
    assert summary["profiles"] == 60
    assert summary["invalid"] == 0
    printed = capsys.readouterr().out
    assert "events_read" in printed and namespace in printed

    user = sorted(truth["personas"])[0]
    assert cli.main(["profile", user, "--redis", redis_url, "--namespace", namespace]) == 0
    profile = json.loads(capsys.readouterr().out)
    assert profile["user_id"] == pseudo(user) and profile["events"] > 0
    assert cli.main(["profile", "nobody", "--redis", redis_url, "--namespace", namespace]) == 1


def test_bad_config_fails_at_start_naming_the_field(generated, tmp_path, redis_url, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("sessions:\n  gap: soon\n")
    code = cli.main(["replay", str(generated), "--redis", redis_url, "--config", str(config)])
    assert code == 2
    assert "sessions.gap" in capsys.readouterr().err


def test_missing_input_fails_at_start(tmp_path, redis_url, capsys):
    code = cli.main(["replay", str(tmp_path / "nothing*.avro"), "--redis", redis_url])
    assert code == 2
    assert "no file matches" in capsys.readouterr().err


def test_python_m_personalize_runs_with_beam_flags(generated, tmp_path, redis_url, namespace):
    summary = tmp_path / "s.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.personalize",
            f"--input={generated}",
            f"--redis={redis_url}",
            f"--namespace={namespace}",
            f"--dead_letters={tmp_path / 'dead'}",
            f"--summary_json={summary}",
            "--runner=FnApiRunner",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(summary.read_text())["events_read"] == 3000


def test_embedded_redis_starts_once_and_stops_by_pid(tmp_path):
    url = local_redis.ensure_embedded(tmp_path)
    assert local_redis.ensure_embedded(tmp_path) == url
    pid = int((tmp_path / "redis.pid").read_text())
    assert local_redis.stop_embedded(tmp_path) is True
    assert not local_redis._alive(pid) or _zombie(pid)
    assert local_redis.stop_embedded(tmp_path) is False


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] == "Z"
    except OSError:
        return True


def test_unreachable_redis_fails_at_start(generated, capsys):
    code = cli.main(["replay", str(generated), "--redis", "redis://user:pw@127.0.0.1:1/0"])
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot reach Redis" in err and "pw" not in err


BAD_PATTERNS = {
    "unknown field": (
        "stages: [{name: v, where: {event_typ: product_view}}]",
        "patterns.p1.stages.0.where: event_typ: unknown field",
    ),
    "unknown operator": (
        "stages: [{name: v, where: {dwell_ms: {atleast: 60s}}}]",
        "patterns.p1.stages.0.where: dwell_ms.atleast: unknown operator",
    ),
    "negative duration": (
        "within: -5m\n    stages: [{name: v, where: {event_type: search}}]",
        "patterns.p1.within: duration must not be negative",
    ),
    "negated first stage": (
        "stages: [{name: v, where: {event_type: search}, follows: not_followed_by}]",
        "patterns.p1: stages.0 (v): the first stage cannot be negated",
    ),
    "unknown pattern key": (
        "withn: 5m\n    stages: [{name: v, where: {event_type: search}}]",
        "patterns.p1.withn: Extra inputs are not permitted",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_PATTERNS))
def test_bad_pattern_fails_at_start_naming_pattern_and_field(
    case, generated, tmp_path, redis_url, capsys
):
    body, expected = BAD_PATTERNS[case]
    config = tmp_path / "bad.yaml"
    config.write_text(f"patterns:\n  p1:\n    {body}\n")
    code = cli.main(["replay", str(generated), "--redis", redis_url, "--config", str(config)])
    assert code == 2
    err = capsys.readouterr().err
    assert expected in err, err


def test_patterns_file_next_to_the_config_is_read(tmp_path):
    from pipelines.config import load_config

    (tmp_path / "pack.yaml").write_text("p1:\n  stages: [{name: s, where: {event_type: search}}]\n")
    (tmp_path / "config.yaml").write_text("patterns: pack.yaml\n")
    assert list(load_config(tmp_path / "config.yaml").patterns) == ["p1"]
    (tmp_path / "config.yaml").write_text("patterns: missing.yaml\n")
    with pytest.raises(ValueError, match="patterns: cannot read"):
        load_config(tmp_path / "config.yaml")


def test_replay_with_the_pattern_pack_prints_and_publishes_triggers(
    generated, tmp_path, redis_url, namespace, capsys
):
    args = ["--redis", redis_url, "--namespace", namespace]
    config = str(ROOT / "examples" / "config.yaml")
    dead = str(tmp_path / "dead")
    summary_path = tmp_path / "summary.json"
    code = cli.main(
        ["replay", str(generated), *args, "--config", config, "--dead-letters", dead]
        + ["--summary-json", str(summary_path), "--quiet"]
    )
    assert code == 0
    summary = json.loads(summary_path.read_text())
    assert summary["triggers"] > 0
    assert summary["triggers"] == sum(summary["triggers_by_pattern"].values())
    assert summary["triggers_published"] == summary["triggers"] - summary["triggers_holdout"]
    held = summary["triggers_holdout_by_pattern"]
    assert sum(held.values()) == summary["triggers_holdout"] > 0
    assert all(held[name] <= summary["triggers_by_pattern"][name] for name in held)
    converted = summary["converted_treatment_by_pattern"], summary["converted_control_by_pattern"]
    assert all(set(counts) <= set(summary["triggers_by_pattern"]) for counts in converted)
    matched = sum(summary["matches_by_pattern"].values())
    assert matched == summary["triggers"] + sum(summary["triggers_suppressed"].values())
    capsys.readouterr()
    assert cli.main(["triggers", "--json", *args]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == summary["triggers_published"]
    first = json.loads(lines[0])
    assert first["holdout"] is False and first["pattern"] in summary["triggers_by_pattern"]
    assert cli.main(["triggers", *args]) == 0
    assert first["user_id"][:16] in capsys.readouterr().out


def test_replay_streaming_gives_the_batch_triggers(generated, tmp_path, redis_url, capsys):
    config = str(ROOT / "examples" / "config.yaml")
    published = {}
    for mode in ("batch", "streaming"):
        namespace = f"cli-{mode}"
        extra = ["--streaming", "--watermark-step", "6h"] if mode == "streaming" else []
        code = cli.main(
            ["replay", str(generated), "--redis", redis_url, "--namespace", namespace]
            + ["--config", config, "--dead-letters", str(tmp_path / mode), "--quiet", *extra]
        )
        assert code == 0
        capsys.readouterr()
        assert cli.main(["triggers", "--json", "--redis", redis_url, "--namespace", namespace]) == 0
        published[mode] = sorted(capsys.readouterr().out.splitlines())
    assert published["batch"] and published["batch"] == published["streaming"]


def test_a_pattern_window_must_be_shorter_than_the_retention():
    from pipelines.config import ConfigError, parse_config

    pattern = {"within": "40d", "stages": [{"name": "s", "where": {"event_type": "search"}}]}
    with pytest.raises(ConfigError, match=r"patterns\.p1\.within must be shorter"):
        parse_config({"patterns": {"p1": pattern}})
    assert parse_config({"patterns": {"p1": pattern}, "timeline": {"retention": "60d"}})


def test_intent_prefixes_and_the_optimizer_are_checked_at_start():
    from pipelines.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"models\.intent_prefixes\.1: Input should be greater"):
        parse_config({"models": {"intent_prefixes": [1, 0]}})
    with pytest.raises(ConfigError, match=r"models\.optimizer"):
        parse_config({"models": {"optimizer": "adam"}})
    config = parse_config(
        {"models": {"enabled": ["purchase_intent"], "intent_prefixes": [3, 1, 3]}}
    )
    assert config.timeline_params().intent_prefixes == (1, 3)
    assert config.model_specs()["purchase_intent"].optimizer == "adagrad"
    assert parse_config({}).timeline_params().intent_prefixes == (3,)


def test_recommendations_within_segments_get_the_segments_parents_first():
    from pipelines.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"recommendations\.segment_weight"):
        parse_config({"recommendations": {"segment_weight": 2}})
    segments = {
        "child": {"parent": "top", "min_size": 5, "where": {"engagement": {"gte": 0.9}}},
        "top": {"where": {"engagement": {"gte": 0.5}}},
    }
    config = parse_config(
        {
            "models": {"enabled": ["recommendations"]},
            "recommendations": {"segment_weight": 0.25},
            "segments": segments,
        }
    )
    params = dict(config.model_specs()["recommendations"].recommender)
    assert params["segment_weight"] == 0.25
    assert params["segments"] == (("top", None, 0), ("child", "top", 5))
    assert config.timeline_params().recommend_within_segments
    # Weight 0, the default: the global list only, no segment is passed.
    config = parse_config({"models": {"enabled": ["recommendations"]}, "segments": segments})
    params = dict(config.model_specs()["recommendations"].recommender)
    assert "segments" not in params and "segment_weight" not in params
    assert "similar_items" not in params and params["reminders"] == 0.5  # the defaults
    config = parse_config(
        {"models": {"enabled": ["recommendations"]}, "recommendations": {"similar_items": False}}
    )
    assert dict(config.model_specs()["recommendations"].recommender)["similar_items"] is False
    assert not config.timeline_params().recommend_within_segments
    # Replicated copies by default; only the recommendations model is ever replicated.
    enabled = {"enabled": ["recommendations", "purchase_intent"], "shards": 2}
    specs = parse_config({"models": enabled}).model_specs()
    assert specs["recommendations"].replicated and not specs["purchase_intent"].replicated
    apart = parse_config({"models": enabled, "recommendations": {"replicated": False}})
    assert not apart.model_specs()["recommendations"].replicated


def test_evaluate_reports_models_baselines_segments_and_lift(
    generated, tmp_path, redis_url, namespace, capsys
):
    out = tmp_path / "evaluation.json"
    config = str(ROOT / "examples" / "config.yaml")
    code = cli.main(
        ["evaluate", str(generated), "--redis", redis_url, "--namespace", namespace]
        + ["--config", config, "--json", str(out), "--quiet", "--dead-letters", str(tmp_path)]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "purchase_intent" in printed and "baseline purchase_intent.views" in printed
    found = json.loads(out.read_text())
    assert set(found) == {"models", "baselines", "segments", "lift", "recommendations"}
    recs = found["recommendations"]
    assert recs["algorithm"] == "session_knn" and recs["clicks_scored"].startswith("all")
    # A share of users' clicks is scored, and the baselines on exactly those clicks.
    assert 0 < recs["predictions"] < recs["clicks"]
    assert recs["baselines"]["spop"]["predictions"] == recs["predictions"]
    assert 0 <= recs["baselines"]["pop"]["hr_at_20"] <= recs["hr_at_20"] <= 100
    assert "recommendations (session_knn, top 20" in printed
    intent = found["models"]["purchase_intent"]
    assert 0.5 < intent["roc_auc"] <= 1 and intent["log_loss"] > 0
    assert found["baselines"]["purchase_intent.majority"]["roc_auc"] == 0.5
    # The baselines are measured on the same examples as the model.
    assert found["baselines"]["purchase_intent.views"]["samples"] == intent["samples"] > 0
    assert 0 <= found["models"]["clusters"]["silhouette"] < 1
    assert found["segments"]["buyers"]["size"] > 0
    buyers = found["lift"]["segment:buyers"]
    assert buyers["entries"] > 0 and buyers["base_rate"] > 0
    assert buyers["lift"] == round(buyers["rate"] / buyers["base_rate"], 4)
    low, high = buyers["ci95"]
    assert low < buyers["lift"] < high
    assert "pattern:cart_abandonment" in found["lift"]


def test_sharded_models_write_a_summary_per_shard_and_evaluate_combines_them(
    generated, tmp_path, redis_url, namespace, capsys
):
    import redis

    out = tmp_path / "evaluation.json"
    config = tmp_path / "sharded.yaml"
    config.write_text("models:\n  enabled: [purchase_intent, clusters]\n  shards: 2\n")
    code = cli.main(
        ["evaluate", str(generated), "--redis", redis_url, "--namespace", namespace]
        + ["--config", str(config), "--json", str(out), "--quiet", "--dead-letters", str(tmp_path)]
    )
    assert code == 0
    assert "shards: purchase_intent 2, clusters 2" in capsys.readouterr().out
    found = json.loads(out.read_text())["models"]
    client = redis.Redis.from_url(redis_url)
    for name in ("purchase_intent", "clusters"):
        assert not client.exists(f"mt:{namespace}:model:{name}")
        shards = [
            json.loads(client.hget(f"mt:{namespace}:model:{name}:{k}", "summary")) for k in range(2)
        ]
        assert [s["shard"] for s in shards] == [0, 1] and {s["shards"] for s in shards} == {2}
        assert all(s["samples"] > 0 for s in shards)
        assert found[name]["shards"] == 2
    assert found["purchase_intent"]["samples"] == sum(
        json.loads(client.hget(f"mt:{namespace}:model:purchase_intent:{k}", "summary"))["samples"]
        for k in range(2)
    )
    intent = found["purchase_intent"]
    weighted = sum(s["metrics"]["log_loss"] * s["samples"] for s in (
        json.loads(client.hget(f"mt:{namespace}:model:purchase_intent:{k}", "summary"))
        for k in range(2)
    )) / intent["samples"]  # fmt: skip
    assert intent["log_loss"] == round(weighted, 6)
    client.close()


def test_replicated_recommendations_copies_leave_the_lists_of_one_model(
    generated, tmp_path, redis_url, namespace, capsys
):
    import redis

    from tests.redis_state import namespace_state

    found, states = {}, {}
    client = redis.Redis.from_url(redis_url)
    for shards in (1, 2):
        config = tmp_path / f"shards{shards}.yaml"
        config.write_text(
            f"models:\n  enabled: [recommendations]\n  shards: {shards}\n"
            "recommendations:\n  evaluate_share: 1.0\n"
        )
        out = tmp_path / f"evaluation{shards}.json"
        code = cli.main(
            ["evaluate", str(generated), "--redis", redis_url]
            + ["--namespace", f"{namespace}{shards}"]
            + ["--config", str(config), "--json", str(out), "--quiet"]
            + ["--dead-letters", str(tmp_path / f"dead{shards}")]
        )
        assert code == 0
        found[shards] = json.loads(out.read_text())["recommendations"]
        state = namespace_state(client, f"{namespace}{shards}", rename_to=namespace)
        states[shards] = {k: v for k, v in state.items() if ":model:" not in k}
    client.close()
    one, two = found[1], found[2]
    assert two["shards"] == 2 and two["replicated"] and one["predictions"] > 100
    for name in ("hr_at_20", "mrr_at_20", "predictions", "clicks", "baselines"):
        assert two[name] == one[name], name
    assert two["size"]["sessions"] == 2 * one["size"]["sessions"]  # each copy holds them all
    # Every list, similar items and profile in Redis is the one a single model leaves.
    assert sum(":similar:" in k for k in states[1]) > 10
    assert states[2] == states[1]


def test_bad_segment_fails_at_start_naming_segment_and_field(
    generated, tmp_path, redis_url, capsys
):
    config = tmp_path / "bad.yaml"
    config.write_text("segments:\n  vip:\n    where: {ltv: {gte: 100}, rfm.frequncy: {gte: 2}}\n")
    code = cli.main(["replay", str(generated), "--redis", redis_url, "--config", str(config)])
    assert code == 2
    err = capsys.readouterr().err
    assert "segments.vip.where.rfm.frequncy: unknown field 'rfm.frequncy'" in err, err


def _keys_holding(client, needle: bytes) -> list[bytes]:
    """Every key of the server whose name or value holds ``needle``, whatever its type."""
    found = []
    for name in client.scan_iter(count=1000):
        kind = client.type(name)
        if kind == b"string":
            values = [client.get(name)]
        elif kind == b"hash":
            values = [b for pair in client.hgetall(name).items() for b in pair]
        elif kind == b"set":
            values = list(client.smembers(name))
        elif kind == b"zset":
            values = client.zrange(name, 0, -1)
        elif kind == b"list":
            values = client.lrange(name, 0, -1)
        elif kind == b"stream":
            values = [
                b for _, fields in client.xrange(name) for pair in fields.items() for b in pair
            ]
        else:
            raise AssertionError(f"unexpected type {kind!r} of {name!r}")
        if needle in name or any(needle in (value or b"") for value in values):
            found.append(name)
    return found


def test_an_erasure_after_evaluate_leaves_the_user_nowhere_in_redis(generated, tmp_path):
    import redis

    truth = json.loads(generated.with_suffix(".personas.json").read_text())
    user = sorted(truth["personas"])[0]
    config = str(ROOT / "examples" / "config.yaml")
    # A server of its own: every key in it is this test's.
    with local_redis.RedisServer(tmp_path / "redis") as server:
        flags = ["--redis", server.url, "--dead-letters", str(tmp_path / "dead")]
        replay = ["replay", str(generated), "--config", config, "--quiet", *flags]
        assert cli.main(replay) == 0
        evaluate = ["evaluate", str(generated), "--config", config, "--quiet", *flags]
        assert cli.main(evaluate + ["--json", str(tmp_path / "e.json")]) == 0
        client = redis.Redis.from_url(server.url)
        needle = pseudo(user).encode()
        assert _keys_holding(client, needle), "the replay wrote the user's data"
        assert cli.main(["erase", user, "--redis", server.url]) == 0
        assert _keys_holding(client, needle) == []
        # Evaluate keeps its output only where asked to, and says so.
        kept = ["--namespace", "kept"]
        assert cli.main(evaluate + kept) == 0
        assert _keys_holding(client, needle)
        assert cli.main(["erase", user, "--redis", server.url, *kept]) == 0
        assert _keys_holding(client, needle) == []
        client.close()
