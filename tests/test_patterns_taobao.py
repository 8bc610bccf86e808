"""The default pattern pack on the real Taobao file: batch against streaming, and plain Python.

Marked slow: a batch replay and a streaming replay (TestStream, the watermark
advancing hourly) of 84,440 events; CI runs it.
"""

from __future__ import annotations

import collections
import csv
import hashlib
import json

import pytest

from pipelines.config import load_config
from runners import replay
from tests.conftest import DATASETS, ROOT, key_source_of_tests, pseudo
from tests.redis_state import namespace_state
from tests.test_replay_taobao import taobao  # noqa: F401 (a fixture)

TAOBAO = DATASETS / "taobao_userbehavior" / "UserBehavior.csv"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not TAOBAO.exists(), reason=f"Taobao file not found at {TAOBAO}"),
]
CONFIG = load_config(ROOT / "examples" / "config.yaml")
MIN = 60_000
DAY = 86_400_000


@pytest.fixture(scope="module")
def replays(taobao, redis_server, tmp_path_factory):  # noqa: F811
    """The file replayed in batch and as a stream, each into its own namespace."""
    out = {}
    for mode in ("batch", "stream"):
        request = replay.ReplayRequest(
            inputs=[str(taobao["path"])],
            redis_url=redis_server.url,
            namespace=f"patterns-{mode}",
            config=CONFIG,
            dead_letters_dir=str(tmp_path_factory.mktemp(f"dead-{mode}")),
            streaming=mode == "stream",
            key_source=key_source_of_tests(),
        )
        out[mode] = {"summary": replay.run(request), "namespace": request.namespace}
    return out


def _published(client, namespace: str) -> list[tuple[bytes, bytes]]:
    entries = client.xrange(f"mt:{namespace}:topic:triggers")
    return sorted((fields[b"trigger_id"], fields[b"trigger"]) for _, fields in entries)


def _comparable(client, namespace: str) -> dict:
    """The namespace's state with the stream as a sorted list (its entry ids are wall-clock)."""
    state = namespace_state(client, namespace)
    renamed = {}
    for key, (kind, content) in state.items():
        if kind == "stream":
            content = sorted(sorted(fields.items()) for fields in content)
        renamed[key.removeprefix(f"mt:{namespace}:")] = (kind, content)
    return renamed


def test_batch_and_streaming_publish_identical_triggers(replays, redis_client):
    batch = _published(redis_client, replays["batch"]["namespace"])
    stream = _published(redis_client, replays["stream"]["namespace"])
    assert len(batch) > 100
    assert batch == stream
    assert len({trigger_id for trigger_id, _ in batch}) == len(batch)


def test_batch_and_streaming_leave_identical_redis_state(replays, redis_client):
    """Segments, profiles, triggers, and what the models learned and scored."""
    batch = _comparable(redis_client, replays["batch"]["namespace"])
    stream = _comparable(redis_client, replays["stream"]["namespace"])
    assert batch.keys() == stream.keys()
    assert any(k.startswith("segment:") for k in batch)
    assert sum(k.startswith("scores:") for k in batch) == 815
    # Every user (all consent in this config) has a list, the same in both.
    lists = [c for k, (_, c) in batch.items() if k.startswith("scores:")]
    assert sum(b"recommendations" in content for content in lists) == 815
    # Every product clicked has its similar items, as of its last click, the same in both.
    products = set()
    with open(TAOBAO, newline="") as handle:
        for row in csv.reader(handle):
            if row[0] != "user_id" and 1511539200 <= int(row[4]) < 1512316800:
                products.add(row[1])
    assert {k.removeprefix("similar:") for k in batch if k.startswith("similar:")} == products
    assert batch == stream


def test_streaming_summary_agrees_with_batch(replays):
    batch, stream = replays["batch"]["summary"], replays["stream"]["summary"]
    assert stream["events_read"] == batch["events_read"] == 84_440
    assert stream["dead_letters"] == batch["dead_letters"]
    assert stream["profiles_in_namespace"] == batch["profiles"] == 815
    assert stream["triggers_on_topic"] == batch["triggers_published"]


# ------------------------------------------------------------------ plain Python


def _event_id(line: str) -> str:
    text = "\x1f".join(("taobao", "UserBehavior.csv", line))
    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()[:20]


