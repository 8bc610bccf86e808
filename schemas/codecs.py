"""Codecs for the project's Avro schemas, built once from the parsed schemas.

* Object container files (``write_container`` / ``read_container``) for
  recorded events and dead letters.
* Avro single-object encoding (``encode_single`` / ``decode_single``): the
  two marker bytes ``C3 01``, the schema's CRC-64-AVRO fingerprint
  (little-endian), then the binary datum. Topic messages use it so that a
  consumer in any language can tell which schema wrote a message.
"""

from __future__ import annotations

import functools
import io
import json
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import fastavro
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

SCHEMA_DIR = Path(__file__).parent
SINGLE_OBJECT_MAGIC = b"\xc3\x01"


class SchemaError(ValueError):
    """Bytes or data that do not fit a schema."""


@functools.cache
def schema_json(name: str) -> dict:
    """The schema ``NAME.avsc`` as plain JSON (a dict)."""
    path = SCHEMA_DIR / f"{name}.avsc"
    if not path.exists():
        raise SchemaError(f"no schema named {name!r} in {SCHEMA_DIR}")
    return json.loads(path.read_text())


@functools.cache
def load_schema(name: str) -> dict:
    """The schema ``NAME.avsc`` parsed by fastavro (cached per process)."""
    return fastavro.parse_schema(schema_json(name), _write_hint=False)


@functools.cache
def fingerprint(name: str) -> bytes:
    """CRC-64-AVRO fingerprint of the schema's parsing canonical form, 8 bytes LE."""
    canonical = to_parsing_canonical_form(schema_json(name))
    return struct.pack("<Q", int(_fastavro_fingerprint(canonical, "CRC-64-AVRO"), 16))


EVENT = "event"
DEAD_LETTER = "dead_letter"
PROFILE_SNAPSHOT = "profile_snapshot"
TRIGGER = "trigger"
SEGMENT_CHANGE = "segment_change"


def write_container(
    target: str | Path | BinaryIO,
    records: Iterable[dict],
    schema: str = EVENT,
    codec: str = "deflate",
    sync_interval: int = 16000,
    sync_marker: bytes | None = None,
) -> int:
    """Write records to an Avro object container file; returns how many.

    The header carries the ``.avsc`` text as written (fastavro's parsed form
    orders keys by hash, which would make equal files differ from run to run).

    ``sync_marker`` (16 bytes) makes the file byte-for-byte reproducible; by
    default fastavro draws a random one, as the Avro spec suggests.
    """
    parsed = schema_json(schema)
    count = 0

    def counted() -> Iterator[dict]:
        nonlocal count
        for record in records:
            count += 1
            yield record

    if isinstance(target, str | Path):
        with open(target, "wb") as out:
            fastavro.writer(
                out,
                parsed,
                counted(),
                codec=codec,
                sync_interval=sync_interval,
                sync_marker=sync_marker,
            )
    else:
        fastavro.writer(
            target,
            parsed,
            counted(),
            codec=codec,
            sync_interval=sync_interval,
            sync_marker=sync_marker,
        )
    return count


def read_container(source: str | Path | BinaryIO) -> Iterator[dict]:
    """Records of an Avro object container file, as the writer wrote them."""
    if isinstance(source, str | Path):
        with open(source, "rb") as stream:
            yield from fastavro.reader(stream)
    else:
        yield from fastavro.reader(source)


def encode_single(record: dict, schema: str) -> bytes:
    """Avro single-object encoding of one record."""
    buffer = io.BytesIO()
    buffer.write(SINGLE_OBJECT_MAGIC)
    buffer.write(fingerprint(schema))
    try:
        fastavro.schemaless_writer(buffer, load_schema(schema), record)
    except (ValueError, TypeError, KeyError) as exc:
        raise SchemaError(f"record does not fit schema {schema!r}: {exc}") from exc
    return buffer.getvalue()


def decode_single(data: bytes, schema: str) -> dict[str, Any]:
    """Decode a single-object encoded record written with ``schema``."""
    if data[:2] != SINGLE_OBJECT_MAGIC:
        raise SchemaError("not Avro single-object encoding (bad marker bytes)")
    if data[2:10] != fingerprint(schema):
        raise SchemaError(f"fingerprint {data[2:10].hex()} is not that of schema {schema!r}")
    try:
        return fastavro.schemaless_reader(io.BytesIO(data[10:]), load_schema(schema), None)
    except (EOFError, ValueError, TypeError) as exc:
        raise SchemaError(f"truncated or corrupt {schema!r} datum: {exc}") from exc
