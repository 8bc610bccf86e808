"""A replay of events full of personal data: none of it reaches Redis, the topic,
the dead letters or the output, and erasure and consent work end to end."""

from __future__ import annotations

import contextlib
import io
import json
import logging

import pytest

from runners import cli
from tests.conftest import ROOT, pseudo
from tests.redis_state import namespace_state, streams_by_user
from transforms import erasure, redis_sink

T0 = 1_700_000_000_000
MIN = 60_000
USERS = ["ann.lee@example.com", "bob.roe@example.org", "zoe.poe@example.net", "max.moe@example.de"]
PHONES = ["+49 170 1234567", "+1 (415) 555-0134", "0044 20 7946 0958", "+33 6 12 34 56 78"]
IPS = ["203.0.113.77", "198.51.100.23", "2001:db8:abcd:12::1", "192.0.2.201"]
ANON = "cookie-7f3a9c1e"  # an anonymous id, pseudonymized like the others
PLAIN = "annlee_1987"  # a user id that looks like nothing in particular
NUMERIC = 73519264  # a numeric user id, as some shops send them


def secrets() -> list[str]:
    """Every raw personal value in the file, as written and in its bare forms."""
    found = list(USERS) + [ANON, PLAIN, str(NUMERIC)] + ["Ann Lee", "Lindenstr. 5"]
    for phone in PHONES:
        found += [phone, "".join(ch for ch in phone if ch.isdigit())]
    found += IPS + [ip.rsplit(".", 1)[0] + "." for ip in IPS if "." in ip] + ["2001:db8:abcd"]
    return found


def events() -> list[dict]:
    out = []

    def add(n, user, minute, kind, **fields):
        out.append(
            {
                "event_id": f"e{n}-{user}",  # event ids that contain an address
                "user_id": user,
                "event_type": kind,
                "timestamp": T0 + int(minute * MIN),
                **fields,
            }
        )

    n = 0
    for i, user in enumerate(USERS):
        personal = {
            "email": user.upper(),
            "phone": PHONES[i],
            "ip": IPS[i],
            "page": f"/account?email={user}",
            "properties": {"name": "Ann Lee", "street": "Lindenstr. 5", "note": f"ip {IPS[i]}"},
        }
        for minute in range(0, 12, 2):
            n += 1
            add(n, user, minute, "product_view", product_id="p1", category="shoes", **personal)
        n += 1
        add(n, user, 13, "search", query=f"call me {PHONES[i]} or {user}", **personal)
        n += 1
        add(n, user, 14, "add_to_cart", product_id="p1", category="shoes", price=50.0, **personal)
    # An anonymous visitor with personal data too.
    add(n + 1, None, 3, "product_view", anonymous_id=ANON, product_id="p2", ip=IPS[0])
    for record in out:
        if record["user_id"] is None:
            del record["user_id"]
    # zoe asks for erasure at minute 20; her later events state no consent: nothing more.
    add(900, USERS[2], 20, "erasure_requested")
    add(901, USERS[2], 25, "product_view", product_id="p9", category="bags", email=USERS[2])
    add(902, USERS[2], 26, "add_to_cart", product_id="p9", category="bags")
    # max revokes at minute 20, then grants personalization again at minute 30.
    add(903, USERS[3], 20, "consent_revoked")
    add(904, USERS[3], 30, "product_view", product_id="p3", consent={"personalization": True})
    return out


def garbage() -> list[str]:
    """Records that will not decode, each carrying personal data."""
    return [
        f'{{"event_id": "g1", "user_id": "{USERS[0]}", "event_type": "click", '
        f'"timestamp": "yesterday", "ip": "{IPS[0]}", "phone": "{PHONES[0]}"}}',
        f'{{"event_id": "g2", "user_id": "{USERS[1]}", "timestamp": {T0}',  # cut short
        f"not json at all: {USERS[1]} {PHONES[1]} {IPS[1]}",
        json.dumps({"event_id": "g3", "user_id": PLAIN, "event_type": 7, "timestamp": T0}),
        json.dumps(
            {
                "event_id": "g4",
                "user_id": NUMERIC,
                "phone": 491701234567,
                "event_type": "click",
                "timestamp": T0,
                "properties": {"street": "Lindenstr. 5", "name": "Ann Lee"},
                "page": "/me?mail=ann.lee%40example.com",
                "quantity": "many",
            }
        ),
    ]


