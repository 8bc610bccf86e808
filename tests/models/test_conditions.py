"""The condition language: every operator, the combinators, missing values and compile errors."""

import pytest

from models.conditions import (
    BOOLEAN,
    DURATION,
    MAP,
    NUMBER,
    OPERATORS,
    STRING,
    ConditionError,
    compile_condition,
    map_of,
)

FIELDS = {
    "event_type": STRING,
    "category": STRING,
    "brand": STRING,
    "price": NUMBER,
    "list_price": NUMBER,
    "quantity": NUMBER,
    "dwell_ms": DURATION,
    "gap_ms": DURATION,
    "in_stock": BOOLEAN,
    "properties": MAP,
    "consent": map_of(BOOLEAN),
}


def _holds(spec, record) -> bool:
    return compile_condition(spec, FIELDS)(record)


def _error(spec) -> ConditionError:
    with pytest.raises(ConditionError) as info:
        compile_condition(spec, FIELDS, "where")
    return info.value


# --- operators -------------------------------------------------------------------------------


OPERATOR_CASES = [
    ({"category": {"eq": "shoes"}}, {"category": "shoes"}, True),
    ({"category": {"eq": "shoes"}}, {"category": "bags"}, False),
    ({"category": {"ne": "shoes"}}, {"category": "bags"}, True),
    ({"category": {"ne": "shoes"}}, {"category": "shoes"}, False),
    ({"category": {"in": ["shoes", "bags"]}}, {"category": "bags"}, True),
    ({"category": {"in": ["shoes", "bags"]}}, {"category": "hats"}, False),
    ({"category": {"not_in": ["shoes", "bags"]}}, {"category": "hats"}, True),
    ({"category": {"not_in": ["shoes", "bags"]}}, {"category": "shoes"}, False),
    ({"price": {"gt": 10}}, {"price": 10.5}, True),
    ({"price": {"gt": 10}}, {"price": 10}, False),
    ({"price": {"gte": 10}}, {"price": 10}, True),
    ({"price": {"gte": 10}}, {"price": 9.99}, False),
    ({"price": {"lt": 10}}, {"price": 9.99}, True),
    ({"price": {"lt": 10}}, {"price": 10}, False),
    ({"price": {"lte": 10}}, {"price": 10}, True),
    ({"price": {"lte": 10}}, {"price": 10.01}, False),
    ({"brand": {"exists": True}}, {"brand": "acme"}, True),
    ({"brand": {"exists": True}}, {"brand": None}, False),
    ({"brand": {"exists": False}}, {}, True),
    ({"brand": {"exists": False}}, {"brand": "acme"}, False),
    ({"category": {"prefix": "sho"}}, {"category": "shoes"}, True),
    ({"category": {"prefix": "sho"}}, {"category": "flip-shoes"}, False),
    ({"category": {"contains": "oe"}}, {"category": "shoes"}, True),
    ({"category": {"contains": "oe"}}, {"category": "bags"}, False),
    # contains also tests membership in a list (here a list held in a map entry)
    ({"properties.tags": {"contains": "sale"}}, {"properties": {"tags": ["new", "sale"]}}, True),
    ({"properties.tags": {"contains": "sale"}}, {"properties": {"tags": ["new"]}}, False),
]


@pytest.mark.parametrize(("spec", "record", "expected"), OPERATOR_CASES)
def test_operator(spec, record, expected):
    assert _holds(spec, record) is expected


def test_every_operator_is_tested_both_ways():
    outcomes = {}
    for spec, _, expected in OPERATOR_CASES:
        ((op,),) = [tuple(tests) for tests in spec.values()]
        outcomes.setdefault(op, set()).add(expected)
    assert outcomes == {op: {True, False} for op in OPERATORS}


def test_ordered_operators_compare_strings_too():
    assert _holds({"category": {"lt": "m"}}, {"category": "bags"}) is True
    assert _holds({"category": {"lt": "m"}}, {"category": "shoes"}) is False


def test_plain_value_means_equality():
    is_view = compile_condition({"event_type": "product_view"}, FIELDS)
    assert is_view({"event_type": "product_view"}) is True
    assert is_view({"event_type": "add_to_cart"}) is False
    assert is_view({}) is False


def test_plain_number_against_a_string_field_is_read_as_text():
    # YAML reads `category: 42` as a number; the field holds text.
    assert _holds({"category": 42}, {"category": "42"}) is True
    assert _holds({"category": {"in": [1, 2]}}, {"category": "2"}) is True


def test_plain_boolean_value():
    assert _holds({"in_stock": True}, {"in_stock": True}) is True
    assert _holds({"in_stock": True}, {"in_stock": False}) is False


