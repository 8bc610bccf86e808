"""The recommenders' contract: each learns clicks, ranks, pickles, compares, stays bounded."""

import math
import pickle
import random

import pytest

from models import recommend

MODELS = {
    "pop": recommend.Popular,
    "spop": recommend.SessionPopular,
    "iknn": lambda: recommend.ItemKNN(smoothing=2, neighbours=4, max_sessions=5),
    "iknn_decay": lambda: recommend.ItemKNN(smoothing=2, neighbours=4, half_life_ms=10_000),
    "sknn": lambda: recommend.SessionKNN(neighbours=3, sample=5, max_sessions=8, max_items=4),
    "vsknn_plain": lambda: recommend.SessionKNN(recent_weighted=False),
}
REASONS = {recommend.POPULAR, recommend.VIEWED, recommend.SESSION}


def _clicks(seed: int, sessions: int = 60, items: int = 15):
    """(session, item, at) in time order: sessions of 1 to 6 clicks over skewed items."""
    rng = random.Random(seed)
    clicks, at = [], 0
    for number in range(sessions):
        for _ in range(rng.randint(1, 6)):
            at += rng.randint(1, 3_000)
            clicks.append((f"s{number}", f"i{min(int(rng.expovariate(0.3)), items)}", at))
    return clicks


def _fed(make, clicks):
    model = make()
    for session, item, at in clicks:
        model.learn(session, item, at)
    return model


@pytest.mark.parametrize("name", MODELS)
def test_a_ranking_is_at_most_k_distinct_items_best_first_with_a_reason(name):
    model = _fed(MODELS[name], _clicks(1))
    for prefix in (["i0"], ["i3", "i1"], ["i9", "i2", "i2", "i0"], ["unknown"]):
        for k in (1, 5, 20):
            ranked = model.recommend(prefix, k)
            items = [r[0] for r in ranked]
            assert len(items) == len(set(items)) and 0 < len(items) <= k
            own = [r[1] for r in ranked if r[2][0] != recommend.POPULAR]
            assert own == sorted(own, reverse=True)
            for _, score, (kind, because) in ranked:
                assert kind in REASONS and score >= 0
                assert (because is None) == (kind == recommend.POPULAR)
                if kind != recommend.POPULAR:
                    assert because in prefix


@pytest.mark.parametrize("name", MODELS)
def test_the_same_clicks_give_equal_models_and_the_same_rankings(name):
    clicks = _clicks(2)
    one, two = _fed(MODELS[name], clicks), _fed(MODELS[name], clicks)
    assert one == two
    assert one.recommend(["i1", "i0"], 10) == two.recommend(["i1", "i0"], 10)
    other = _fed(MODELS[name], clicks[:-5])
    assert one != other


@pytest.mark.parametrize("name", MODELS)
def test_a_model_pickles_to_an_equal_model_that_goes_on_the_same_way(name):
    clicks = _clicks(3)
    model = _fed(MODELS[name], clicks[:100])
    model.recommend(["i0"], 10)  # fills any ranking cache: not state
    copy = pickle.loads(pickle.dumps(model, pickle.HIGHEST_PROTOCOL))
    assert copy == model
    for session, item, at in clicks[100:]:
        model.learn(session, item, at)
        copy.learn(session, item, at)
        assert copy.recommend([item], 8) == model.recommend([item], 8)
    assert copy == model


@pytest.mark.parametrize("name", MODELS)
def test_an_empty_model_recommends_nothing_it_has_not_learned(name):
    # S-POP gives the session's own items back; nothing else knows anything yet.
    ranked = MODELS[name]().recommend(["i0"], 20)
    assert [r for r in ranked if r[2][0] != recommend.SESSION] == []


