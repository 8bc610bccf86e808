"""The CEP automaton, operator by operator, with event time given and no clock."""

import pickle
import random

import pytest

from models import cep
from models.patterns import PatternSpec, compile_pattern

SECOND = 1_000
MINUTE = 60 * SECOND
DAY = 24 * 60 * MINUTE
SESSION_GAP = 30 * MINUTE


def _pattern(name="p", **spec):
    return compile_pattern(name, PatternSpec.model_validate(spec))


def _stage(event_type, name=None, **options):
    return {"name": name or event_type, "where": {"event_type": event_type}, **options}


def _ev(event_id, ts, **fields):
    """An event whose type is its id without the digits: ``_ev("a1", 0)`` is an ``a``."""
    return {
        "event_id": event_id,
        "timestamp": ts,
        "event_type": event_id.rstrip("0123456789"),
        **fields,
    }


def _stream(text, step=SECOND):
    """``"a b x"`` -> events a1, b2, x3, one ``step`` apart from ``step``."""
    return [_ev(f"{kind}{i}", i * step) for i, kind in enumerate(text.split(), 1)]


class Detector:
    """One user's detector state and the patterns it runs."""

    def __init__(self, *patterns, gap=SESSION_GAP):
        self.patterns = patterns
        self.state = cep.new_state()
        self.gap = gap

    def feed(self, *events):
        matches = []
        for event in events:
            matches += cep.advance(self.patterns, self.state, cep.view(self.state, event, self.gap))
        return matches

    def expire(self, now):
        return cep.expire(self.patterns, self.state, now)

    def deadline(self):
        return cep.deadline(self.patterns, self.state)


def _ids(matches):
    return [m["matched_event_ids"] for m in matches]


def _run(pattern, text):
    return _ids(Detector(pattern).feed(*_stream(text)))


# --- single stage and the match record -------------------------------------------------------


def test_single_stage_matches_each_fitting_event():
    detector = Detector(_pattern("single", stages=[_stage("a")], version="3"))
    matches = detector.feed(_ev("a1", 1_000), _ev("x2", 2_000), _ev("a3", 3_000))
    assert matches == [
        {
            "pattern": "single",
            "pattern_version": "3",
            "matched_event_ids": ["a1"],
            "first_event_id": "a1",
            "start": 1_000,
            "event_time": 1_000,
            "keys": {},
        },
        {
            "pattern": "single",
            "pattern_version": "3",
            "matched_event_ids": ["a3"],
            "first_event_id": "a3",
            "start": 3_000,
            "event_time": 3_000,
            "keys": {},
        },
    ]
    assert detector.state["matches"] == {"single": [2, 3_000]}
    assert detector.state["runs"] == {}


def test_match_times_span_first_to_last_event():
    (match,) = Detector(_pattern(stages=[_stage("a"), _stage("b")])).feed(*_stream("a x b"))
    assert (match["first_event_id"], match["start"], match["event_time"]) == ("a1", 1_000, 3_000)


# --- quantifiers -----------------------------------------------------------------------------


def test_times_fires_at_the_nth_event():
    detector = Detector(_pattern(stages=[_stage("a", times=3)]))
    events = _stream("a a x a a")
    assert detector.feed(*events[:3]) == []
    assert _ids(detector.feed(events[3])) == [["a1", "a2", "a4"]]
    assert _ids(detector.feed(events[4])) == [["a2", "a4", "a5"]]


def test_times_takes_exactly_n_before_the_next_stage():
    pattern = _pattern(stages=[_stage("a", times=2), _stage("b")])
    assert _run(pattern, "a a a b") == [["a1", "a2", "b4"], ["a2", "a3", "b4"]]
    assert _run(pattern, "a b") == []


def test_at_least_fires_at_the_nth_event_with_the_shortest_match():
    detector = Detector(_pattern(stages=[_stage("a", at_least=2)]))
    events = _stream("a a a")
    assert detector.feed(events[0]) == []
    (first,) = detector.feed(events[1])
    assert first["matched_event_ids"] == ["a1", "a2"] and first["event_time"] == 2_000
    assert _ids(detector.feed(events[2])) == [["a2", "a3"]]


def test_at_least_keeps_taking_until_the_next_stage():
    pattern = _pattern(stages=[_stage("a", at_least=2), _stage("b")])
    assert _run(pattern, "a a a b") == [["a1", "a2", "a3", "b4"], ["a2", "a3", "b4"]]
    assert _run(pattern, "a b") == []