def test_several_operators_on_one_field_must_all_hold():
    band = compile_condition({"price": {"gte": 10, "lt": 20}}, FIELDS)
    assert [band({"price": p}) for p in (9.99, 10, 19.99, 20)] == [False, True, True, False]


def test_several_keys_mean_all():
    spec = {"event_type": "product_view", "category": "shoes", "price": {"lt": 50}}
    assert _holds(spec, {"event_type": "product_view", "category": "shoes", "price": 40}) is True
    assert _holds(spec, {"event_type": "product_view", "category": "bags", "price": 40}) is False
    assert _holds(spec, {"event_type": "product_view", "category": "shoes", "price": 60}) is False
    assert _holds(spec, {"event_type": "add_to_cart", "category": "shoes", "price": 40}) is False


# --- combinators -----------------------------------------------------------------------------


def test_all():
    spec = {"all": [{"category": "shoes"}, {"price": {"gt": 100}}]}
    assert _holds(spec, {"category": "shoes", "price": 150}) is True
    assert _holds(spec, {"category": "shoes", "price": 50}) is False
    assert _holds(spec, {"category": "bags", "price": 150}) is False


def test_any():
    spec = {"any": [{"category": "shoes"}, {"price": {"gt": 100}}]}
    assert _holds(spec, {"category": "bags", "price": 150}) is True
    assert _holds(spec, {"category": "shoes", "price": 50}) is True
    assert _holds(spec, {"category": "bags", "price": 50}) is False


@pytest.mark.parametrize("size", [1, 2, 3, 8, 9, 40, 2_000])
def test_combinators_of_any_length_decide_as_all_any_and_none(size):
    # Each condition i holds for records whose "category" is in its set; some hold, some not.
    parts = [{"category": {"in": [f"c{i}", "x"]}} for i in range(size)]
    for category, expected in [("x", (True, True, False)), ("c0", (size == 1, True, False))]:
        for name, want in zip(("all", "any", "none"), expected, strict=True):
            assert _holds({name: parts}, {"category": category}) is want, (name, category)
    for name, want in (("all", False), ("any", False), ("none", True)):
        assert _holds({name: parts}, {"category": "other"}) is want, name
    many_keys = {f"properties.k{i}": "v" for i in range(size)}
    record = {"properties": {f"k{i}": "v" for i in range(size)}}
    assert _holds(many_keys, record) is True
    assert _holds(many_keys, {"properties": {**record["properties"], f"k{size - 1}": "w"}}) is False


def test_not():
    spec = {"not": {"category": {"in": ["shoes", "bags"]}}}
    assert _holds(spec, {"category": "hats"}) is True
    assert _holds(spec, {"category": "shoes"}) is False
    assert _holds(spec, {}) is True  # the inner test of a missing value is false


def test_combinators_nest_and_combine_with_fields():
    spec = {
        "event_type": "purchase",
        "any": [
            {"all": [{"category": "shoes"}, {"not": {"brand": "acme"}}]},
            {"quantity": {"gte": 3}},
        ],
    }
    assert _holds(spec, {"event_type": "purchase", "category": "shoes", "brand": "zeta"}) is True
    assert _holds(spec, {"event_type": "purchase", "category": "shoes", "brand": "acme"}) is False
    assert _holds(spec, {"event_type": "purchase", "category": "hats", "quantity": 3}) is True
    assert _holds(spec, {"event_type": "view", "category": "hats", "quantity": 3}) is False


# --- operands naming another field -----------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "expected"),
    [("lt", True), ("lte", True), ("gt", False), ("gte", False), ("eq", False), ("ne", True)],
)
def test_field_reference_operand(op, expected):
    spec = {"price": {op: {"field": "list_price"}}}
    assert _holds(spec, {"price": 8.0, "list_price": 10.0}) is expected


def test_field_reference_equal_values():
    spec = {"price": {"eq": {"field": "list_price"}}}
    assert _holds(spec, {"price": 10.0, "list_price": 10.0}) is True


def test_field_reference_to_a_missing_field_is_false():
    assert _holds({"price": {"lt": {"field": "list_price"}}}, {"price": 8.0}) is False


def test_field_reference_between_number_and_duration_is_allowed():
    spec = {"dwell_ms": {"gte": {"field": "price"}}}
    assert _holds(spec, {"dwell_ms": 5_000, "price": 4_000}) is True


def test_field_reference_into_a_map():
    spec = {"category": {"eq": {"field": "properties.main_category"}}}
    assert _holds(spec, {"category": "shoes", "properties": {"main_category": "shoes"}}) is True
    assert _holds(spec, {"category": "shoes", "properties": {"main_category": "bags"}}) is False