@pytest.mark.parametrize("name", ["iknn", "iknn_decay", "sknn", "vsknn_plain"])
def test_items_seen_together_are_recommended_together(name):
    model = MODELS[name]()
    at = 0
    for number in range(6):
        for item in ("a", "b") if number % 2 else ("a", "b", "c"):
            at += 1_000
            model.learn(f"s{number}", item, at)
        for item in ("x", "y", "z"):  # popular elsewhere
            at += 1_000
            model.learn(f"t{number}", item, at)
            model.learn(f"u{number}", item, at)
    # Session neighbours also rank the session's own item (people go back to it).
    ranked = [r for r in model.recommend(["a"], 4) if r[0] != "a"]
    assert [r[0] for r in ranked[:2]] == ["b", "c"]
    assert ranked[0][2] == (recommend.VIEWED, "a")


def test_item_knn_is_the_smoothed_cosine_of_session_co_occurrence():
    model = recommend.ItemKNN(smoothing=3, neighbours=10)
    sessions = [["a", "b"], ["a", "b", "a"], ["a", "c"], ["b"], ["b", "c"]]
    for number, items in enumerate(sessions):
        for item in items:
            model.learn(number, item)
    # n_a = 3 sessions, n_b = 4, n_c = 2; co(a, b) = 2, co(a, c) = 1, co(b, c) = 1
    similar = dict(model.similar("a", 5))
    assert similar["b"] == pytest.approx(2 / (math.sqrt(3 * 4) + 3))
    assert similar["c"] == pytest.approx(1 / (math.sqrt(3 * 2) + 3))
    assert set(similar) == {"b", "c"}


def test_item_knn_decay_lets_recent_pairs_outweigh_older_ones():
    def fed(half_life):
        model = recommend.ItemKNN(smoothing=0, neighbours=10, half_life_ms=half_life)
        for number, (items, at) in enumerate(
            [(("a", "b"), 0), (("a", "b"), 0), (("a", "c"), 100_000)]
        ):
            for item in items:
                model.learn(number, item, at)
        return model

    assert fed(None).recommend(["a"], 1, at=100_000)[0][0] == "b"
    assert fed(10_000).recommend(["a"], 1, at=100_000)[0][0] == "c"


def test_item_knn_keeps_at_most_twice_its_neighbours_and_prunes_the_rarest():
    model = recommend.ItemKNN(smoothing=0, neighbours=3, max_sessions=4)
    for number in range(40):
        for item in ("hub", "friend", f"rare{number}"):
            model.learn(number, item)
    assert all(len(row) < 2 * 3 for row in model.co.values())
    assert model.pruned > 0
    assert model.similar("hub", 1)[0][0] == "friend"  # the frequent pair survives pruning
    assert len(model.sessions) <= 4


def test_session_knn_keeps_its_bounds_and_never_counts_the_session_itself():
    model = recommend.SessionKNN(neighbours=2, sample=3, max_sessions=5, max_items=2)
    for session, item, at in _clicks(4, sessions=50):
        model.learn(session, item, at)
    assert len(model.sessions) <= 5
    assert all(len(entry[1]) <= 2 for entry in model.sessions.values())
    assert all(len(recent) <= 3 for recent in model.index.values())
    assert all(s in model.sessions for recent in model.index.values() for s in recent)
    alone = recommend.SessionKNN()
    for item in ("a", "b"):
        alone.learn("me", item)
    assert alone.neighbours(["a"], exclude="me") == []
    assert [r[2][0] for r in alone.recommend(["a"], 5, exclude="me")] == ["popular"] * 2


def test_popular_ranks_as_it_goes_what_a_full_ranking_gives():
    rng = random.Random(5)
    model = recommend.Popular(depth=5)
    for step in range(2_000):
        model.learn("s", f"i{int(rng.expovariate(0.2))}")
        if step % 37 == 0:
            full = recommend._top(model.counts, 5)
            assert [(r[0], r[1]) for r in model.recommend((), 5)] == [
                (i, float(n)) for i, n in full
            ]
    assert len(model.recommend((), 8)) == 8  # beyond its depth: ranked from all counts


def test_session_popular_puts_the_session_s_own_items_first():
    model = recommend.SessionPopular()
    for item in ("x", "x", "y"):
        model.learn("other", item)
    ranked = model.recommend(["a", "b", "a"], 4)
    assert [r[0] for r in ranked] == ["a", "b", "x", "y"]
    assert ranked[0][2] == (recommend.SESSION, "a")


