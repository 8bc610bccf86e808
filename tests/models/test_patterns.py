"""PatternSpec: bad specs fail at construction with errors that name the field or stage."""

import pytest
from pydantic import ValidationError

from models.conditions import kind_of
from models.patterns import (
    EVENT_FIELDS,
    PatternSpec,
    StageSpec,
    compile_pattern,
)

VIEW = {"name": "view", "where": {"event_type": "product_view"}}
CART = {"name": "cart", "where": {"event_type": "add_to_cart"}}
BUY = {"name": "buy", "where": {"event_type": "purchase"}}


def _stage(base, **changes):
    return {**base, **changes}


def _invalid(spec) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        PatternSpec.model_validate(spec)
    return info.value


def _only_error(spec) -> dict:
    errors = _invalid(spec).errors()
    assert len(errors) == 1, errors
    return errors[0]


# --- a valid spec ----------------------------------------------------------------------------


def test_defaults_and_parsed_durations():
    spec = PatternSpec.model_validate(
        {"stages": [VIEW, CART], "within": "30m", "cooldown": "2h", "same": "category"}
    )
    assert spec.within == 30 * 60_000
    assert spec.cooldown == 2 * 3_600_000
    assert spec.same == ["category"]  # a single name becomes a list
    assert spec.skip == "no_skip"
    assert spec.max_partials == 32
    assert spec.version == "1"
    assert spec.stages[1].follows == "followed_by"


def test_numeric_version_becomes_text():
    assert PatternSpec.model_validate({"stages": [VIEW], "version": 2}).version == "2"


def test_stage_bounds():
    assert StageSpec.model_validate(VIEW).bounds() == (1, 1)
    assert StageSpec.model_validate(_stage(VIEW, times=3)).bounds() == (3, 3)
    assert StageSpec.model_validate(_stage(VIEW, at_least=2)).bounds() == (2, None)
    assert StageSpec.model_validate(_stage(VIEW, optional=True)).bounds() == (0, 1)
    assert StageSpec.model_validate(_stage(VIEW, times=2, optional=True)).bounds() == (0, 2)


def test_compile_pattern_attaches_negations_to_the_next_positive_stage():
    spec = PatternSpec.model_validate(
        {
            "stages": [
                VIEW,
                _stage(BUY, name="no_buy", follows="not_next"),
                _stage(CART, times=2, consecutive=True),
                _stage(BUY, follows="not_followed_by"),
            ],
            "within": "1h",
            "same": ["category"],
            "skip": "skip_past_last_event",
            "max_partials": 5,
        }
    )
    pattern = compile_pattern("p", spec)
    assert [s.name for s in pattern.stages] == ["view", "cart"]
    view, cart = pattern.stages
    assert view.guards == ()
    assert len(cart.guards) == 1 and cart.guards[0][1] is True  # not_next is strict
    assert (cart.low, cart.high, cart.consecutive, cart.strict) == (2, 2, True, False)
    assert len(pattern.trailing) == 1 and pattern.trailing[0][1] is False
    assert cart.guards[0][0]({"event_type": "purchase"}) is True
    assert cart.guards[0][0]({"event_type": "add_to_cart"}) is False
    assert (pattern.within, pattern.same, pattern.skip, pattern.max_partials) == (
        3_600_000,
        ("category",),
        "skip_past_last_event",
        5,
    )


def test_derived_fields_are_known_to_conditions():
    assert EVENT_FIELDS["gap_ms"] == "duration"
    assert EVENT_FIELDS["session_start"] == "number"
    assert EVENT_FIELDS["discount"] == "number"
    assert kind_of(EVENT_FIELDS, "consent.marketing") == "boolean"
    assert kind_of(EVENT_FIELDS, "properties.color") == "string"
    PatternSpec.model_validate(
        {"stages": [{"name": "back", "where": {"gap_ms": {"gte": "14d"}, "discount": {"gt": 0}}}]}
    )


# --- unknown keys ----------------------------------------------------------------------------


def test_unknown_key_at_pattern_level():
    error = _only_error({"stages": [VIEW], "windin": "1h"})
    assert error["loc"] == ("windin",)
    assert error["type"] == "extra_forbidden"


def test_unknown_key_at_stage_level():
    error = _only_error({"stages": [VIEW, _stage(CART, wher={"event_type": "x"})]})
    assert error["loc"] == ("stages", 1, "wher")
    assert error["type"] == "extra_forbidden"
    assert "stages.1.wher" in str(_invalid({"stages": [VIEW, _stage(CART, wher={})]}))


# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("within", "words"),
    [("-1s", "must not be negative"), ("soon", "duration must be like"), ("0s", "greater than 0")],
)
def test_bad_within(within, words):
    exc = _invalid({"stages": [VIEW], "within": within})
    (error,) = exc.errors()
    assert error["loc"] == ("within",)
    assert words in error["msg"]
    assert "within" in str(exc)


def test_negative_cooldown():
    error = _only_error({"stages": [VIEW], "cooldown": "-5m"})
    assert error["loc"] == ("cooldown",)
    assert "must not be negative" in error["msg"]


