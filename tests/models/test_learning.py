"""The online models: one contract for every model, progressive validation, drift, order."""

from __future__ import annotations

import json
import pickle
import random

import pytest

from models import learning
from models.features import add, new_session, session_features, user_features

SPECS = [
    learning.ModelSpec("purchase_intent"),
    learning.ModelSpec("churn_risk"),
    learning.ModelSpec("clusters", kind="clusterer", clusters=3),
]


def examples(n: int, seed: int = 1, flip_after: int | None = None) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        views = rng.randint(0, 20)
        y = rng.random() < views / 25
        if flip_after is not None and i >= flip_after:
            y = not y
        x = {"s_views": float(views), "noise": rng.random(), "u_events": float(rng.randint(0, 9))}
        out.append(
            {"kind": "example", "at": i, "user_id": f"u{i % 7}", "x": x, "y": y, "id": str(i)}
        )
    return out


@pytest.fixture(params=SPECS, ids=lambda spec: spec.name)
def spec(request):
    return request.param


def test_predicting_before_any_learning_works(spec):
    model = learning.new_model(spec)
    p = model.predict({"s_views": 3.0})
    assert isinstance(p, float)
    assert json.loads(json.dumps(model.summary()))["samples"] == 0


def test_predict_changes_neither_its_input_nor_what_the_model_learns(spec):
    asked, quiet = learning.new_model(spec), learning.new_model(spec)
    first, then = examples(50), examples(100, seed=2)
    learning.feed(asked, first)
    learning.feed(quiet, first)
    x = {"s_views": 4.0, "noise": 0.5, "never_seen": 1.0}
    copy = dict(x)
    for _ in range(3):
        asked.predict(x)  # requests must not change later scores
    assert x == copy
    learning.feed(asked, then)
    learning.feed(quiet, then)
    probe = {"s_views": 6.0, "noise": 0.2, "u_events": 3.0}
    assert asked.predict(probe) == quiet.predict(probe)
    assert asked.summary() == quiet.summary()


def test_a_model_pickles_before_and_after_learning(spec):
    model = learning.new_model(spec)
    assert pickle.loads(pickle.dumps(model)).summary() == model.summary()
    learning.feed(model, examples(200))
    copy = pickle.loads(pickle.dumps(model))
    x = {"s_views": 7.0, "noise": 0.1, "u_events": 2.0}
    assert copy.predict(x) == model.predict(x)
    assert copy.summary() == model.summary()


def test_unseen_and_missing_features_are_tolerated(spec):
    model = learning.new_model(spec)
    learning.feed(model, examples(100))
    for x in ({}, {"s_views": 2.0}, {"never_seen": 5.0, "s_views": 1.0}):
        assert isinstance(model.predict(x), float)
    model.learn({"brand_new": 1.0}, True, 1000)  # learning one with new features works too


def test_summaries_are_json_with_metrics_and_never_pickles(spec):
    model = learning.new_model(spec)
    learning.feed(model, examples(300))
    summary = json.loads(json.dumps(model.summary()))
    assert summary["model"] == spec.name and summary["samples"] == 300
    if spec.kind == "classifier":
        assert 0.5 < summary["metrics"]["roc_auc"] <= 1.0
        assert summary["baselines"]["majority"]["roc_auc"] == 0.5
        assert set(summary["weights"]) == {"s_views", "noise", "u_events"}
    else:
        assert 0 <= summary["metrics"]["silhouette"] < 1  # river's ratio: lower is better
        assert sum(summary["sizes"].values()) == 300 and len(summary["centres"]) == 3


def test_each_prediction_is_made_before_its_label_is_learned():
    model = learning.new_model(SPECS[0])
    first = examples(1)[0]
    assert model.learn(first["x"], first["y"], 0)["p"] == 0.5  # nothing learned yet
    again = model.learn(first["x"], first["y"], 1)["p"]
    assert again != 0.5


def test_the_order_of_arrival_does_not_change_a_score():
    items = examples(400)
    items += [{"kind": "request", "at": 399, "user_id": "u1", "x": {"s_views": 9.0}, "id": "r"}]
    one, _ = learning.feed(learning.new_model(SPECS[0]), items)
    shuffled = list(items)
    random.Random(3).shuffle(shuffled)
    two, _ = learning.feed(learning.new_model(SPECS[0]), shuffled)
    assert one == two and len(one) == 1


def test_a_rise_in_the_loss_starts_a_new_version():
    # A slow learner, so that the loss stays up once the labels flip.
    model = learning.new_model(learning.ModelSpec("purchase_intent", learning_rate=0.002))
    _, drifts = learning.feed(model, examples(3000, flip_after=1500))
    assert drifts and drifts[0]["version"] == 2 and drifts[0]["at"] > 1500
    assert model.summary()["version_metrics"]["samples"] < model.summary()["samples"]
    steady = learning.new_model(SPECS[0])
    assert learning.feed(steady, examples(3000))[1] == []


