"""Reading event files: Avro framing with resync, JSON lines, and DecodeEvents' dead letters."""

from __future__ import annotations

import gzip
import json

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from models.validation import FIELDS
from schemas.codecs import write_container
from transforms import sources
from transforms.sources import DecodeEvents, ReadEvents


def event(i: int, **extra) -> dict:
    record = {name: None for name, _, _ in FIELDS}
    record.update(
        event_id=f"e{i}",
        user_id=f"u{i % 3}",
        event_type="product_view",
        timestamp=1_511_544_070_000 + i * 1000,
    )
    record.update(extra)
    return record


def raw_records(path) -> list[tuple]:
    return list(sources.iter_file(str(path)))


def test_avro_records_carry_block_offsets(tmp_path):
    path = tmp_path / "a.avro"
    write_container(path, [event(i) for i in range(50)], sync_interval=200)
    raws = raw_records(path)
    assert [r[3]["event_id"] for r in raws] == [f"e{i}" for i in range(50)]
    assert {r[2] for r in raws} == {sources.RECORD}
    offsets = [r[1] for r in raws]
    assert len({o.split(":")[0] for o in offsets}) > 3  # several blocks
    assert offsets[0].endswith(":0")


def _blocks(path) -> list[int]:
    raws = raw_records(path)
    return sorted({int(r[1].split(":")[0]) for r in raws})


def test_corrupt_block_is_one_error_and_reading_resumes(tmp_path):
    path = tmp_path / "a.avro"
    write_container(path, [event(i) for i in range(60)], codec="deflate", sync_interval=300)
    starts = _blocks(path)
    data = bytearray(path.read_bytes())
    target = starts[2]
    for k in range(target + 4, target + 24):  # smash the middle of the third block
        data[k] ^= 0x5A
    path.write_bytes(bytes(data))
    raws = raw_records(path)
    errors = [r for r in raws if r[2] == sources.ERROR]
    records = [r for r in raws if r[2] == sources.RECORD]
    assert len(errors) == 1
    assert errors[0][3]["reason"] == "corrupt_block"
    assert errors[0][1] == str(target)
    ids = [r[3]["event_id"] for r in records]
    # Blocks before and after the damaged one are read in full.
    assert ids[0] == "e0" and ids[-1] == "e59"
    assert 0 < 60 - len(ids) < 30


def test_truncated_file_reports_where_it_stops(tmp_path):
    path = tmp_path / "a.avro"
    write_container(path, [event(i) for i in range(40)], sync_interval=300)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    raws = raw_records(path)
    assert raws[-1][2] == sources.ERROR
    assert raws[-1][3]["reason"] == "truncated_file"
    assert all(r[2] == sources.RECORD for r in raws[:-1])


def test_garbage_header_is_one_error(tmp_path):
    path = tmp_path / "a.avro"
    path.write_bytes(b"Obj\x01" + bytes(range(256)) * 4)
    raws = raw_records(path)
    assert len(raws) == 1 and raws[0][3]["reason"] == "corrupt_header"


def test_json_lines_numbered_blank_lines_skipped_gzip_read(tmp_path):
    path = tmp_path / "a.jsonl.gz"
    lines = [json.dumps(event(1)), "", json.dumps(event(2)), "{oops"]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    raws = raw_records(path)
    assert [(r[1], r[2]) for r in raws] == [("1", "line"), ("3", "line"), ("4", "line")]


def test_over_long_line_is_an_error_not_a_crash(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "MAX_LINE_BYTES", 100)
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps(event(1)) + "x" * 300 + "\n" + json.dumps({"a": 1})[:50] + "\n")
    raws = raw_records(path)
    assert raws[0][2] == sources.ERROR and raws[0][3]["reason"] == "record_too_large"
    assert raws[1][1] == "2"


def _decode(paths):
    with beam.Pipeline(runner="FnApiRunner") as pipeline:
        decoded = pipeline | ReadEvents([str(p) for p in paths]) | DecodeEvents()
        events = decoded.events | "Ids" >> beam.Map(lambda e: e["event_id"])
        letters = decoded.dead_letters | "Reasons" >> beam.Map(
            lambda d: (d["reason"], d["offset"], d["source"].rsplit("/", 1)[-1])
        )
        yield events, letters


def test_decode_events_splits_valid_and_dead_letters(tmp_path):
    good = tmp_path / "good.avro"
    write_container(good, [event(i) for i in range(5)])
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(
        b"\n".join(
            [
                json.dumps(event(10)).encode(),
                b"\xff\xfe not utf-8",
                b"[1, 2]",
                json.dumps(event(11, timestamp=1_511_544_070)).encode(),
                json.dumps(event(12, user_id=None)).encode(),
                json.dumps(event(13, price="cheap")).encode(),
                json.dumps(event(14, scroll_depth=3.0)).encode(),
                b'{"event_id": "e15"}',
                b"not json at all",
            ]
        )
        + b"\n"
    )
    for events, letters in _decode([good, bad]):
        assert_that(events, equal_to(["e0", "e1", "e2", "e3", "e4", "e10"]), label="Events")
        assert_that(
            letters,
            equal_to(
                [
                    ("invalid_utf8", "2", "bad.jsonl"),
                    ("not_an_object", "3", "bad.jsonl"),
                    ("timestamp_out_of_range", "4", "bad.jsonl"),
                    ("missing_user", "5", "bad.jsonl"),
                    ("wrong_type", "6", "bad.jsonl"),
                    ("value_out_of_range", "7", "bad.jsonl"),
                    ("missing_field", "8", "bad.jsonl"),
                    ("invalid_json", "9", "bad.jsonl"),
                ]
            ),
            label="DeadLetters",
        )


@pytest.mark.parametrize("size", [0, 3, 17])
def test_pure_garbage_files_never_crash(tmp_path, size):
    path = tmp_path / "garbage.bin"
    path.write_bytes(bytes((i * 37 + 11) % 256 for i in range(size * 97)))
    for raw in raw_records(path):
        assert raw[2] in (sources.LINE, sources.ERROR)