@pytest.mark.parametrize("op", ["in", "not_in"])
def test_in_and_not_in_take_values_not_a_field(op):
    with pytest.raises(ConditionError) as caught:
        compile_condition({"category": {op: {"field": "brand"}}}, FIELDS, "where")
    assert caught.value.path == f"where.category.{op}"
    assert "list of values" in str(caught.value)


# --- dotted paths into maps ------------------------------------------------------------------


def test_dotted_path_into_properties():
    red = compile_condition({"properties.color": "red"}, FIELDS)
    assert red({"properties": {"color": "red"}}) is True
    assert red({"properties": {"color": "blue"}}) is False
    assert red({"properties": {}}) is False
    assert red({"properties": None}) is False
    assert red({}) is False


def test_dotted_path_of_declared_kind():
    # consent.marketing is declared boolean, so `true` is a valid operand.
    opted_in = compile_condition({"consent.marketing": True}, FIELDS)
    assert opted_in({"consent": {"marketing": True}}) is True
    assert opted_in({"consent": {"marketing": False}}) is False
    assert opted_in({"consent": {}}) is False


def test_dotted_path_through_a_non_mapping_is_missing():
    spec = {"properties.color.shade": {"exists": False}}
    assert _holds(spec, {"properties": {"color": "red"}}) is True
    assert _holds({"properties.color.shade": "dark"}, {"properties": {"color": "red"}}) is False
    assert _holds(spec, {"properties": {"color": {"shade": "dark"}}}) is False


def test_map_entries_are_text():
    # An entry of a free-form map is compared as text; a number held there never raises.
    size = compile_condition({"properties.size": {"gt": 5}}, FIELDS)
    assert size({"properties": {"size": "7"}}) is True
    assert size({"properties": {"size": 7}}) is False


def test_a_map_field_takes_exists():
    assert _holds({"properties": {"exists": True}}, {"properties": {"a": "b"}}) is True
    assert _holds({"properties": {"exists": False}}, {}) is True


# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operand", "dwell", "expected"),
    [("1m", 60_000, True), ("1m", 59_999, False), ("90s", 90_000, True), ("500ms", 499, False)],
)
def test_duration_strings(operand, dwell, expected):
    assert _holds({"dwell_ms": {"gte": operand}}, {"dwell_ms": dwell}) is expected


def test_map_entries_take_the_kind_of_the_map_values():
    assert _holds({"consent.marketing": True}, {"consent": {"marketing": True}}) is True
    assert _holds({"consent.email": False}, {"consent": {"email": True}}) is False
    # properties hold text, so they compare as text (documented)
    assert _holds({"properties.size": {"gt": "10"}}, {"properties": {"size": "9"}}) is True


def test_ne_is_true_for_a_missing_value_whatever_the_operand():
    assert _holds({"price": {"ne": {"field": "list_price"}}}, {}) is True
    assert _holds({"price": {"ne": {"field": "list_price"}}}, {"price": 1.0}) is True
    assert (
        _holds({"price": {"ne": {"field": "list_price"}}}, {"price": 1, "list_price": 1}) is False
    )


def test_duration_in_days_and_lists():
    assert _holds({"gap_ms": {"gte": "14d"}}, {"gap_ms": 14 * 86_400_000}) is True
    assert _holds({"gap_ms": {"gte": "14d"}}, {"gap_ms": 14 * 86_400_000 - 1}) is False
    assert _holds({"dwell_ms": {"in": ["1s", "2s"]}}, {"dwell_ms": 2_000}) is True
    assert _holds({"dwell_ms": "2h"}, {"dwell_ms": 7_200_000}) is True


# --- missing values --------------------------------------------------------------------------

_MISSING_CASES = {
    "eq": ("shoes", False),
    "ne": ("shoes", True),
    "in": (["shoes"], False),
    "not_in": (["shoes"], True),
    "gt": ("a", False),
    "gte": ("a", False),
    "lt": ("z", False),
    "lte": ("z", False),
    "prefix": ("s", False),
    "contains": ("s", False),
}


@pytest.mark.parametrize("record", [{}, {"category": None}], ids=["absent", "null"])
@pytest.mark.parametrize("op", sorted(_MISSING_CASES))
def test_missing_value_satisfies_only_ne_not_in_and_exists_false(op, record):
    operand, expected = _MISSING_CASES[op]
    assert _holds({"category": {op: operand}}, record) is expected


@pytest.mark.parametrize("record", [{}, {"category": None}], ids=["absent", "null"])
def test_missing_value_and_exists(record):
    assert _holds({"category": {"exists": False}}, record) is True
    assert _holds({"category": {"exists": True}}, record) is False


