"""Rule segments: named groups of users, as conditions over the profile snapshot.

A segment is written in the same condition language as the patterns
(``models.conditions``), over the profile's fields (``PROFILE_FIELDS``, read
from ``schemas/profile_snapshot.avsc``: records are reached with dots,
``rfm.frequency``, ``last_session.purchases``; maps by key,
``flags.abandoned_cart``, ``counts.purchase``, ``category_affinity.shoes``).

```yaml
segments:
  engaged:
    where: {engagement: {gte: 0.5}}
  engaged_bargain_hunters:
    parent: engaged                  # evaluated only for members of engaged
    version: "2"                     # part of every change's reason
    min_size: 50                     # reported as too small below this
    where:
      any:
        - {price_band: budget}
        - {patterns.price_sensitivity.matches: {gte: 2}}
```

``evaluate`` runs on every profile update, in the pure core: a child is
tested only when its parent holds, so a user who leaves the parent leaves
the child too. Membership changes carry their reason: the rule (segment
name), its version, and the values of the fields the rule reads, as they
were when it decided (as text; an absent field as null).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models import conditions as cond
from schemas import schema_json

ENTER = "enter"
EXIT = "exit"
_AVRO_KINDS = {"string": cond.STRING, "long": cond.NUMBER, "int": cond.NUMBER}
_AVRO_KINDS |= {"double": cond.NUMBER, "float": cond.NUMBER, "boolean": cond.BOOLEAN}


def _flatten(fields: list, prefix: str, out: dict) -> None:
    for field in fields:
        name = prefix + field["name"]
        kind = field["type"]
        if isinstance(kind, list):  # ["null", X]
            kind = next(k for k in kind if k != "null")
        if isinstance(kind, dict) and kind["type"] == "record":
            _flatten(kind["fields"], name + ".", out)
        elif isinstance(kind, dict) and kind["type"] == "map":
            values = kind["values"]
            if isinstance(values, dict) and values.get("type") == "record":
                for inner in values["fields"]:  # patterns.NAME.matches
                    out[f"{name}.*.{inner['name']}"] = _AVRO_KINDS[inner["type"]]
            else:
                out[name] = cond.map_of(_AVRO_KINDS[values])
        elif isinstance(kind, str) and kind in _AVRO_KINDS:
            out[name] = _AVRO_KINDS[kind]


def _profile_fields() -> dict[str, str]:
    out: dict[str, str] = {}
    # Not the user's segments themselves: a segment inside another says ``parent``.
    fields = [f for f in schema_json("profile_snapshot")["fields"] if f["name"] != "segments"]
    _flatten(fields, "", out)
    return out


PROFILE_FIELDS = _profile_fields()


class SegmentSpec(BaseModel):
    """One segment as written in the config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    where: dict = Field(description="Condition over the profile snapshot.")
    parent: str | None = Field(default=None, description="Tested only inside this segment.")
    version: str = Field(default="1", min_length=1, max_length=40)
    min_size: int = Field(default=0, ge=0, description="Too small below this many members.")
    description: str | None = None


@dataclass(frozen=True)
class Segment:
    """A compiled segment."""

    name: str
    version: str
    parent: str | None
    min_size: int
    test: Any  # profile snapshot -> bool
    reads: tuple  # the fields the rule reads, for the reason of a change


class SegmentError(ValueError):
    """A segment config that cannot be used; the message names the segment and field."""


def _fields_for(name: str) -> dict[str, str]:
    # patterns.NAME.matches: the pattern map's record fields, for any pattern name.
    kind = PROFILE_FIELDS.get(name)
    if kind is not None:
        return {name: kind}
    parts = name.split(".")
    if len(parts) == 3 and f"{parts[0]}.*.{parts[2]}" in PROFILE_FIELDS:
        return {name: PROFILE_FIELDS[f"{parts[0]}.*.{parts[2]}"]}
    return {}


