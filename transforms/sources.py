"""Read recorded event files and decode them into validated, timestamped events.

``ReadEvents(patterns)`` reads Avro object container files and JSON lines
files (``.gz`` and other compressions Beam knows are opened transparently;
globs and many files are fine; the format is told by the file's first bytes,
not its name). It emits *raw records* ``(source, offset, kind, payload)``:

* ``kind == "record"``: a dict decoded from an Avro block; ``offset`` is
  ``"<block byte offset>:<index in block>"``;
* ``kind == "line"``: the bytes of one JSON line; ``offset`` is the line number;
* ``kind == "error"``: something unreadable (a corrupt or truncated Avro
  block, a line too long to be an event), ``payload`` a dict with ``reason``,
  ``detail`` and ``raw`` bytes.

Beam's ``ReadFromAvro`` is not used because it stops the whole pipeline at
the first corrupt block and does not say where a record came from; the Avro
container framing (header, blocks, 16-byte sync markers) is read here by hand
so that a damaged block becomes one dead letter and reading resumes at the
next sync marker. Block decompression and record decoding are fastavro's.

``DecodeEvents`` validates every raw record (``models.validation``) and splits
them into ``events`` (timestamped with their event time) and
``dead_letters``; it counts ``events_read``, ``valid``, ``invalid``,
``invalid_<reason>`` and ``unknown_event_type``, so that
``events_read == valid + invalid``.
"""

from __future__ import annotations

import io
import json
import logging

import apache_beam as beam
import fastavro
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp
from fastavro.read import BLOCK_READERS, HEADER_SCHEMA

from models.dead_letters import make_dead_letter
from models.events import KNOWN_EVENT_TYPES
from models.validation import validate_event
from transforms import metrics, progress

STAGE = "DecodeEvents"
RECORD = "record"
LINE = "line"
ERROR = "error"
AVRO_MAGIC = b"Obj\x01"
MAX_LINE_BYTES = 1 << 20
MAX_BLOCK_BYTES = 256 << 20

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- Avro framing


class _Truncated(Exception):
    pass


def _read_long(stream) -> int:
    """One zig-zag varint long, as the Avro spec encodes block counts and sizes."""
    shift = 0
    accumulated = 0
    while True:
        byte = stream.read(1)
        if not byte:
            raise _Truncated("end of file inside a number")
        value = byte[0]
        accumulated |= (value & 0x7F) << shift
        if not value & 0x80:
            return (accumulated >> 1) ^ -(accumulated & 1)
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _encode_long(value: int) -> bytes:
    value = (value << 1) ^ (value >> 63)
    out = bytearray()
    while value & ~0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _error(source: str, offset, reason: str, detail: str, raw: bytes = b""):
    return (source, str(offset), ERROR, {"reason": reason, "detail": detail, "raw": raw})


def iter_avro(stream, source: str):
    """Raw records of one Avro container file, resyncing past damaged blocks."""
    try:
        header = fastavro.schemaless_reader(stream, HEADER_SCHEMA)
        writer_schema = json.loads(header["meta"]["avro.schema"].decode("utf-8"))
        codec = header["meta"].get("avro.codec", b"null").decode("utf-8")
        sync = header["sync"]
    except Exception as exc:  # any damage to the header makes the whole file unreadable
        yield _error(source, 0, "corrupt_header", f"Avro header unreadable: {exc}")
        return
    if codec not in BLOCK_READERS:
        yield _error(source, 0, "unsupported_codec", f"Avro codec {codec!r} is not supported")
        return
    try:
        # Records are decoded with the writer's own schema and then validated field by
        # field (models.validation), so files from other producers with extra or missing
        # fields are read as far as they make sense instead of failing schema resolution.
        writer = fastavro.parse_schema(writer_schema)
    except Exception as exc:
        yield _error(source, 0, "schema_mismatch", f"writer schema unusable: {exc}")
        return
    block_reader = BLOCK_READERS[codec]
    while True:
        start = stream.tell()
        first = stream.read(1)
        if not first:
            return
        stream.seek(start)
        try:
            count = _read_long(stream)
            size = _read_long(stream)
            if count < 0 or size < 0 or size > MAX_BLOCK_BYTES:
                raise ValueError(f"implausible block header (count {count}, size {size})")
            data = stream.read(size)
            if len(data) < size:
                raise _Truncated(f"block of {size} bytes cut off after {len(data)}")
            marker = stream.read(16)
            if len(marker) < 16:
                raise _Truncated("file ends before the block's sync marker")
            if marker != sync:
                raise ValueError("sync marker after the block does not match the header's")
            decoded = block_reader(io.BytesIO(_encode_long(size) + data))
            records = [fastavro.schemaless_reader(decoded, writer) for _ in range(count)]
        except _Truncated as exc:
            yield _error(source, start, "truncated_file", f"block at byte {start}: {exc}")
            return
        except Exception as exc:
            yield _error(source, start, "corrupt_block", f"block at byte {start}: {exc}")
            if not _resync(stream, start + 1, sync):
                return
            continue
        for index, record in enumerate(records):
            yield source, f"{start}:{index}", RECORD, record