def test_optional_middle_stage_is_taken_or_skipped():
    pattern = _pattern(stages=[_stage("a"), _stage("b", optional=True), _stage("c")])
    assert _run(pattern, "a b c") == [["a1", "b2", "c3"]]
    assert _run(pattern, "a c") == [["a1", "c2"]]
    assert _run(pattern, "a x b x c") == [["a1", "b3", "c5"]]


def test_trailing_optional_stage_never_delays_the_match():
    detector = Detector(_pattern(stages=[_stage("a"), _stage("b", optional=True)]))
    assert _ids(detector.feed(_ev("a1", 1_000))) == [["a1"]]
    assert detector.feed(_ev("b2", 2_000)) == []


# --- contiguity ------------------------------------------------------------------------------


def test_next_needs_the_very_next_event():
    pattern = _pattern(stages=[_stage("a"), _stage("b", follows="next")])
    assert _run(pattern, "a b") == [["a1", "b2"]]
    assert _run(pattern, "a x b") == []
    assert _run(pattern, "a a b") == [["a2", "b3"]]


def test_followed_by_lets_other_events_come_between():
    pattern = _pattern(stages=[_stage("a"), _stage("b")])
    assert _run(pattern, "a x x b") == [["a1", "b4"]]


def test_followed_by_takes_the_first_fitting_event_only():
    # skip-till-next-match: a run takes b2 and ends; b3 finds no run.
    pattern = _pattern(stages=[_stage("a"), _stage("b")])
    assert _run(pattern, "a b b") == [["a1", "b2"]]


def test_repeated_stage_events_may_be_apart_unless_consecutive():
    relaxed = _pattern(stages=[_stage("a", times=2), _stage("b")])
    strict = _pattern(stages=[_stage("a", times=2, consecutive=True), _stage("b")])
    assert _run(relaxed, "a x a a b") == [["a1", "a3", "b5"], ["a3", "a4", "b5"]]
    assert _run(strict, "a x a a b") == [["a3", "a4", "b5"]]


def test_consecutive_at_least_stops_growing_after_a_gap():
    pattern = _pattern(stages=[_stage("a", at_least=2, consecutive=True), _stage("b")])
    # a1 a2 then x: the run may still go on to b, but a4 cannot join it.
    assert _run(pattern, "a a x a b") == [["a1", "a2", "b5"]]


def test_an_event_fitting_both_stages_branches_the_run():
    pattern = _pattern(
        stages=[
            {"name": "views", "where": {"event_type": "v"}, "at_least": 1},
            {"name": "shoe", "where": {"event_type": "v", "category": "shoes"}},
        ]
    )
    detector = Detector(pattern)
    assert detector.feed(_ev("v1", 1_000, category="bags")) == []
    # v2 ends one branch and grows the other
    assert _ids(detector.feed(_ev("v2", 2_000, category="shoes"))) == [["v1", "v2"]]
    assert _ids(detector.feed(_ev("v3", 3_000, category="shoes"))) == [
        ["v1", "v2", "v3"],
        ["v2", "v3"],
    ]


# --- negation --------------------------------------------------------------------------------


def test_not_next_in_the_middle_cancels_only_as_the_very_next_event():
    pattern = _pattern(stages=[_stage("a"), _stage("c", follows="not_next"), _stage("b")])
    assert _run(pattern, "a c b") == []
    assert _run(pattern, "a x c b") == [["a1", "b4"]]
    assert _run(pattern, "a b") == [["a1", "b2"]]


def test_not_followed_by_in_the_middle_cancels_anywhere_between():
    pattern = _pattern(stages=[_stage("a"), _stage("c", follows="not_followed_by"), _stage("b")])
    assert _run(pattern, "a x c b") == []
    assert _run(pattern, "a x b") == [["a1", "b3"]]
    assert _run(pattern, "c a b c") == [["a2", "b3"]]  # only between a and b counts


def test_negation_before_an_optional_stage_still_guards_its_skip():
    pattern = _pattern(
        stages=[
            _stage("a"),
            _stage("c", follows="not_followed_by"),
            _stage("o", optional=True),
            _stage("b"),
        ]
    )
    assert _run(pattern, "a c b") == []
    assert _run(pattern, "a o c b") == [["a1", "o2", "b4"]]  # c came after o: not between a, o


