"""End to end on the real Taobao file: import, replay into a real Redis, check against plain Python.

Marked slow (three replays of 84,440 events); CI runs it.
"""

from __future__ import annotations

import collections
import csv

import pytest

from pipelines.config import Config
from runners import replay
from schemas.codecs import read_container, write_container
from tests.conftest import DATASETS, granted_config, key_source_of_tests, pseudo
from tests.redis_state import namespace_state
from transforms import redis_sink
from transforms.importers import import_taobao, write_events

TAOBAO = DATASETS / "taobao_userbehavior" / "UserBehavior.csv"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not TAOBAO.exists(), reason=f"Taobao file not found at {TAOBAO}"),
]
GAP_MS = Config().sessions.gap
WEIGHTS = {"pv": 1.0, "cart": 3.0, "buy": 5.0, "fav": 2.0}
HALF_LIFE_MS = Config().profile.affinity_half_life


@pytest.fixture(scope="module")
def taobao(tmp_path_factory):
    """The Taobao file imported once, and the same events in reverse order."""
    folder = tmp_path_factory.mktemp("taobao")
    items, report = import_taobao([TAOBAO])
    written, _ = write_events(items, folder / "taobao.avro")
    assert report.reconciles()
    events = list(read_container(folder / "taobao.avro"))
    write_container(folder / "reversed.avro", reversed(events))
    return {"path": folder / "taobao.avro", "reversed": folder / "reversed.avro", "n": written}


@pytest.fixture(scope="module")
def plain(taobao):
    """Per-user facts computed with nothing but csv and Python from the CSV itself."""
    rows = set()  # identical rows are one event (the importer gives them one id)
    with open(TAOBAO, newline="") as handle:
        for row in csv.reader(handle):
            if row[0] == "user_id":
                continue
            rows.add(tuple(row))
    kept = {r for r in rows if 1511539200 <= int(r[4]) < 1512316800}  # the dataset's 9 days
    by_user = collections.defaultdict(list)
    for user, item, category, behaviour, ts in kept:
        by_user[user].append((int(ts) * 1000, item, category, behaviour))
    facts = {}
    for user, events in by_user.items():
        events.sort()
        sessions = 1 + sum(
            1 for a, b in zip(events, events[1:], strict=False) if b[0] - a[0] >= GAP_MS
        )
        affinity = collections.Counter()
        last = events[-1][0]
        for ts, _, category, behaviour in events:
            affinity[category] += WEIGHTS[behaviour] * 2 ** ((ts - last) / HALF_LIFE_MS)
        ranked = sorted(affinity.items(), key=lambda kv: (-kv[1], kv[0]))
        facts[user] = {
            "events": len(events),
            "sessions": sessions,
            "last_seen": events[-1][0],
            "first_seen": events[0][0],
            "purchases": sum(1 for e in events if e[3] == "buy"),
            "categories": len(affinity),
            "top": [c for c, score in ranked if score >= ranked[0][1] * (1 - 1e-9)],
            "counts": collections.Counter(e[3] for e in events),
        }
    return facts


@pytest.fixture(scope="module")
def replayed(taobao, redis_server):
    import redis

    client = redis.Redis.from_url(redis_server.url)
    request = replay.ReplayRequest(
        inputs=[str(taobao["path"])],
        redis_url=redis_server.url,
        namespace="taobao",
        config=granted_config(),
        key_source=key_source_of_tests(),
    )
    summary = replay.run(request)
    return {"summary": summary, "client": client, "request": request}


def test_counts_reconcile(replayed, taobao, plain):
    s = replayed["summary"]
    assert s["events_read"] == taobao["n"]
    assert s["events_read"] == s["valid"] + s["invalid"]
    assert s["valid"] == s["unique"] + s["duplicates"]
    assert s["unique"] == sum(f["events"] for f in plain.values())
    assert s["dead_letters"] == s["invalid"] + s["late"]
    assert s["profiles"] == len(plain)
    assert s["sessions"] == sum(f["sessions"] for f in plain.values())
    assert s["redis_writes_stale"] == 0


def test_profiles_match_plain_python(replayed, plain):
    client = replayed["client"]
    keys = list(client.scan_iter(match="mt:taobao:profile:*", count=1000))
    assert len(keys) == len(plain)
    checked_top = 0
    for user, fact in plain.items():
        snap = redis_sink.read_profile(client, "taobao", pseudo(user))
        assert snap["events"] == fact["events"], user
        assert snap["sessions"] == fact["sessions"], user
        assert snap["first_seen"] == fact["first_seen"], user
        assert snap["last_seen"] == fact["last_seen"], user
        assert snap["rfm"]["frequency"] == fact["purchases"], user
        assert snap["counts"].get("product_view", 0) == fact["counts"]["pv"], user
        if fact["categories"] <= 40:  # the profile never had to prune its affinity map
            assert snap["top_category"] in fact["top"], user
            checked_top += 1
    assert checked_top > len(plain) // 4


def test_replaying_again_changes_nothing(replayed):
    client = replayed["client"]
    before = namespace_state(client, "taobao")
    again = replay.run(replayed["request"])
    assert again["redis_writes_applied"] == 0
    assert again["redis_writes_stale"] > 0
    assert namespace_state(client, "taobao") == before


def test_reversed_file_gives_the_same_state(replayed, taobao, redis_server):
    client = replayed["client"]
    request = replay.ReplayRequest(
        inputs=[str(taobao["reversed"])],
        redis_url=redis_server.url,
        namespace="taobaorev",
        config=granted_config(),
        key_source=key_source_of_tests(),
    )
    replay.run(request)
    forward = namespace_state(client, "taobao")
    backward = namespace_state(client, "taobaorev", rename_to="taobao")
    assert len(forward) > 2 * 815
    assert backward == forward