def test_a_prefix_is_learned_but_neither_scored_nor_watched_for_drift():
    items = examples(200)
    model = learning.new_model(SPECS[0])
    learning.feed(model, items)
    prefixed = learning.new_model(SPECS[0])
    prefixes = [{**item, "kind": learning.PREFIX, "id": f"{item['id']}#1"} for item in items]
    learning.feed(prefixed, items + prefixes)
    # The metrics and the drift detector saw the same 200 examples ...
    assert prefixed.summary()["metrics"]["samples"] == 200
    assert prefixed.detector.n_detections == model.detector.n_detections
    assert prefixed.detector.width == model.detector.width
    # ... while the model learned 400.
    probe = {"s_views": 9.0, "noise": 0.5, "u_events": 3.0}
    assert prefixed.predict(probe) != model.predict(probe)
    # At one time and user, a session's whole is learned before its prefixes.
    assert learning.order(items[0]) < learning.order(prefixes[0])


def test_session_features_stop_at_the_first_purchase():
    first = {"event_id": "a", "event_type": "product_view", "timestamp": 0, "product_id": "p1"}
    session = new_session(first, {})
    add(session, first)
    add(session, {**first, "event_id": "b", "timestamp": 60_000})
    add(session, {**first, "event_id": "c", "event_type": "purchase", "timestamp": 120_000})
    add(session, {**first, "event_id": "d", "timestamp": 600_000, "product_id": "p2"})
    x = session_features(session)
    assert session["purchased"]
    assert (x["s_views"], x["s_repeat_views"], x["s_distinct_products"]) == (2.0, 1.0, 1.0)
    assert x["s_duration_min"] == 1.0  # nothing from the purchase on
    assert user_features({})["u_sessions"] == 0.0


def _timeline_inputs() -> list[dict]:
    # Real model inputs: generated events through the timeline with every model on.
    from models import personas, timeline

    params = timeline.TimelineParams(models=frozenset(timeline.MODELS))
    records, _ = personas.generate(events=2_000, users=40, seed=5)
    inputs = []
    for user in sorted({r["user_id"] for r in records}):
        state = timeline.new_user_state(user)
        items = [timeline.event_item(r) for r in records if r["user_id"] == user]
        inputs += timeline.advance(params, state, items, max(i[0] for i in items)).model_inputs
    return inputs


def test_packed_inputs_unpack_to_what_was_packed_and_feed_the_same():
    from models import timeline

    inputs = _timeline_inputs()
    inputs.append({**inputs[0], "x": {"odd": 1, "names": 2.5}, "id": "unknown-set"})
    assert {i["model"] for i in inputs} == set(timeline.MODELS)
    for item in inputs:
        again = learning.unpack(learning.pack(item))
        assert again == item
        assert list(again) == list(item) and list(again["x"]) == list(item["x"])
        assert [type(v) for v in again["x"].values()] == [type(v) for v in item["x"].values()]
    # Known feature sets travel as a tag and float bytes, not as names.
    packed = learning.pack(inputs[0])
    assert isinstance(packed[6], str) and isinstance(packed[7], bytes)
    assert len(pickle.dumps(packed)) < len(pickle.dumps(inputs[0])) / 2
    shuffled = inputs[:]
    random.Random(3).shuffle(shuffled)
    kinds = {"purchase_intent": "classifier", "churn_risk": "classifier", "clusters": "clusterer"}
    for name, kind in kinds.items():
        model_spec = learning.ModelSpec(name, kind)
        mine = [i for i in shuffled if i["model"] == name]
        plain, packed_model = learning.new_model(model_spec), learning.new_model(model_spec)
        expected = learning.feed(plain, mine)
        assert expected[0], "requests were scored"
        assert learning.feed_packed(packed_model, [learning.pack(i) for i in mine]) == expected
        assert packed_model.summary() == plain.summary()


def test_a_recommender_serves_each_user_once_per_feed_the_list_of_the_last_request():
    spec = learning.ModelSpec("recommendations", "recommender", recommender=(("k", 3),))
    items = []
    for at, (user, item) in enumerate([("a", "x"), ("a", "y"), ("b", "x"), ("a", "z")]):
        x = {"user": user, "item": item, "bought": False, "period": None}
        items.append(
            {
                "model": "recommendations",
                "kind": "example",
                "user_id": user,
                "at": at,
                "x": x,
                "y": None,
                "id": f"e{at}",
            }
        )
        items.append(
            {
                "model": "recommendations",
                "kind": "request",
                "user_id": user,
                "at": at,
                "x": {"user": user},
                "y": None,
                "id": f"{user}:{at}",
            }
        )
    fed, _ = learning.feed(learning.new_model(spec), items)
    scores = [s for s in fed if "user_id" in s]  # the rest: products' similar items
    assert [(s["user_id"], s["at"]) for s in scores] == [("b", 2), ("a", 3)]
    # The list is the one a feed serving every request gives last for that user.
    every = learning.new_model(spec)
    for item in sorted(items, key=learning.order):
        if item["kind"] == "example":
            every.learn(item["x"], None, item["at"])
        elif item["user_id"] == "a":
            last_a = every.predict({**item["x"], "at": item["at"]})
    assert scores[1]["score"] == last_a
    packed = learning.feed_packed(learning.new_model(spec), [learning.pack(i) for i in items])
    assert packed == (fed, [])
    # Classifiers score every request.
    intent = learning.ModelSpec("purchase_intent")
    requests = [{**i, "model": "purchase_intent", "x": {"s_views": 1.0}} for i in items[1::2]]
    assert len(learning.feed(learning.new_model(intent), requests)[0]) == 4


