"""Conditions: one small declarative language over the fields of a record.

Pattern stages test events with it and rule segments will test profiles with
it: one language, not two. A condition is plain data (YAML or JSON), checked
and compiled once into a predicate; nothing is ever evaluated as code.

A condition is a mapping; all of its entries must hold:

* ``field: value``: the field equals the value (``event_type: product_view``);
* ``field: {op: operand, ...}``: every operator holds
  (``dwell_ms: {gte: 60s}``, ``category: {in: [shoes, bags]}``);
* ``all: [condition, ...]``, ``any: [condition, ...]``, ``none: [condition, ...]``,
  ``not: condition``.

Operators: ``eq``, ``ne``, ``in``, ``not_in``, ``gt``, ``gte``, ``lt``,
``lte``, ``exists`` (true or false), ``prefix`` and ``contains`` (substring;
string fields only). ``in`` and ``not_in`` take a list of values. An operand may name another
field of the same record instead of a value: ``price: {lt: {field: list_price}}``.

Fields are named by their path (``properties.color``, ``rfm.r``); the caller
says which fields exist and their kinds (a map's entries take the kind of its
values: ``consent.marketing`` is a boolean, ``properties.size`` text, so it
compares as text), so a misspelt field or an operand of the wrong kind is an
error at start, naming the field. Fields of kind ``duration`` hold
milliseconds and take durations with their unit (``90s``, ``14d``, ``1500ms``).

A value that is missing (absent or null) satisfies only ``exists: false``,
``ne`` and ``not_in``; every other test of it is false.

Written by hand: no library offers a safe, declarative predicate language
with errors that name the field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from models.durations import parse_duration

Predicate = Callable[[Mapping], bool]

STRING = "string"
NUMBER = "number"
DURATION = "duration"
BOOLEAN = "boolean"


def map_of(kind: str) -> str:
    """The kind of a map whose entries (``field.KEY``) are of ``kind``.

    >>> map_of(BOOLEAN)
    'map<boolean>'
    """
    return f"map<{kind}>"


MAP = map_of(STRING)  # e.g. properties.color

OPERATORS = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists", "prefix", "contains")
COMBINATORS = ("all", "any", "none", "not")
_ORDERED = ("gt", "gte", "lt", "lte")
_MISSING = object()


class ConditionError(ValueError):
    """A condition that cannot be compiled; ``path`` names where, e.g. ``dwell_ms.gte``."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


def _join(path: str, part: str) -> str:
    return f"{path}.{part}" if path else part


def _is_map(kind: str) -> bool:
    return kind.startswith("map<")


def kind_of(fields: Mapping[str, str], name: str) -> str | None:
    """The kind of a (dotted) field name, or None if no such field.

    >>> kind_of({"consent": map_of(BOOLEAN)}, "consent.marketing")
    'boolean'
    """
    if name in fields:
        return fields[name]
    head, dot, _ = name.partition(".")
    kind = fields.get(head)
    if dot and kind is not None and _is_map(kind):
        return kind[len("map<") : -1]
    return None


def getter(name: str) -> Callable[[Mapping], Any]:
    """A function record -> the value at a (dotted) field name, None if absent."""
    parts = name.split(".")
    if len(parts) == 1:
        return lambda record: record.get(name)

    head, rest = parts[0], parts[1:]

    def get(record):
        # The record is a mapping; what it holds under a name may not be. A plain dict
        # is tested first: an abstract Mapping check costs several times more.
        value = record.get(head)
        for part in rest:
            if type(value) is not dict and not isinstance(value, Mapping):
                return None
            value = value.get(part)
        return value

    return get


def _literal(kind: str, value: Any, path: str) -> Any:
    """Check (and for durations, convert) one operand against the field's kind."""
    if kind == DURATION:
        # A unit is required: a bare number would be seconds in a config and ms in the field.
        if not isinstance(value, str) or value.strip().replace(".", "", 1).isdigit():
            raise ConditionError(
                path, f"write a duration with its unit (60s, 1500ms), not {value!r}"
            )
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise ConditionError(path, str(exc)) from None
    if kind == NUMBER:
        return _number(value, path)
    if kind == BOOLEAN:
        if not isinstance(value, bool):
            raise ConditionError(path, f"expected true or false, not {value!r}")
        return value
    if not isinstance(value, str):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)  # YAML reads 42 as a number; the field holds text
        raise ConditionError(path, f"expected a string, not {value!r}")
    return value


def _number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConditionError(path, f"expected a number, not {value!r}")
    return value


def _operand(fields, kind: str, op: str, operand: Any, path: str):
    """A function record -> operand value (a constant, or another field's value)."""
    if isinstance(operand, Mapping):
        if op in ("in", "not_in"):
            raise ConditionError(path, f"{op} takes a list of values, not another field")
        if set(operand) != {"field"}:
            raise ConditionError(path, "an operand mapping must be {field: NAME}")
        other = operand["field"]
        other_kind = kind_of(fields, other) if isinstance(other, str) else None
        if other_kind is None:
            raise ConditionError(_join(path, "field"), f"unknown field {other!r}")
        if other_kind != kind and {other_kind, kind} != {NUMBER, DURATION}:
            raise ConditionError(path, f"cannot compare a {kind} with {other} (a {other_kind})")
        return getter(other)
    if op in ("in", "not_in"):
        if not isinstance(operand, list) or not operand:
            raise ConditionError(path, "expected a non-empty list")
        values = frozenset(_literal(kind, v, f"{path}[{i}]") for i, v in enumerate(operand))
        return lambda record: values
    if op in _ORDERED and kind not in (NUMBER, DURATION, STRING):
        raise ConditionError(path, f"{op} needs a number, duration or string field, not a {kind}")
    if op in ("prefix", "contains") and kind != STRING:
        raise ConditionError(path, f"{op} needs a string field, not a {kind}")
    value = _literal(STRING if op in ("prefix", "contains") else kind, operand, path)
    return lambda record: value