@pytest.mark.parametrize("op", ["gt", "gte", "lt", "lte", "eq"])
def test_missing_number_is_never_ordered(op):
    assert _holds({"price": {op: 0}}, {"price": None}) is False


# --- compile errors --------------------------------------------------------------------------


def test_unknown_field_names_the_field():
    exc = _error({"dwel_ms": {"gte": "1m"}})
    assert exc.path == "where.dwel_ms"
    assert "unknown field 'dwel_ms'" in str(exc)
    assert str(exc).startswith("where.dwel_ms: ")


def test_unknown_field_inside_combinators_names_its_path():
    exc = _error({"any": [{"category": "shoes"}, {"not": {"colour": "red"}}]})
    assert exc.path == "where.any[1].not.colour"
    assert "unknown field 'colour'" in str(exc)


def test_unknown_operator_names_field_and_operator():
    exc = _error({"price": {"between": [1, 2]}})
    assert exc.path == "where.price.between"
    assert "unknown operator 'between'" in str(exc)


@pytest.mark.parametrize(
    ("spec", "path", "words"),
    [
        ({"price": {"gt": "cheap"}}, "where.price.gt", "expected a number"),
        ({"price": "ten"}, "where.price", "expected a number"),
        ({"price": {"gt": True}}, "where.price.gt", "expected a number"),
        ({"category": {"eq": ["a"]}}, "where.category.eq", "expected a string"),
        ({"in_stock": {"eq": "yes"}}, "where.in_stock.eq", "expected true or false"),
        ({"in_stock": {"gt": True}}, "where.in_stock.gt", "gt needs a number"),
        ({"price": {"prefix": "1"}}, "where.price.prefix", "prefix needs a string field"),
        ({"dwell_ms": {"gte": "a while"}}, "where.dwell_ms.gte", "duration must be like"),
        ({"dwell_ms": {"gte": "-1s"}}, "where.dwell_ms.gte", "must not be negative"),
        ({"dwell_ms": {"gte": 60}}, "where.dwell_ms.gte", "with its unit"),
        ({"dwell_ms": {"gte": "60"}}, "where.dwell_ms.gte", "with its unit"),
        ({"consent.marketing": "yes"}, "where.consent.marketing", "expected true or false"),
        ({"price": {"in": [1, "two"]}}, "where.price.in[1]", "expected a number"),
        ({"category": {"exists": "yes"}}, "where.category.exists", "exists takes true or false"),
        ({"price": {"lt": {"field": "category"}}}, "where.price.lt", "cannot compare a number"),
        ({"price": {"lt": {"field": "cost"}}}, "where.price.lt.field", "unknown field 'cost'"),
        ({"price": {"lt": {"name": "x"}}}, "where.price.lt", "{field: NAME}"),
        ({"properties": "red"}, "where.properties", "is a map"),
        ({"properties": {"eq": "red"}}, "where.properties.eq", "is a map"),
    ],
)
def test_wrong_operand_kind_names_the_path(spec, path, words):
    exc = _error(spec)
    assert exc.path == path
    assert words in str(exc)


@pytest.mark.parametrize("field", ["price", "dwell_ms", "in_stock"])
def test_contains_needs_a_string_field(field):
    try:
        compile_condition({field: {"contains": "1"}}, FIELDS, "where")
    except ConditionError as exc:
        assert exc.path == f"where.{field}.contains"
    else:
        raise AssertionError(f"contains on {field} compiled")


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"category": {"in": []}}, "where.category.in"),
        ({"category": {"not_in": []}}, "where.category.not_in"),
        ({"category": {"in": "shoes"}}, "where.category.in"),
    ],
)
def test_in_needs_a_non_empty_list(spec, path):
    exc = _error(spec)
    assert exc.path == path
    assert "non-empty list" in str(exc)


@pytest.mark.parametrize("name", ["all", "any"])
def test_combinators_need_a_non_empty_list(name):
    exc = _error({name: []})
    assert exc.path == f"where.{name}"
    assert "non-empty list of conditions" in str(exc)


@pytest.mark.parametrize(
    ("spec", "path"),
    [({}, "where"), ({"not": {}}, "where.not"), ({"all": [{}]}, "where.all[0]")],
)
def test_empty_condition_is_an_error(spec, path):
    assert _error(spec).path == path


def test_field_with_no_operator_is_an_error():
    exc = _error({"price": {}})
    assert exc.path == "where.price"
    assert "at least one operator" in str(exc)


def test_condition_error_is_a_value_error():
    assert issubclass(ConditionError, ValueError)