class _Keep(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def replayed(tmp_path_factory, redis_server):
    """The file replayed by the command line; what it printed and logged is kept."""
    folder = tmp_path_factory.mktemp("privacy")
    lines = [json.dumps(e) for e in events()] + garbage()
    (folder / "events.jsonl").write_text("\n".join(lines) + "\n")
    namespace, dead = "privacy", folder / "dead"
    out, err, logs = io.StringIO(), io.StringIO(), _Keep()
    root = logging.getLogger()
    level = root.level
    root.addHandler(logs)
    root.setLevel(logging.DEBUG)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(
                [
                    "replay",
                    str(folder / "events.jsonl"),
                    "--redis",
                    redis_server.url,
                    "--namespace",
                    namespace,
                    "--config",
                    str(ROOT / "examples" / "config.yaml"),
                    "--dead-letters",
                    str(dead),
                    "--summary-json",
                    str(folder / "summary.json"),
                    "--quiet",
                ]
            )
    finally:
        root.removeHandler(logs)
        root.setLevel(level)
    assert code == 0, err.getvalue()
    return {
        "file": folder / "events.jsonl",
        "namespace": namespace,
        "dead": dead,
        "summary": json.loads((folder / "summary.json").read_text()),
        "output": out.getvalue() + err.getvalue() + "\n".join(logs.lines),
    }


def test_no_personal_value_reaches_redis_the_topic_dead_letters_or_output(replayed, redis_client):
    summary, namespace = replayed["summary"], replayed["namespace"]
    assert summary["invalid"] == 5 and summary["erasures"] == 2
    assert summary["ip_addresses_dropped"] == 4 * 8 + 1
    assert summary["triggers_published"] > 0  # the topic has something to check
    assert replayed["output"]  # the run did print and log

    state = namespace_state(redis_client, namespace)
    assert any(kind == "stream" for kind, _ in state.values())
    stored = repr(state)
    letters = "".join(p.read_text() for p in replayed["dead"].glob("*.jsonl"))
    assert len(letters.splitlines()) == 5
    for secret in secrets():
        assert secret.lower() not in stored.lower(), f"{secret!r} in Redis"
        assert secret.lower() not in letters.lower(), f"{secret!r} in the dead letters"
        assert secret.lower() not in replayed["output"].lower(), f"{secret!r} in the output"
    # What is there is the pseudonyms.
    assert redis_sink.read_profile(redis_client, namespace, pseudo(USERS[0]))["events"] == 8
    assert f"mt:{namespace}:profile:anon:{pseudo(ANON)}" in state


def test_the_erased_user_is_gone_and_stays_gone(replayed, redis_client):
    namespace = replayed["namespace"]
    zoe = pseudo(USERS[2])
    state = namespace_state(redis_client, namespace)
    assert not [name for name, content in state.items() if zoe in name or zoe in repr(content)]
    audit = [fields for _, fields in erasure.read_audit(redis_client, namespace)]
    reasons = {entry["subject"]: entry["reason"] for entry in audit}
    assert reasons == {
        redis_sink.subject(zoe): "erasure_requested",
        redis_sink.subject(pseudo(USERS[3])): "consent_revoked",
    }


def test_consent_granted_again_starts_a_new_profile(replayed, redis_client):
    profile = redis_sink.read_profile(redis_client, replayed["namespace"], pseudo(USERS[3]))
    assert profile["first_seen"] == T0 + 30 * MIN and profile["events"] == 1
    log = redis_client.lrange(f"mt:{replayed['namespace']}:triggers:{pseudo(USERS[3])}", 0, -1)
    assert log == []  # the cart of minute 14 was open at the revocation; no marketing consent


def test_a_streaming_replay_leaves_the_same_state(replayed, redis_server, redis_client, tmp_path):
    from pipelines.config import load_config
    from runners import replay
    from tests.conftest import key_source_of_tests

    request = replay.ReplayRequest(
        inputs=[str(replayed["file"])],
        redis_url=redis_server.url,
        namespace="privacy-stream",
        config=load_config(ROOT / "examples" / "config.yaml"),
        dead_letters_dir=str(tmp_path),
        streaming=True,
        watermark_step_ms=5 * MIN,
        key_source=key_source_of_tests(),
    )
    replay.run(request)

    def renamed(namespace):
        state = namespace_state(redis_client, namespace)
        return {name.replace(f"mt:{namespace}:", "mt:NS:"): v for name, v in state.items()}

    streamed, batch = renamed("privacy-stream"), renamed(replayed["namespace"])
    # What an erasure found to delete depends on how far the sinks had got (what it did
    # not find, the tombstone refused later), and two erasures may land in either order.
    requests = {}
    for state in (streamed, batch):
        _, entries = state.pop("mt:NS:audit:erasures")
        wanted = (b"subject", b"reason", b"source", b"requested_at")
        requests[id(state)] = sorted(tuple(e[k] for k in wanted) for e in entries)
    assert requests[id(streamed)] == requests[id(batch)]
    assert len(requests[id(batch)]) == 2
    streamed, batch = streams_by_user(streamed), streams_by_user(batch)
    for name in sorted(set(streamed) | set(batch)):
        assert streamed.get(name) == batch.get(name), name
