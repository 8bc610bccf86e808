"""Validate one raw event record against the event schema, naming what is wrong.

Records from Avro files arrive already typed by the writer's schema; records
from JSON lines arrive as whatever the producer wrote. Both go through
``validate_event``, which returns either a clean event dict (every field of
``schemas/event.avsc`` present, numbers of the right kind) or the reason and
a detail that names the field. The field list and types are read from the
schema itself, so the two cannot drift apart.

Top-level fields the schema does not name are not errors: they are kept in
``properties`` as strings (JSON for non-strings), so nothing the producer
sent is lost. Event types outside ``models.events.KNOWN_EVENT_TYPES`` are
valid too (the pipeline counts them); they simply update fewer things.

Reasons: ``not_an_object``, ``missing_field``, ``missing_user``,
``wrong_type``, ``timestamp_out_of_range``, ``value_out_of_range``,
``field_too_large``.
"""

from __future__ import annotations

import json
import math

from schemas.codecs import EVENT, schema_json

# 2000-01-01 and 2100-01-01 UTC in ms: outside is a unit mistake (seconds or micros).
MIN_TIMESTAMP_MS = 946_684_800_000
MAX_TIMESTAMP_MS = 4_102_444_800_000
MAX_STRING_CHARS = 2048
MAX_MAP_ENTRIES = 64
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1

REASONS = (
    "not_an_object",
    "missing_field",
    "missing_user",
    "wrong_type",
    "timestamp_out_of_range",
    "value_out_of_range",
    "field_too_large",
)

# Fields that must not be negative, and scroll depth, which is a fraction.
_NON_NEGATIVE = ("price", "list_price", "quantity", "dwell_ms")


def _field_types() -> tuple[tuple[str, str, bool], ...]:
    """(name, avro type, required) for each event field, from the schema."""
    fields = []
    for field in schema_json(EVENT)["fields"]:
        kind = field["type"]
        nullable = isinstance(kind, list)
        if nullable:
            kind = next(branch for branch in kind if branch != "null")
        if isinstance(kind, dict):
            kind = f"map<{kind['values']}>"
        fields.append((field["name"], kind, not nullable and "default" not in field))
    return tuple(fields)


FIELDS = _field_types()
FIELD_NAMES = frozenset(name for name, _, _ in FIELDS)