def _absence(**options):
    """a not followed by c within 10s."""
    return _pattern(
        "absence",
        stages=[_stage("a"), _stage("c", follows="not_followed_by")],
        within="10s",
        **options,
    )


def test_trailing_not_followed_by_fires_at_the_deadline_via_expire():
    detector = Detector(_absence())
    assert detector.feed(_ev("a1", 0), _ev("x2", 4_000)) == []
    assert detector.deadline() == 10_000
    assert detector.expire(9_999) == []
    assert detector.expire(10_000) == [
        {
            "pattern": "absence",
            "pattern_version": "1",
            "matched_event_ids": ["a1"],
            "first_event_id": "a1",
            "start": 0,
            "event_time": 10_000,
            "keys": {},
        }
    ]
    assert detector.deadline() is None
    assert detector.state["runs"] == {}
    assert detector.state["matches"] == {"absence": [1, 10_000]}
    assert detector.expire(20_000) == []


def test_trailing_not_followed_by_is_cancelled_by_an_event_exactly_at_the_deadline():
    detector = Detector(_absence())
    assert detector.feed(_ev("a1", 0), _ev("c2", 10_000)) == []
    assert detector.deadline() is None
    assert detector.expire(60_000) == []


@pytest.mark.parametrize("late", ["x9", "c9"])
def test_trailing_not_followed_by_fires_from_advance_when_a_later_event_passes_the_deadline(late):
    detector = Detector(_absence())
    assert detector.feed(_ev("a1", 0)) == []
    (match,) = detector.feed(_ev(late, 10_001))
    assert match["matched_event_ids"] == ["a1"] and match["event_time"] == 10_000


def test_deadline_matches_fire_before_the_matches_of_the_event():
    single = _pattern("single", stages=[_stage("x")])
    detector = Detector(_absence(), single)
    detector.feed(_ev("a1", 0))
    matches = detector.feed(_ev("x2", 30_000))
    assert [(m["pattern"], m["event_time"]) for m in matches] == [
        ("absence", 10_000),
        ("single", 30_000),
    ]


def test_trailing_negation_is_cancelled_only_by_an_event_with_the_same_key():
    detector = Detector(_absence(same=["category"]))
    detector.feed(_ev("a1", 0, category="shoes"), _ev("c2", 1_000, category="bags"))
    (match,) = detector.expire(10_000)
    assert match["keys"] == {"category": "shoes"}
    detector.feed(_ev("a3", 20_000, category="shoes"), _ev("c4", 21_000, category="shoes"))
    assert detector.expire(40_000) == []


def test_trailing_not_followed_by_after_several_stages_counts_from_the_first_event():
    pattern = _pattern(
        stages=[_stage("a"), _stage("b"), _stage("c", follows="not_followed_by")], within="10s"
    )
    detector = Detector(pattern)
    detector.feed(_ev("a1", 0), _ev("b2", 6_000))
    assert detector.deadline() == 10_000
    assert _ids(detector.expire(10_000)) == [["a1", "b2"]]


def test_trailing_not_next_fires_at_the_next_event_that_does_not_fit():
    pattern = _pattern(stages=[_stage("a"), _stage("c", follows="not_next")])
    detector = Detector(pattern)
    assert detector.feed(_ev("a1", 1_000)) == []
    assert detector.deadline() is None  # no within: only an event can end it
    (match,) = detector.feed(_ev("x2", 5_000))
    assert match["matched_event_ids"] == ["a1"] and match["event_time"] == 5_000
    assert _run(pattern, "a c x") == []
    assert _run(pattern, "a a c") == [["a1"]]


def test_trailing_not_next_fires_at_within_when_no_event_comes_before_then():
    # The window closes first: a negated event after start + within is too late to cancel.
    pattern = _pattern(stages=[_stage("a"), _stage("c", follows="not_next")], within="10s")
    found = Detector(pattern).feed(_ev("a1", 0), _ev("c2", 20_000))
    assert [(m["matched_event_ids"], m["event_time"]) for m in found] == [(["a1"], 10_000)]


# --- within ----------------------------------------------------------------------------------