# --- the shape of a pattern ------------------------------------------------------------------


@pytest.mark.parametrize("follows", ["not_next", "not_followed_by"])
def test_first_stage_cannot_be_negated(follows):
    exc = _invalid({"stages": [_stage(VIEW, follows=follows), CART], "within": "1h"})
    message = exc.errors()[0]["msg"]
    assert "stages.0 (view)" in message
    assert "cannot be negated" in message and follows in message


def test_first_stage_cannot_be_optional():
    message = _only_error({"stages": [_stage(VIEW, optional=True), CART]})["msg"]
    assert "stages.0 (view)" in message
    assert "cannot be optional" in message


def test_first_stage_cannot_follow_next():
    message = _only_error({"stages": [_stage(VIEW, follows="next"), CART]})["msg"]
    assert "stages.0 (view)" in message and "follows nothing" in message


def test_unknown_operator_in_where_names_stage_and_field():
    exc = _invalid({"stages": [VIEW, _stage(CART, where={"dwell_ms": {"between": [1, 2]}})]})
    (error,) = exc.errors()
    assert error["loc"] == ("stages", 1, "where")
    assert "dwell_ms.between: unknown operator 'between'" in error["msg"]
    assert "stages.1.where" in str(exc)


def test_unknown_field_in_where_names_it():
    error = _only_error({"stages": [_stage(VIEW, where={"dwel_ms": {"gte": "1m"}})]})
    assert error["loc"] == ("stages", 0, "where")
    assert "dwel_ms: unknown field 'dwel_ms'" in error["msg"]


def test_times_and_at_least_together():
    error = _only_error({"stages": [VIEW, _stage(CART, times=2, at_least=1)]})
    assert error["loc"] == ("stages", 1)
    assert "give times or at_least, not both" in error["msg"]


@pytest.mark.parametrize(
    "quantifier",
    [{"times": 2}, {"at_least": 1}, {"optional": True}, {"consecutive": True}],
    ids=lambda q: next(iter(q)),
)
def test_quantifier_on_a_negated_stage(quantifier):
    negated = _stage(CART, follows="not_followed_by", **quantifier)
    error = _only_error({"stages": [VIEW, negated, BUY]})
    assert error["loc"] == ("stages", 1)
    assert "a negated stage (not_followed_by) takes no quantifier" in error["msg"]


@pytest.mark.parametrize(("field", "value"), [("times", 0), ("at_least", 0), ("times", 101)])
def test_quantifier_out_of_range(field, value):
    error = _only_error({"stages": [_stage(VIEW, **{field: value})]})
    assert error["loc"] == ("stages", 0, field)


def test_trailing_not_followed_by_needs_within():
    message = _only_error({"stages": [VIEW, _stage(BUY, follows="not_followed_by")]})["msg"]
    assert "stages.1 (buy)" in message
    assert "needs within" in message


def test_trailing_not_next_needs_no_within():
    PatternSpec.model_validate({"stages": [VIEW, _stage(BUY, follows="not_next")]})


def test_two_negated_stages_in_a_row():
    spec = {
        "stages": [
            VIEW,
            _stage(CART, follows="not_next"),
            _stage(BUY, follows="not_followed_by"),
            _stage(VIEW, name="again"),
        ]
    }
    message = _only_error(spec)["msg"]
    assert "stages.2 (buy)" in message and "two negated stages in a row" in message


def test_duplicate_stage_names_are_rejected():
    message = _only_error({"stages": [VIEW, _stage(CART, name="view")]})["msg"]
    assert "is used twice" in message


def test_duplicate_stage_names_error_names_the_stage():
    message = _only_error({"stages": [VIEW, CART, _stage(BUY, name="cart")]})["msg"]
    assert "cart" in message


def test_unknown_same_field():
    error = _only_error({"stages": [VIEW], "same": ["categroy"]})
    assert error["loc"] == ("same",)
    assert "unknown field 'categroy'" in error["msg"]


def test_same_accepts_map_entries():
    spec = PatternSpec.model_validate({"stages": [VIEW], "same": ["properties.color"]})
    assert spec.same == ["properties.color"]


@pytest.mark.parametrize(
    ("changes", "loc"),
    [
        ({"skip": "skip_to_next"}, ("skip",)),
        ({"max_partials": 0}, ("max_partials",)),
        ({"holdout": 1.5}, ("holdout",)),
        ({"stages": []}, ("stages",)),
    ],
)
def test_bad_pattern_options_name_the_field(changes, loc):
    assert _only_error({"stages": [VIEW], **changes})["loc"] == loc


def test_bad_follows_names_the_stage_field():
    error = _only_error({"stages": [VIEW, _stage(CART, follows="then")]})
    assert error["loc"] == ("stages", 1, "follows")


def test_spec_is_frozen():
    spec = PatternSpec.model_validate({"stages": [VIEW]})
    with pytest.raises(ValidationError):
        spec.within = 5
