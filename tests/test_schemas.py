"""Schemas interoperate with the reference ``avro`` package, both ways."""

from __future__ import annotations

import io

import avro.datafile
import avro.io
import avro.schema
import pytest

from models.personas import generate
from schemas import codecs
from tests.transforms.test_redis_sink import snapshot

SCHEMAS = ["event", "dead_letter", "profile_snapshot", "trigger", "segment_change"]


def reference_schema(name: str):
    return avro.schema.parse((codecs.SCHEMA_DIR / f"{name}.avsc").read_text())


def samples(name: str) -> list[dict]:
    if name == "event":
        return generate(events=60, users=5, seed=1)[0]
    if name == "profile_snapshot":
        snap = snapshot("u1", 5000)
        snap["patterns"] = {"cart_abandonment": {"matches": 2, "last": 4000}}
        snap["segments"] = {"engaged": 4000}
        return [snap, dict(snap, last_session=None, rolling=None, patterns=None, segments=None)]
    if name == "trigger":
        from models import governance

        match = {
            "pattern": "cart_abandonment",
            "pattern_version": "1",
            "matched_event_ids": ["e1"],
            "first_event_id": "e1",
            "start": 0,
            "event_time": 1_800_000,
            "keys": {"product_id": "p1"},
        }
        trigger, _ = governance.decide(
            governance.GovernanceParams(), governance.new_state(), "u1", match
        )
        return [trigger]
    if name == "dead_letter":
        from models.dead_letters import make_dead_letter

        return [make_dead_letter("late", "too late", "UserTimeline", event_id="e1", raw={"a": 1})]
    return []


@pytest.mark.parametrize("name", SCHEMAS)
def test_every_schema_parses_in_both_libraries(name):
    assert reference_schema(name).name
    assert codecs.load_schema(name)
    assert len(codecs.fingerprint(name)) == 8


@pytest.mark.parametrize("name", ["event", "profile_snapshot", "dead_letter", "trigger"])
def test_files_written_here_are_read_by_avro(tmp_path, name):
    records = samples(name)
    path = tmp_path / f"{name}.avro"
    codecs.write_container(path, records, schema=name)
    with open(path, "rb") as handle:
        read = list(avro.datafile.DataFileReader(handle, avro.io.DatumReader()))
    assert read == records


@pytest.mark.parametrize("name", ["event", "profile_snapshot", "dead_letter", "trigger"])
def test_files_written_by_avro_are_read_here(tmp_path, name):
    records = samples(name)
    path = tmp_path / f"{name}.avro"
    with open(path, "wb") as handle:
        writer = avro.datafile.DataFileWriter(
            handle, avro.io.DatumWriter(), reference_schema(name), codec="deflate"
        )
        for record in records:
            writer.append(record)
        writer.close()
    assert list(codecs.read_container(path)) == records


def test_single_object_encoding_round_trips_and_checks_the_fingerprint():
    event = samples("event")[0]
    data = codecs.encode_single(event, "event")
    assert codecs.decode_single(data, "event") == event
    with pytest.raises(codecs.SchemaError):
        codecs.decode_single(data, "trigger")


def test_reference_reader_decodes_single_object_body():
    event = samples("event")[0]
    body = codecs.encode_single(event, "event")[10:]
    decoder = avro.io.BinaryDecoder(io.BytesIO(body))
    assert avro.io.DatumReader(reference_schema("event")).read(decoder) == event