@pytest.fixture(scope="module")
def plain():
    """Matches, conversions and governed triggers per pattern, from the CSV with plain Python.

    cart_abandonment: a cart of an item not followed by a buy of the same item
    within 30 minutes (a buy at the same second counts when it sorts after the
    cart, as the timeline orders ties by event id); converted if the item is
    bought within 7 days after the deadline. rapid_comparison: 5 product views
    within 3 minutes, no overlap between matches.
    """
    by_user = collections.defaultdict(dict)
    with open(TAOBAO, newline="") as handle:
        for line in handle:
            line = line.rstrip("\r\n")
            row = next(csv.reader([line]))
            if row[0] == "user_id" or not 1511539200 <= int(row[4]) < 1512316800:
                continue
            user, item, _category, behaviour, ts = row
            by_user[user][_event_id(line)] = (int(ts) * 1000, _event_id(line), item, behaviour)
    matches = collections.Counter()
    converted = collections.Counter()
    triggers = collections.Counter()
    for rows in by_user.values():
        events = sorted(rows.values())
        found = []  # (event time, fired at a deadline, pattern index, order, pattern, first id)
        buys = collections.defaultdict(list)
        for order, (ts, _, item, behaviour) in enumerate(events):
            if behaviour == "buy":
                buys[item].append((ts, order))
        for order, (ts, eid, item, behaviour) in enumerate(events):
            if behaviour != "cart":
                continue
            deadline = ts + 30 * MIN
            if any(order < o and t <= deadline for t, o in buys[item]):
                continue
            found.append((deadline, 1, 1, order, "cart_abandonment", eid))
            if any(deadline < t <= deadline + 7 * DAY for t, _ in buys[item]):
                converted["cart_abandonment"] += 1
        views = [(ts, eid) for ts, eid, _, behaviour in events if behaviour == "pv"]
        i = 0
        while i + 4 < len(views):
            if views[i + 4][0] - views[i][0] <= 3 * MIN:
                found.append((views[i + 4][0], 0, 3, i, "rapid_comparison", views[i][1]))
                i += 5
            else:
                i += 1
        # Governance: cooldown 1h per pattern, at most 5 a UTC day (both groups alike).
        last, day, today = {}, None, 0
        for at, _, _, _, pattern, _ in sorted(found):
            matches[pattern] += 1
            if pattern in last and at - last[pattern] < 3_600_000:
                continue
            if at // DAY != day:
                day, today = at // DAY, 0
            if today >= 5:
                continue
            today += 1
            last[pattern] = at
            triggers[pattern] += 1
    return {"matches": matches, "converted": converted, "triggers": triggers}


def test_pattern_counts_match_plain_python(replays, plain):
    summary = replays["batch"]["summary"]
    fired = {name: n for name, n in summary["matches_by_pattern"].items() if n}
    assert fired == dict(plain["matches"])
    assert set(fired) == {"cart_abandonment", "rapid_comparison"}  # no dwell, search or price
    triggered = {name: n for name, n in summary["triggers_by_pattern"].items() if n}
    assert triggered == dict(plain["triggers"])
    assert summary["triggers"] == sum(plain["triggers"].values())
    assert summary["triggers_published"] == summary["triggers"] - summary["triggers_holdout"]


def test_share_of_abandoned_carts_bought_later_matches_plain_python(replays, plain):
    summary = replays["batch"]["summary"]
    abandoned = summary["matches_by_pattern"]["cart_abandonment"]
    bought_later = summary["converted_by_pattern"].get("cart_abandonment", 0)
    assert bought_later == plain["converted"]["cart_abandonment"]
    assert 0 < bought_later < abandoned
    print(
        f"cart_abandonment: {abandoned} abandoned carts, {bought_later} bought later "
        f"({bought_later / abandoned:.1%})"
    )


def test_batch_and_streaming_give_the_segments_plain_python_gives(replays, redis_client):
    """Memberships of two example segments, against the CSV read with plain Python."""
    buys, views = collections.Counter(), collections.Counter()
    with open(TAOBAO, newline="") as handle:
        seen = set()
        for line in handle:
            line = line.rstrip("\r\n")
            row = next(csv.reader([line]))
            if row[0] == "user_id" or not 1511539200 <= int(row[4]) < 1512316800:
                continue
            if line in seen:
                continue  # the same row twice is one event after deduplication
            seen.add(line)
            buys[row[0]] += row[3] == "buy"
            views[row[0]] += row[3] == "pv"
    buyers = {pseudo(u) for u, n in buys.items() if n >= 1}
    window_shoppers = {pseudo(u) for u, n in views.items() if n >= 20 and buys[u] == 0}
    assert buyers and window_shoppers
    for mode in ("batch", "stream"):
        namespace = replays[mode]["namespace"]
        found = {}
        for name in ("buyers", "window_shoppers"):
            raw = redis_client.zrange(f"mt:{namespace}:segment:{name}", 0, -1)
            found[name] = {member.decode() for member in raw}
        assert found == {"buyers": buyers, "window_shoppers": window_shoppers}, mode
        assert redis_client.xlen(f"mt:{namespace}:topic:segments") > len(buyers)


def test_batch_and_streaming_learn_the_same_models(replays, redis_client):
    """A streaming replay's learners see some inputs late, and correct for them.

    The user timelines release some model inputs after the learners' watermark
    passed them (``transforms.learners``); the learner goes back to a
    checkpoint and learns again, so the models end the same as in batch.
    """
    found = {}
    for mode in ("batch", "stream"):
        namespace = replays[mode]["namespace"]
        found[mode] = {}
        for name in ("purchase_intent", "churn_risk", "clusters", "recommendations"):
            raw = redis_client.hget(f"mt:{namespace}:model:{name}", "summary")
            found[mode][name] = json.loads(raw)
        assert found[mode]["purchase_intent"]["metrics"]["roc_auc"] > 0.5, mode
    assert found["batch"]["purchase_intent"]["samples"] > 10_000
    assert found["stream"] == found["batch"]
    print({name: summary["samples"] for name, summary in found["batch"].items()})