def reads(spec: Any) -> list[str]:
    """The field names a condition reads, in the order written.

    >>> reads({"any": [{"price_band": "budget"}, {"ltv": {"gt": {"field": "rfm.monetary"}}}]})
    ['price_band', 'ltv', 'rfm.monetary']
    """
    found: list[str] = []
    if isinstance(spec, Mapping):
        for name, value in spec.items():
            if name in cond.COMBINATORS:
                found += reads(value)
            else:
                found.append(name)
                if isinstance(value, Mapping):
                    for operand in value.values():
                        if isinstance(operand, Mapping) and "field" in operand:
                            found.append(operand["field"])
    elif isinstance(spec, list):
        for part in spec:
            found += reads(part)
    return list(dict.fromkeys(found))


def compile_segments(specs: Mapping[str, SegmentSpec]) -> tuple[Segment, ...]:
    """Check and compile segments, parents before children; SegmentError names the field."""
    known = dict(PROFILE_FIELDS)
    for spec in specs.values():
        for name in reads(spec.where):
            known.update(_fields_for(name))
    compiled = {}
    for name, spec in specs.items():
        if spec.parent is not None and spec.parent not in specs:
            raise SegmentError(f"segments.{name}.parent: no segment named {spec.parent!r}")
        try:
            test = cond.compile_condition(spec.where, known, f"segments.{name}.where")
        except cond.ConditionError as exc:
            raise SegmentError(str(exc)) from None
        compiled[name] = Segment(
            name, spec.version, spec.parent, spec.min_size, test, tuple(reads(spec.where))
        )
    ordered: list[Segment] = []
    placed: set[str] = set()

    def place(name: str, trail: tuple) -> None:
        if name in placed:
            return
        if name in trail:
            cycle = " -> ".join((*trail[trail.index(name) :], name))
            raise SegmentError(f"segments.{name}.parent: parents form a cycle: {cycle}")
        parent = compiled[name].parent
        if parent is not None:
            place(parent, (*trail, name))
        ordered.append(compiled[name])
        placed.add(name)

    for name in compiled:
        place(name, ())
    return tuple(ordered)


def change_id(user: str, segment: str, kind: str, at: int) -> str:
    """A deterministic id of a membership change, so consumers and sinks can dedupe."""
    text = f"{segment}\x1f{user}\x1f{kind}\x1f{at}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def evaluate(
    segments: tuple[Segment, ...], snapshot: Mapping, members: dict[str, int], at: int
) -> list[dict]:
    """Test every segment on a profile; update ``members`` (name -> joined at); the changes.

    ``at`` is the event time of the update (the snapshot's version).
    """
    inside: set[str] = set()
    changes = []
    user = snapshot["user_id"]
    for segment in segments:
        holds = (segment.parent is None or segment.parent in inside) and bool(
            segment.test(snapshot)
        )
        if holds:
            inside.add(segment.name)
        was = segment.name in members
        if holds == was:
            continue
        kind = ENTER if holds else EXIT
        if holds:
            members[segment.name] = at
        else:
            del members[segment.name]
        values = {name: _text(cond.getter(name)(snapshot)) for name in segment.reads}
        changes.append(_change(user, segment.name, kind, at, segment.name, segment.version, values))
    return changes


def _change(user, segment, kind, at, rule, version, values) -> dict:
    """A change shaped like ``schemas/segment_change.avsc``."""
    return {
        "change_id": change_id(user, segment, kind, at),
        "user_id": user,
        "segment": segment,
        "change": kind,
        "rule_id": rule,
        "rule_version": version,
        "model_version": None,
        "score": None,
        "values": values,
        "event_time": at,
    }


def _text(value) -> str | None:
    """A decided value as the change records it: JSON-like text, or None if absent.

    An absent value stays None (JSON ``null``, the Avro union's null), never the
    text ``"null"``, which a consumer could not tell from a field holding that word.

    >>> [_text(None), _text(True), _text(3), _text("null")]
    [None, 'true', '3', 'null']
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