def _clicks(pairs: list) -> list[dict]:
    return [
        {
            "model": "recommendations",
            "kind": "example",
            "user_id": user,
            "at": at * 1000,
            "x": {"user": user, "item": item, "bought": False, "period": None},
            "y": None,
            "id": f"e{at}",
        }
        for at, (user, item) in enumerate(pairs)
    ]


def test_a_recommender_gives_each_product_s_similar_items_as_of_its_last_click():
    spec = learning.ModelSpec("recommendations", "recommender", recommender=(("k", 3),))
    pairs = [("a", "x"), ("a", "y"), ("b", "x"), ("b", "z"), ("c", "y"), ("b", "y"), ("c", "x")]
    items = _clicks(pairs)
    fed, _ = learning.feed(learning.new_model(spec), items)
    lists = {s["item_id"]: s for s in fed}
    assert len(fed) == len(lists) == 3  # one list per product and feed
    last = {item: at * 1000 for at, (_, item) in enumerate(pairs)}
    assert {item: s["at"] for item, s in lists.items()} == last
    # z's list is as of its click: b had clicked x then; y came later.
    assert [e["item"] for e in lists["z"]["score"]] == ["x"]
    # The list is the model's as of that click, not as of the end of the feed.
    model = learning.new_model(spec)
    for item in items[: pairs.index(("b", "z")) + 1]:
        model.learn(item["x"], None, item["at"])
    assert lists["z"]["score"] == model.similar("z", last["z"])
    # A stream cuts the clicks into several feeds: the newest list of each product is the same.
    model = learning.new_model(spec)
    newest = {}
    for part in (items[:3], items[3:5], items[5:]):
        for score in learning.feed(model, part)[0]:
            newest[score["item_id"]] = score
    assert newest == lists
    packed = [learning.pack(i) for i in items]
    assert learning.feed_packed(learning.new_model(spec), packed) == (fed, [])
    # The popularity lists know no item relations: no similar items.
    popular = (("algorithm", "popular"),)
    spec = learning.ModelSpec("recommendations", "recommender", recommender=popular)
    assert learning.feed(learning.new_model(spec), items) == ([], [])


def test_a_classifier_keeps_its_metrics_over_event_time_and_its_calibration():
    items = examples(3000, seed=4)
    for place, item in enumerate(items):
        item["at"] = place * 600_000  # one every 10 minutes: 500 hours
    model = learning.new_model(learning.ModelSpec("purchase_intent"))
    learning.feed(model, items)
    summary = model.summary()
    series = summary["series"]
    points = [dict(zip(series["fields"], point, strict=True)) for point in series["points"]]
    # More hours than points: the buckets doubled until at most 200 points were left.
    assert 100 < len(points) <= learning.SERIES_POINTS
    assert series["every_ms"] == 4 * learning.SERIES_FIRST_EVERY_MS
    assert [p["at"] for p in points] == sorted({p["at"] for p in points})
    assert len({p["at"] // series["every_ms"] for p in points}) == len(points)
    # A point is the metrics as of its example: a model fed up to it reports the same.
    point = points[len(points) // 2]
    upto = learning.new_model(learning.ModelSpec("purchase_intent"))
    learning.feed(upto, [item for item in items if item["at"] <= point["at"]])
    metrics = upto.summary()
    assert point["samples"] == metrics["samples"]
    assert (point["roc_auc"], point["log_loss"]) == (
        metrics["metrics"]["roc_auc"],
        metrics["metrics"]["log_loss"],
    )
    assert point["views_roc_auc"] == metrics["baselines"]["views"]["roc_auc"]
    assert point["majority_log_loss"] == metrics["baselines"]["majority"]["log_loss"]
    # Calibration: every example in one bin, the positives all counted.
    bins = summary["calibration"]
    assert sum(b["examples"] for b in bins) == summary["samples"] == 3000
    assert (
        round(sum(b["rate"] * b["examples"] for b in bins if b["examples"]))
        == (summary["positives"])
    )
    assert all(b["bin"][0] <= b["mean_p"] < b["bin"][1] for b in bins if b["examples"])
    # A model pickled before the series had none: it starts them when read back.
    state = pickle.loads(pickle.dumps(model))
    for name in ("series", "series_every", "_next_point", "calibration"):
        del state.__dict__[name]
    old = pickle.loads(pickle.dumps(state))
    assert old.series == [] and old.summary()["series"]["points"] == []