@pytest.mark.parametrize(
    "make",
    [
        lambda: recommend.ItemKNN(smoothing=-1),
        lambda: recommend.ItemKNN(neighbours=0),
        lambda: recommend.ItemKNN(half_life_ms=0),
        lambda: recommend.SessionKNN(neighbours=0),
        lambda: recommend.SessionKNN(max_items=0),
    ],
)
def test_bad_parameters_fail_at_construction(make):
    with pytest.raises(ValueError):
        make()


# ---------------------------------------------------------------- served per user


def _served(model, user, at):
    return [entry["item"] for entry in model.serve({"user": user}, at)]


def test_served_lists_are_scored_before_each_next_click_as_the_protocol_does():
    # Two users' sessions, one after the other, clicks a second apart: the recommender's
    # progressive HR/MRR equal the literature's protocol run by hand on the algorithm.
    sessions = [["a", "b", "c"], ["a", "b", "d"], ["b", "c"], ["a", "b", "c", "a"], ["c", "d", "b"]]
    served = recommend.SessionRecommender(k=2, evaluate_share=1.0, neighbours=5)
    plain = recommend.SessionKNN(neighbours=5)
    hits = reciprocal = predictions = 0
    at = 0
    for number, items in enumerate(sessions):
        user, start = f"u{number}", at
        for position, item in enumerate(items):
            if position:
                ranked = [r[0] for r in plain.recommend(items[:position], 2, exclude=(user, start))]
                predictions += 1
                if item in ranked:
                    hits += 1
                    reciprocal += 1 / (ranked.index(item) + 1)
            served.learn({"user": user, "item": item, "period": "test"}, at)
            plain.learn((user, start), item, at)
            at += 1_000
    report = served.summary()["by_period"]["test"]["metrics"]
    assert report["predictions"] == predictions == 10
    assert report["hr_at_2"] == round(100 * hits / predictions, 4)
    assert report["mrr_at_2"] == round(100 * reciprocal / predictions, 4)
    assert served.summary()["metrics"] == report  # every click was in the period


def test_a_click_after_the_gap_starts_a_new_session_that_nothing_predicts():
    model = recommend.SessionRecommender(algorithm="session_popular", gap_ms=10_000)
    model.learn({"user": "u", "item": "a"}, 0)
    model.learn({"user": "u", "item": "b"}, 5_000)  # predicted from [a]
    assert model.summary()["metrics"]["predictions"] == 1
    assert _served(model, "u", 9_000)[:2] == ["b", "a"]  # the open session's own items
    model.learn({"user": "u", "item": "c"}, 15_000)  # 10 s after b: a new session
    assert model.summary()["metrics"]["predictions"] == 1
    assert model.open["u"][0] == 15_000 and model.open["u"][2] == ["c"]
    # Long after the session: the list is the popular one.
    assert {e["reason"] for e in model.serve({"user": "u"}, 60_000)} == {"popular"}


def test_bought_items_are_left_out_unless_configured():
    def fed(again):
        model = recommend.SessionRecommender(algorithm="session_popular", recommend_purchased=again)
        model.learn({"user": "u", "item": "a"}, 0)
        model.learn({"user": "u", "item": "b", "bought": True}, 1_000)
        model.learn({"user": "u", "item": "b"}, 2_000)
        return _served(model, "u", 3_000)

    assert fed(False) == ["a"]
    assert fed(True) == ["b", "a"]


def test_only_a_share_of_users_is_scored_outside_the_test_period():
    def predictions(share, period):
        model = recommend.SessionRecommender(algorithm="popular", evaluate_share=share)
        for n in range(200):
            for at in (0, 1_000):
                model.learn({"user": f"u{n}", "item": "a", "period": period}, at)
        return model.summary()["metrics"]["predictions"]

    assert predictions(1.0, None) == 200 and predictions(0.0, None) == 0
    assert 5 < predictions(0.1, None) < 40
    assert predictions(0.0, "test") == 200 and predictions(0.0, "train") == 0