def test_within_bounds_first_to_last_event():
    pattern = _pattern(stages=[_stage("a"), _stage("b")], within="10s")
    assert _ids(Detector(pattern).feed(_ev("a1", 0), _ev("b2", 10_000))) == [["a1", "b2"]]
    assert Detector(pattern).feed(_ev("a1", 0), _ev("b2", 10_001)) == []


def test_within_prunes_runs_that_can_no_longer_finish():
    detector = Detector(_pattern(stages=[_stage("a"), _stage("b")], within="10s"))
    detector.feed(_ev("a1", 0), _ev("a2", 5_000))
    assert detector.deadline() is None  # nothing to fire, only to prune
    assert detector.expire(9_999) == []
    assert [run.ids for run in detector.state["runs"]["p"]] == [("a1",), ("a2",)]
    assert detector.expire(10_000) == []
    assert [run.ids for run in detector.state["runs"]["p"]] == [("a2",)]
    detector.expire(15_000)
    assert detector.state["runs"] == {}


def test_within_pruning_keeps_younger_runs():
    pattern = _pattern(stages=[_stage("a"), _stage("b")], within="10s")
    detector = Detector(pattern)
    assert _ids(detector.feed(_ev("a1", 0), _ev("a2", 5_000), _ev("b3", 12_000))) == [["a2", "b3"]]


# --- same ------------------------------------------------------------------------------------


def test_same_key_joins_only_events_of_that_key():
    detector = Detector(_pattern(stages=[_stage("a"), _stage("b")], same="category"))
    matches = detector.feed(
        _ev("a1", 1_000, category="shoes"),
        _ev("b2", 2_000, category="bags"),
        _ev("b3", 3_000, category="shoes"),
    )
    assert _ids(matches) == [["a1", "b3"]]
    assert matches[0]["keys"] == {"category": "shoes"}


def test_same_on_a_repeated_stage():
    detector = Detector(_pattern(stages=[_stage("a", times=2)], same=["category"]))
    matches = detector.feed(
        _ev("a1", 1_000, category="shoes"),
        _ev("a2", 2_000, category="bags"),
        _ev("a3", 3_000),  # no category: joins nothing, starts nothing
        _ev("a4", 4_000, category="shoes"),
    )
    assert _ids(matches) == [["a1", "a4"]]
    assert [run.ids for run in detector.state["runs"]["p"]] == [("a2",), ("a4",)]


def test_an_event_missing_a_same_field_starts_no_run():
    detector = Detector(_pattern(stages=[_stage("a"), _stage("b")], same=["category", "brand"]))
    assert detector.feed(_ev("a1", 1_000, category="shoes")) == []
    assert detector.state["runs"] == {}
    assert detector.feed(_ev("b2", 2_000, category="shoes", brand="acme")) == []


def test_keys_are_text():
    detector = Detector(_pattern(stages=[_stage("a")], same=["price"]))
    (match,) = detector.feed(_ev("a1", 1_000, price=12.5))
    assert match["keys"] == {"price": "12.5"}


# --- after-match skip ------------------------------------------------------------------------


def test_no_skip_and_skip_past_last_event_differ():
    no_skip = _pattern(stages=[_stage("a", at_least=2)], skip="no_skip")
    skip_past = _pattern(stages=[_stage("a", at_least=2)], skip="skip_past_last_event")
    assert _run(no_skip, "a a a a") == [["a1", "a2"], ["a2", "a3"], ["a3", "a4"]]
    assert _run(skip_past, "a a a a") == [["a1", "a2"], ["a3", "a4"]]


def test_skip_past_last_event_drops_runs_that_started_before_the_match_ends():
    def run(skip):
        pattern = _pattern(stages=[_stage("a"), _stage("b")], same="category", skip=skip)
        return _ids(
            Detector(pattern).feed(
                _ev("a1", 1_000, category="shoes"),
                _ev("a2", 2_000, category="bags"),
                _ev("b3", 3_000, category="shoes"),
                _ev("b4", 4_000, category="bags"),
                _ev("a5", 5_000, category="bags"),
                _ev("b6", 6_000, category="bags"),
            )
        )

    assert run("no_skip") == [["a1", "b3"], ["a2", "b4"], ["a5", "b6"]]
    assert run("skip_past_last_event") == [["a1", "b3"], ["a5", "b6"]]


def test_no_skip_keeps_runs_that_end_on_the_same_event():
    pattern = _pattern(stages=[_stage("a"), _stage("b")])
    assert _run(pattern, "a a b") == [["a1", "b3"], ["a2", "b3"]]


