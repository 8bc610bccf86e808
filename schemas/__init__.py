"""Avro schemas of microtarget and their codecs, parsed once per process.

This package is the only place that knows bytes: every other module hands it
plain dicts. ``EVENT`` and friends are fastavro-parsed schemas; the raw JSON
text of each schema sits next to this file as ``NAME.avsc``.
"""

from schemas.codecs import (
    DEAD_LETTER,
    EVENT,
    PROFILE_SNAPSHOT,
    SEGMENT_CHANGE,
    TRIGGER,
    SchemaError,
    decode_single,
    encode_single,
    fingerprint,
    load_schema,
    read_container,
    schema_json,
    write_container,
)

__all__ = [
    "DEAD_LETTER",
    "EVENT",
    "PROFILE_SNAPSHOT",
    "SEGMENT_CHANGE",
    "TRIGGER",
    "SchemaError",
    "decode_single",
    "encode_single",
    "fingerprint",
    "load_schema",
    "read_container",
    "schema_json",
    "write_container",
]