def test_forgetting_a_user_drops_their_sessions_from_everyone_s_neighbours():
    model = recommend.SessionRecommender(neighbours=5)
    for user, items, at in (("gone", ["a", "z"], 0), ("other", ["a"], 100_000_000)):
        for offset, item in enumerate(items):
            model.learn({"user": user, "item": item}, at + offset)
    before = model.serve({"user": "other"}, 100_000_001)
    assert {"item": "z", "reason": "viewed", "because": "a"}.items() <= before[1].items()
    model.forget({"user": "gone"})
    assert "gone" not in model.open
    assert all(session[0] != "gone" for session in model.model.sessions)
    # No neighbour is left: only the popular list (click counts are aggregates, they stay).
    assert {e["reason"] for e in model.serve({"user": "other"}, 100_000_001)} == {"popular"}


def test_the_recommender_bounds_its_users_and_pickles_equal():
    model = recommend.SessionRecommender(algorithm="item_knn", max_users=3, max_items=2)
    for n in range(10):
        for at, item in enumerate(("a", "b", "c")):
            model.learn({"user": f"u{n}", "item": item, "bought": item == "c"}, n * 10 + at)
    assert len(model.open) == 3 and len(model.bought) == 3
    assert all(len(entry[2]) <= 2 for entry in model.open.values())
    copy = pickle.loads(pickle.dumps(model, pickle.HIGHEST_PROTOCOL))
    assert copy == model and copy.serve({"user": "u9"}, 100) == model.serve({"user": "u9"}, 100)
    with pytest.raises(ValueError, match="algorithm"):
        recommend.SessionRecommender(algorithm="gnn")


# ---------------------------------------------------------------- within segments


def test_session_knn_with_a_tag_takes_neighbours_only_from_sessions_with_it():
    model = recommend.SessionKNN(neighbours=5)
    model.learn("s1", "x", 0, tags=("fans",))
    model.learn("s1", "y", 1, tags=("fans",))
    for at, item in enumerate(("x", "z"), 2):
        model.learn("s2", item, at)
    assert {r[0] for r in model.recommend(["x"], 5, tag="fans")} == {"x", "y"}
    assert {r[0] for r in model.recommend(["x"], 5)} == {"x", "y", "z"}
    assert model.recommend(["x"], 5, tag="nobody") == []  # nothing fills a segment's list
    model.forget_session("s1")
    assert model.tags == {} and model.recommend(["x"], 5, tag="fans") == []


def _segment_clicks(model, at=0):
    """Two fans' sessions go a -> m, three other sessions a -> g."""
    for user, groups, second in [("f1", ["fans"], "m"), ("f2", ["fans"], "m")] + [
        (f"o{n}", [], "g") for n in range(3)
    ]:
        for item in ("a", second):
            model.learn({"user": user, "item": item, "segments": groups}, at)
            at += 1_000
    return at


def _fan_list(weight, min_size=0, parent=None):
    segments = (("all", None, 0), ("fans", parent, min_size))
    model = recommend.SessionRecommender(
        neighbours=10, segment_weight=weight, segments=segments, evaluate_share=1.0
    )
    at = _segment_clicks(model)
    model.learn({"user": "f3", "item": "a", "segments": ["all", "fans"]}, at)
    return model, model.serve({"user": "f3"}, at + 1)


def test_a_segment_s_members_lift_what_they_clicked_and_the_list_names_the_segment():
    _, global_list = _fan_list(0.0)
    assert [e["item"] for e in global_list[:3]] == ["a", "g", "m"]
    assert not any("segment" in e for e in global_list)
    _, fans_list = _fan_list(1.0)
    assert [e["item"] for e in fans_list[:2]] == ["a", "m"]
    assert fans_list[1]["segment"] == "fans" and fans_list[1]["because"] == "a"
    _, blended = _fan_list(0.5)
    assert [e["item"] for e in blended[:3]] == ["a", "m", "g"]
    # Weight 0 is the global list exactly, as if no segment were given.
    plain = recommend.SessionRecommender(neighbours=10)
    at = _segment_clicks(plain)
    plain.learn({"user": "f3", "item": "a"}, at)
    assert plain.serve({"user": "f3"}, at + 1) == global_list