def _resync(stream, position: int, sync: bytes) -> bool:
    """Move past the next sync marker at or after ``position``; False at end of file."""
    stream.seek(position)
    tail = b""
    while True:
        chunk = stream.read(1 << 16)
        if not chunk:
            return False
        window = tail + chunk
        found = window.find(sync)
        if found >= 0:
            stream.seek(position - len(tail) + found + len(sync))
            return True
        tail = window[-15:]
        position += len(chunk)


def _line_reader(stream):
    """``readline(limit)``, or plain ``readline()`` where the stream has no limit."""
    try:
        stream.readline(0)
    except TypeError:  # Beam's CompressedFile reads whole lines only
        return lambda _limit: stream.readline()
    return stream.readline


def iter_json_lines(stream, source: str):
    """Raw records of one JSON lines file; blank lines are not records."""
    readline = _line_reader(stream)
    number = 0
    while True:
        line = readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_BYTES + 1 or (
            len(line) > MAX_LINE_BYTES and not line.endswith(b"\n")
        ):
            rest = 0
            while not line.endswith(b"\n"):  # skip to the end of the over-long line
                more = readline(MAX_LINE_BYTES)
                rest += len(more)
                if not more or more.endswith(b"\n"):
                    break
            yield _error(
                source,
                number,
                "record_too_large",
                f"line {number} has {len(line) + rest} bytes (at most {MAX_LINE_BYTES})",
                line[:512],
            )
            continue
        if line.strip():
            yield source, str(number), LINE, line.rstrip(b"\r\n")


def iter_file(path: str):
    """Raw records of one file, Avro or JSON lines by its first bytes."""
    with FileSystems.open(path) as sniff:
        head = sniff.read(4)
    with FileSystems.open(path) as raw:
        if head != AVRO_MAGIC:
            yield from iter_json_lines(raw, path)
        elif _seekable(raw):
            yield from iter_avro(raw, path)
        else:
            # Resyncing after a damaged block needs seek; compressed streams get buffered.
            yield from iter_avro(io.BytesIO(raw.read()), path)


def _seekable(stream) -> bool:
    if type(stream).__name__ == "CompressedFile":
        return False  # Beam's CompressedFile emulates seek by reading again from the start
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError, TypeError):
        return False


class _ReadFile(beam.DoFn):
    def process(self, metadata):
        count = 0
        for raw in iter_file(metadata.path):
            count += 1
            yield raw
            if not count % 1000:
                progress.add("records_read", 1000)
        progress.add("records_read", count % 1000)


class ReadEvents(beam.PTransform):
    """Raw records of every file matching the patterns (see the module docstring)."""

    def __init__(self, patterns: list[str]):
        super().__init__()
        self._patterns = list(patterns)

    def expand(self, pbegin):
        return (
            pbegin
            | "Patterns" >> beam.Create(self._patterns)
            | "Match" >> fileio.MatchAll()
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadFiles" >> beam.ParDo(_ReadFile())
        )


# ---------------------------------------------------------------- decoding


def _timestamp(ms: int) -> Timestamp:
    # Timestamp(micros=...) is exact; Timestamp(seconds=ms / 1000) goes through a float.
    return Timestamp(micros=ms * 1000)


class _DecodeFn(beam.DoFn):
    def __init__(self):
        self._read = metrics.counter("events_read")
        self._valid = metrics.counter("valid")
        self._invalid = metrics.counter("invalid")
        self._unknown = metrics.counter("unknown_event_type")
        self._by_reason: dict = {}

    def _reject(self, source, offset, reason, detail, raw, event_id=None, timestamp=None):
        self._invalid.inc()
        counter = self._by_reason.get(reason)
        if counter is None:
            counter = metrics.counter(f"invalid_{reason}")
            self._by_reason[reason] = counter
        counter.inc()
        return beam.pvalue.TaggedOutput(
            "dead_letters",
            make_dead_letter(
                reason,
                detail,
                STAGE,
                source=source,
                offset=offset,
                event_id=event_id,
                timestamp=timestamp,
                raw=raw,
            ),
        )

    def process(self, raw):
        source, offset, kind, payload = raw
        self._read.inc()
        if kind == ERROR:
            yield self._reject(source, offset, payload["reason"], payload["detail"], payload["raw"])
            return
        record = payload
        if kind == LINE:
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield self._reject(source, offset, "invalid_utf8", f"not UTF-8: {exc}", payload)
                return
            try:
                record = json.loads(text)
            except (json.JSONDecodeError, RecursionError) as exc:
                yield self._reject(source, offset, "invalid_json", f"not JSON: {exc}", text)
                return
        event, error = validate_event(record)
        if error is not None:
            reason, detail = error
            get = record.get if isinstance(record, dict) else (lambda _key: None)
            yield self._reject(
                source, offset, reason, detail, record, get("event_id"), get("timestamp")
            )
            return
        self._valid.inc()
        if event["event_type"] not in KNOWN_EVENT_TYPES:
            self._unknown.inc()
        yield TimestampedValue(event, _timestamp(event["timestamp"]))


class DecodeEvents(beam.PTransform):
    """Raw records -> ``events`` (timestamped dicts) and ``dead_letters``."""

    def expand(self, raw_records):
        return raw_records | "Validate" >> beam.ParDo(_DecodeFn()).with_outputs(
            "dead_letters", main="events"
        )