class _Invalid(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _describe(value) -> str:
    return "a boolean" if isinstance(value, bool) else type(value).__name__


def _coerce(name: str, kind: str, value):
    if kind == "string":
        if not isinstance(value, str):
            raise _Invalid("wrong_type", f"field {name!r} must be a string, got {_describe(value)}")
        if len(value) > MAX_STRING_CHARS:
            raise _Invalid(
                "field_too_large",
                f"field {name!r} has {len(value)} characters (at most {MAX_STRING_CHARS})",
            )
        return value
    if kind in ("long", "int"):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if type(value) is not int:
            raise _Invalid(
                "wrong_type", f"field {name!r} must be an integer, got {_describe(value)}"
            )
        low, high = (INT_MIN, INT_MAX) if kind == "int" else (LONG_MIN, LONG_MAX)
        if not low <= value <= high:
            raise _Invalid("value_out_of_range", f"field {name!r} = {value} does not fit {kind}")
        return value
    if kind in ("double", "float"):
        if type(value) not in (int, float):
            raise _Invalid("wrong_type", f"field {name!r} must be a number, got {_describe(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise _Invalid("value_out_of_range", f"field {name!r} must be finite, got {value}")
        return value
    if kind.startswith("map<"):
        if not isinstance(value, dict):
            raise _Invalid(
                "wrong_type", f"field {name!r} must be an object, got {_describe(value)}"
            )
        if len(value) > MAX_MAP_ENTRIES:
            raise _Invalid(
                "field_too_large",
                f"field {name!r} has {len(value)} entries (at most {MAX_MAP_ENTRIES})",
            )
        values = kind[4:-1]
        out = {}
        for key, item in value.items():
            if values == "boolean" and not isinstance(item, bool):
                raise _Invalid(
                    "wrong_type", f"field {name}[{key!r}] must be a boolean, got {_describe(item)}"
                )
            if values == "string":
                item = _coerce(f"{name}[{key!r}]", "string", item)
            out[key] = item
        return out
    raise AssertionError(f"event schema type {kind!r} of field {name!r} is not handled")


def _extra_property(name: str, value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    if len(text) > MAX_STRING_CHARS:
        raise _Invalid(
            "field_too_large",
            f"extra field {name!r} has {len(text)} characters (at most {MAX_STRING_CHARS})",
        )
    return text


def _validate(record) -> dict:
    if not isinstance(record, dict):
        raise _Invalid("not_an_object", f"an event must be an object, got {_describe(record)}")
    event = {}
    for name, kind, required in FIELDS:
        value = record.get(name)
        if value is None:
            if required:
                raise _Invalid("missing_field", f"field {name!r} is required")
            event[name] = None
            continue
        event[name] = _coerce(name, kind, value)
    if not event["event_id"]:
        raise _Invalid("missing_field", "field 'event_id' is empty")
    if not event["event_type"]:
        raise _Invalid("missing_field", "field 'event_type' is empty")
    if not event["user_id"] and not event["anonymous_id"]:
        raise _Invalid("missing_user", "one of 'user_id' or 'anonymous_id' is required")
    ts = event["timestamp"]
    if not MIN_TIMESTAMP_MS <= ts < MAX_TIMESTAMP_MS:
        raise _Invalid(
            "timestamp_out_of_range",
            f"field 'timestamp' = {ts} is not epoch milliseconds between 2000 and 2100",
        )
    for name in _NON_NEGATIVE:
        if event[name] is not None and event[name] < 0:
            raise _Invalid("value_out_of_range", f"field {name!r} = {event[name]} is negative")
    depth = event["scroll_depth"]
    if depth is not None and not 0.0 <= depth <= 1.0:
        raise _Invalid("value_out_of_range", f"field 'scroll_depth' = {depth} is not in [0, 1]")
    extras = {key: record[key] for key in record if key not in FIELD_NAMES}
    if extras:
        properties = dict(event["properties"] or {})
        for key in sorted(extras):
            if extras[key] is not None and key not in properties:
                properties[key] = _extra_property(key, extras[key])
        if len(properties) > MAX_MAP_ENTRIES:
            raise _Invalid(
                "field_too_large",
                f"field 'properties' with extra fields has {len(properties)} entries "
                f"(at most {MAX_MAP_ENTRIES})",
            )
        event["properties"] = properties or None
    return event


def validate_event(record) -> tuple[dict | None, tuple[str, str] | None]:
    """``(event, None)`` for a usable record, ``(None, (reason, detail))`` otherwise.

    >>> ok, error = validate_event({"event_id": "e1", "user_id": "u1",
    ...     "event_type": "product_view", "timestamp": 1511544070000, "price": 10})
    >>> error, ok["price"], ok["category"]
    (None, 10.0, None)
    >>> validate_event({"event_id": "e1", "user_id": "u1", "event_type": "click",
    ...                 "timestamp": 1511544070})[1][0]
    'timestamp_out_of_range'
    >>> validate_event({"event_id": "e1", "event_type": "click", "timestamp": 1511544070000})[1]
    ('missing_user', "one of 'user_id' or 'anonymous_id' is required")
    >>> validate_event({"event_id": "e1", "user_id": "u1", "event_type": "click",
    ...                 "timestamp": 1511544070000, "price": "9.99"})[1]
    ('wrong_type', "field 'price' must be a number, got str")
    >>> validate_event({"event_id": "e1", "user_id": "u1", "event_type": "click",
    ...                 "timestamp": 1511544070000, "ab_test": 7})[0]["properties"]
    {'ab_test': '7'}
    """
    try:
        return _validate(record), None
    except _Invalid as invalid:
        return None, (invalid.reason, invalid.detail)
