"""Garbage replays to the end: every bad record is a dead letter, and the counts reconcile."""

from __future__ import annotations

import json

from runners import replay
from schemas.codecs import write_container
from tests.conftest import key_source_of_tests
from tests.transforms.test_sources import event


def build_garbage(folder):
    good = [event(i) for i in range(200)]
    write_container(folder / "good.avro", good)

    truncated = folder / "truncated.avro"
    write_container(truncated, [event(1000 + i) for i in range(120)], sync_interval=400)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) - 100])  # the last block is cut off

    huge = "x" * (10 * 1024 * 1024)
    write_container(folder / "huge.avro", [event(2000, query=huge), event(2001)])

    lines = [
        json.dumps(event(3000)).encode(),
        json.dumps(event(3001, price="12.50")).encode(),  # wrong type
        json.dumps(event(3002, quantity=1.5)).encode(),  # wrong type
        json.dumps({"event_id": "e3003", "user_id": "u1"}).encode(),  # missing fields
        "caf\xe9".encode("latin-1"),  # invalid UTF-8
        json.dumps(event(3005, timestamp=99)).encode(),  # absurd timestamp
        json.dumps(event(3006, timestamp=10**17)).encode(),  # absurd timestamp
        json.dumps(event(3007, query=huge)).encode(),  # a 10 MB line
        b"\x00\x01\x02 binary junk",
        json.dumps(event(3009)).encode(),
    ]
    (folder / "mixed.jsonl").write_bytes(b"\n".join(lines) + b"\n")


def test_garbage_replays_to_the_end(tmp_path, redis_url, namespace):
    inputs = tmp_path / "in"
    inputs.mkdir()
    build_garbage(inputs)
    dead = tmp_path / "dead"
    summary = replay.run(
        replay.ReplayRequest(
            inputs=[str(inputs / "*")],
            redis_url=redis_url,
            namespace=namespace,
            dead_letters_dir=str(dead),
            key_source=key_source_of_tests(),
        )
    )
    assert summary["events_read"] == summary["valid"] + summary["invalid"]
    assert summary["valid"] == summary["unique"] + summary["duplicates"]
    letters = [
        json.loads(line)
        for path in sorted(dead.glob("dead-letters*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    assert len(letters) == summary["dead_letters"] == summary["invalid"] + summary["late"]
    reasons = {letter["reason"] for letter in letters}
    assert {
        "truncated_file",
        "field_too_large",
        "wrong_type",
        "missing_field",
        "invalid_utf8",
        "timestamp_out_of_range",
        "record_too_large",
        "invalid_json",
    } <= reasons
    assert sum(summary["invalid_by_reason"].values()) == summary["invalid"]
    for letter in letters:
        assert letter["detail"] and letter["source"] and letter["offset"] is not None
        assert len(letter["excerpt"]) < 1000  # never the 10 MB value itself
    # Valid events from every file got through: 200 + most of the truncated file + 1 + 2.
    assert summary["valid"] >= 200 + 100 + 1 + 2