def test_skip_past_last_event_discards_a_second_match_ending_on_the_same_event():
    pattern = _pattern(stages=[_stage("a"), _stage("b")], skip="skip_past_last_event")
    assert _run(pattern, "a a b") == [["a1", "b3"]]


@pytest.mark.parametrize(
    ("skip", "expected"),
    [
        ("no_skip", [(["a1", "b3"], 10_000), (["a2", "b3"], 11_000)]),
        ("skip_past_last_event", [(["a1", "b3"], 10_000)]),
    ],
)
def test_skip_applies_to_absences_fired_by_expire(skip, expected):
    pattern = _pattern(
        stages=[_stage("a"), _stage("b"), _stage("c", follows="not_followed_by")],
        within="10s",
        skip=skip,
    )
    detector = Detector(pattern)
    detector.feed(_ev("a1", 0), _ev("a2", 1_000), _ev("b3", 2_000))
    matches = detector.expire(10_000) + detector.expire(11_000)
    assert [(m["matched_event_ids"], m["event_time"]) for m in matches] == expected


# --- max_partials ----------------------------------------------------------------------------


def test_max_partials_drops_the_oldest_runs_and_counts_them():
    detector = Detector(_pattern(stages=[_stage("a"), _stage("b")], max_partials=2))
    assert detector.feed(*_stream("a a a")) == []
    assert detector.state["dropped"] == 1
    assert [run.ids for run in detector.state["runs"]["p"]] == [("a2",), ("a3",)]
    assert _ids(detector.feed(_ev("b4", 4_000))) == [["a2", "b4"], ["a3", "b4"]]
    detector.feed(*[_ev(f"a{i}", i * SECOND) for i in range(5, 10)])
    assert detector.state["dropped"] == 1 + 3


def test_dropped_counts_over_all_patterns():
    first = _pattern("first", stages=[_stage("a"), _stage("b")], max_partials=1)
    second = _pattern("second", stages=[_stage("a"), _stage("c")], max_partials=2)
    detector = Detector(first, second)
    detector.feed(*_stream("a a a"))
    assert detector.state["dropped"] == 2 + 1


# --- deadline --------------------------------------------------------------------------------


def test_deadline_is_the_earliest_absence():
    detector = Detector(_absence())
    assert detector.deadline() is None
    detector.feed(_ev("a1", 1_000))
    assert detector.deadline() == 11_000
    detector.feed(_ev("a2", 4_000))
    assert detector.deadline() == 11_000
    assert _ids(detector.expire(11_000)) == [["a1"]]
    assert detector.deadline() == 14_000
    assert detector.feed(_ev("c3", 5_000)) == []
    assert detector.deadline() is None


def test_deadline_ignores_patterns_without_absences_and_unknown_patterns():
    sequence = _pattern("sequence", stages=[_stage("a"), _stage("b")], within="10s")
    absence = _absence()
    detector = Detector(sequence, absence)
    detector.feed(_ev("a1", 1_000))
    assert detector.deadline() == 11_000
    assert cep.deadline((sequence,), detector.state) is None


# --- derived fields --------------------------------------------------------------------------


def test_view_adds_the_derived_fields_without_touching_the_event():
    state = cep.new_state()
    first = {"event_id": "e1", "timestamp": 0, "event_type": "x", "price": 7.0, "list_price": 10.0}
    seen = cep.view(state, first, SESSION_GAP)
    assert (seen["gap_ms"], seen["session_start"], seen["discount"]) == (None, 0, 0.3)
    assert "gap_ms" not in first
    seen = cep.view(state, _ev("e2", 10 * MINUTE, price=5.0), SESSION_GAP)
    assert (seen["gap_ms"], seen["session_start"], seen["discount"]) == (10 * MINUTE, 0, None)
    seen = cep.view(state, _ev("e3", 40 * MINUTE, price=5.0, list_price=0.0), SESSION_GAP)
    assert (seen["gap_ms"], seen["session_start"], seen["discount"]) == (
        30 * MINUTE,
        40 * MINUTE,
        None,
    )