def test_a_segment_below_its_min_size_gives_way_to_its_parent_then_the_global_list():
    model, small = _fan_list(1.0, min_size=4, parent="all")  # 3 fans seen: too few
    assert model._segment(("all", "fans")) == "all"
    assert {e.get("segment") for e in small} <= {"all", None}
    model, grown = _fan_list(1.0, min_size=3, parent="all")
    assert model._segment(("all", "fans")) == "fans" and grown[1]["segment"] == "fans"
    lone = recommend.SessionRecommender(segment_weight=1.0, segments=(("fans", None, 9),))
    _segment_clicks(lone)
    assert lone._segment(("fans",)) is None and lone.segment_members["fans"] == {"f1", "f2"}
    lone.forget({"user": "f1"})
    assert lone.segment_members["fans"] == {"f2"}


def test_a_recommender_with_segments_pickles_equal_and_checks_its_weight():
    model, _ = _fan_list(0.5, min_size=2)
    copy = pickle.loads(pickle.dumps(model, pickle.HIGHEST_PROTOCOL))
    assert copy == model and copy.serve({"user": "f3"}, 10**6) == model.serve({"user": "f3"}, 10**6)
    assert model.summary()["size"]["segments"] == 2
    # Of the two fans' second clicks only f2's list was served within "fans": at f1's,
    # the segment had seen one member, below its min_size of 2 (and f1 is in no parent).
    assert model.summary()["within_segments"]["predictions"] == 1
    assert model.summary()["metrics"]["predictions"] == 5
    with pytest.raises(ValueError, match="segment_weight"):
        recommend.SessionRecommender(segment_weight=1.5)


@pytest.mark.parametrize("algorithm", ["session_knn", "item_knn"])
def test_similar_items_are_what_the_sessions_with_the_item_also_clicked(algorithm):
    model = recommend.SessionRecommender(algorithm=algorithm, k=3)
    clicks = [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"), ("u2", "c")]
    clicks += [("u3", "d"), ("u3", "e")]
    for at, (user, item) in enumerate(clicks):
        model.learn({"user": user, "item": item}, at * 1000)
    similar = model.similar("a", 10_000)
    # b was clicked with a twice, c once; nothing fills: d and e never met a.
    assert [entry["item"] for entry in similar] == ["b", "c"]
    assert similar[0]["score"] > similar[1]["score"] > 0
    assert [entry["item"] for entry in model.similar("e", 10_000)] == ["d"]
    assert model.similar("unknown", 10_000) == []


def test_the_popularity_lists_give_no_similar_items():
    for algorithm in ("popular", "session_popular"):
        model = recommend.SessionRecommender(algorithm=algorithm)
        model.learn({"user": "u1", "item": "a"}, 0)
        assert model.similar("a", 0) is None
    off = recommend.SessionRecommender(similar_items=False)
    off.learn({"user": "u1", "item": "a"}, 0)
    off.learn({"user": "u1", "item": "b"}, 1)
    assert off.similar("a", 1) is None


def test_reminders_bring_the_session_s_own_items_into_the_list():
    clicks = [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "c"), ("u3", "a"), ("u3", "b")]
    clicks += [("me", "x"), ("me", "a"), ("me", "x")]
    served = {}
    for weight in (0.0, 0.5):
        model = recommend.SessionRecommender(k=3, reminders=weight)
        for at, (user, item) in enumerate(clicks):
            model.learn({"user": user, "item": item}, at * 1000)
        served[weight] = model.serve({"user": "me"}, 9_000)
    # x is only in the user's own session: no neighbour brings it, a reminder does.
    assert "x" not in [entry["item"] for entry in served[0.0]]
    reminded = {entry["item"]: entry for entry in served[0.5]}
    assert reminded["x"]["reason"] == "session" and reminded["x"]["because"] == "x"
    assert len(served[0.5]) == 3
    with pytest.raises(ValueError, match="reminders"):
        recommend.SessionRecommender(reminders=2)