def _test(op: str, get, operand) -> Predicate:
    if op == "exists":
        return lambda r: (get(r) is not None) is operand
    if op == "ne":
        return lambda r: (value := get(r)) is None or value != operand(r)
    if op == "not_in":
        return lambda r: get(r) not in operand(r)

    def defined(compare):
        def test(record):
            value = get(record)
            other = operand(record)
            if value is None or other is None:
                return False
            try:
                return compare(value, other)
            except TypeError:  # e.g. a number held in a free-form text field
                return False

        return test

    compare = {
        "eq": lambda a, b: a == b,
        "in": lambda a, b: a in b,
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
        "prefix": lambda a, b: isinstance(a, str) and a.startswith(b),
        "contains": lambda a, b: b in a if isinstance(a, str | list | tuple) else False,
    }[op]
    return defined(compare)


def _field_tests(fields, name: str, spec: Any, path: str) -> list[Predicate]:
    kind = kind_of(fields, name)
    if kind is None:
        known = ", ".join(sorted(fields))
        raise ConditionError(path, f"unknown field {name!r} (known: {known})")
    get = getter(name)
    if not isinstance(spec, Mapping):
        if _is_map(kind):
            raise ConditionError(path, f"{name} is a map: test one of its entries ({name}.KEY)")
        value = _literal(kind, spec, path)
        return [lambda r: get(r) == value]
    if not spec:
        raise ConditionError(path, "expected at least one operator")
    tests = []
    for op, operand in spec.items():
        op_path = _join(path, str(op))
        if op not in OPERATORS:
            raise ConditionError(
                op_path, f"unknown operator {op!r} (known: {', '.join(OPERATORS)})"
            )
        if op == "exists":
            if not isinstance(operand, bool):
                raise ConditionError(op_path, "exists takes true or false")
            tests.append(_test(op, get, operand))
            continue
        if _is_map(kind):
            raise ConditionError(op_path, f"{name} is a map: test one of its entries ({name}.KEY)")
        tests.append(_test(op, get, _operand(fields, kind, op, operand, op_path)))
    return tests


def compile_condition(spec: Any, fields: Mapping[str, str], path: str = "") -> Predicate:
    """Check a condition against the known ``fields`` and return its predicate.

    Raises:
        ConditionError: naming the path of what is wrong.

    >>> fields = {"event_type": STRING, "dwell_ms": DURATION, "price": NUMBER,
    ...           "list_price": NUMBER}
    >>> long_view = compile_condition(
    ...     {"event_type": "product_view", "dwell_ms": {"gte": "1m"}}, fields)
    >>> long_view({"event_type": "product_view", "dwell_ms": 75_000})
    True
    >>> long_view({"event_type": "product_view", "dwell_ms": None})
    False
    >>> discounted = compile_condition({"price": {"lt": {"field": "list_price"}}}, fields)
    >>> discounted({"price": 8.0, "list_price": 10.0}), discounted({"price": 8.0})
    (True, False)
    >>> compile_condition({"dwel_ms": {"gte": 1}}, fields, "where")
    Traceback (most recent call last):
    ...
    models.conditions.ConditionError: where.dwel_ms: unknown field 'dwel_ms' (known: ...)
    """
    if not isinstance(spec, Mapping) or not spec:
        raise ConditionError(path, "a condition is a non-empty mapping of fields to tests")
    tests: list[Predicate] = []
    for name, value in spec.items():
        here = _join(path, str(name))
        if name in ("all", "any", "none"):
            if not isinstance(value, list) or not value:
                raise ConditionError(here, f"{name} takes a non-empty list of conditions")
            parts = [
                compile_condition(part, fields, f"{here}[{i}]") for i, part in enumerate(value)
            ]
            if name == "all":
                tests.append(_chain(parts, every=True))
            elif name == "any":
                tests.append(_chain(parts, every=False))
            else:
                anything = _chain(parts, every=False)
                tests.append(lambda r, anything=anything: not anything(r))
        elif name == "not":
            inner = compile_condition(value, fields, here)
            tests.append(lambda r, inner=inner: not inner(r))
        elif not isinstance(name, str):
            raise ConditionError(here, f"a field name must be text, not {name!r}")
        else:
            tests.extend(_field_tests(fields, name, value, here))
    return _chain(tests, every=True)


# Short chains as plain calls: each test returns a bool, and a chain stops at the first
# that decides, as all() and any() do, without a generator per record. Long ones (a list
# of many conditions) use all() and any(), not calls nested that deep.
_NESTED = 8


def _chain(tests: list[Predicate], every: bool) -> Predicate:
    if len(tests) == 1:
        return tests[0]
    if len(tests) > _NESTED:
        chain = tuple(tests)
        if every:
            return lambda record: all(test(record) for test in chain)
        return lambda record: any(test(record) for test in chain)
    first, rest = tests[0], _chain(tests[1:], every)
    if every:
        return lambda record: first(record) and rest(record)
    return lambda record: first(record) or rest(record)