def test_return_after_a_lapse_uses_gap_ms():
    returned = _pattern("returned", stages=[{"name": "back", "where": {"gap_ms": {"gte": "14d"}}}])
    detector = Detector(returned)
    matches = detector.feed(
        _ev("e1", 0), _ev("e2", 1 * DAY), _ev("e3", 15 * DAY), _ev("e4", 29 * DAY - 1)
    )
    assert _ids(matches) == [["e3"]]


def test_session_start_marks_the_first_event_of_each_session():
    opener = _pattern(
        "opener",
        stages=[{"name": "first", "where": {"session_start": {"eq": {"field": "timestamp"}}}}],
    )
    detector = Detector(opener)
    matches = detector.feed(
        _ev("e1", 0), _ev("e2", 10 * MINUTE), _ev("e3", 45 * MINUTE), _ev("e4", 50 * MINUTE)
    )
    assert _ids(matches) == [["e1"], ["e3"]]


def test_discount_in_a_condition():
    deal = _pattern(
        "deal", stages=[{"name": "deal", "where": {"event_type": "v", "discount": {"gte": 0.3}}}]
    )
    matches = Detector(deal).feed(
        _ev("v1", 1_000, price=7.0, list_price=10.0),
        _ev("v2", 2_000, price=8.0, list_price=10.0),
        _ev("v3", 3_000, price=1.0),
        _ev("v4", 4_000, price=50.0, list_price=100.0),
    )
    assert _ids(matches) == [["v1"], ["v4"]]


def test_a_lapsed_user_viewing_then_buying():
    pattern = _pattern(
        "winback",
        stages=[
            {"name": "back", "where": {"event_type": "v", "gap_ms": {"gte": "14d"}}},
            _stage("buy", follows="followed_by"),
        ],
        within="1d",
    )
    matches = Detector(pattern).feed(
        _ev("v1", 0), _ev("buy2", 1 * DAY), _ev("v3", 20 * DAY), _ev("buy4", 20 * DAY + MINUTE)
    )
    assert _ids(matches) == [["v3", "buy4"]]


# --- determinism and pickling ----------------------------------------------------------------


def _patterns():
    return (
        _pattern("funnel", stages=[_stage("a", at_least=2), _stage("b")], within="1m"),
        _pattern(
            "absence",
            stages=[_stage("a"), _stage("c", follows="not_followed_by")],
            within="20s",
            same="category",
        ),
        _pattern(
            "strict",
            stages=[_stage("b"), _stage("c", follows="next")],
            skip="skip_past_last_event",
            max_partials=3,
        ),
    )


def _random_events(seed, n=200):
    rng = random.Random(seed)
    ts = 0
    events = []
    for i in range(n):
        ts += rng.choice((0, 500, 3_000, 15_000))
        kind = rng.choice("abcx")
        events.append(_ev(f"{kind}{i}", ts, category=rng.choice(("shoes", "bags"))))
    return events


def test_same_input_gives_the_same_matches():
    events = _random_events(7)
    first, second = Detector(*_patterns()), Detector(*_patterns())
    matches = first.feed(*events)
    assert matches  # the stream exercises the patterns
    assert {m["pattern"] for m in matches} == {"funnel", "absence", "strict"}
    assert second.feed(*events) == matches
    assert second.state == first.state


def test_state_pickles_and_continues():
    events = _random_events(11)
    whole = Detector(*_patterns())
    expected = whole.feed(*events)

    part = Detector(*_patterns())
    before = part.feed(*events[:100])
    restored = pickle.loads(pickle.dumps(part.state))
    assert restored == part.state
    part.state = restored
    after = part.feed(*events[100:])
    assert before + after == expected
    assert part.state == whole.state


def test_pickled_state_keeps_its_deadline():
    detector = Detector(_absence())
    detector.feed(_ev("a1", 1_000))
    restored = Detector(_absence())
    restored.state = pickle.loads(pickle.dumps(detector.state))
    assert restored.deadline() == 11_000
    assert _ids(restored.expire(11_000)) == [["a1"]]


def test_same_reaches_into_maps_with_a_dotted_name():
    pattern = _pattern(stages=[_stage("a", times=2)], same="properties.color")
    found = Detector(pattern).feed(
        _ev("a1", 0, properties={"color": "red"}),
        _ev("a2", 1, properties={"color": "blue"}),
        _ev("a3", 2, properties={"color": "red"}),
    )
    assert [(m["matched_event_ids"], m["keys"]) for m in found] == [
        (["a1", "a3"], {"properties.color": "red"})
    ]
