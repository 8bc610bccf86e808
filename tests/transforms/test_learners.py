"""LearnOnline on a stream with a late input: corrected in order, or dropped and counted."""

from __future__ import annotations

import random

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream as EventStream
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from models import learning
from tests.transforms.test_timeline import COLLECTED, _Collect
from transforms.learners import SUMMARIES, LearnOnline

MIN = 60_000
SPEC = learning.ModelSpec("purchase_intent")


def _inputs() -> list[dict]:
    """Examples and score requests of 20 users over 3 hours, one every minute."""
    rng = random.Random(7)
    items = []
    for minute in range(180):
        user = f"u{minute % 20}"
        views = rng.randint(0, 12)
        x = {"views": float(views), "carts": float(rng.randint(0, 2))}
        at = minute * MIN
        if minute % 3:
            y = views + rng.random() * 4 > 9
            items.append(_input("example", user, at, x, y))
        else:
            items.append(_input("request", user, at, x))
    return items


def _input(kind, user, at, x, y=None) -> dict:
    return {"model": SPEC.name, "kind": kind, "user_id": user, "at": at, "x": x, "y": y,
            "id": f"{user}:{at}"}  # fmt: skip


def _timed(item: dict) -> TimestampedValue:
    return TimestampedValue(item, Timestamp(micros=item["at"] * 1000))


def _stream(items: list[dict], late: dict) -> EventStream:
    """Every item in time order, an hour at a time, and ``late`` after its hour has passed."""
    stream = EventStream().advance_watermark_to(Timestamp(micros=-1000))
    for hour in range(3):
        batch = [i for i in items if hour * 60 * MIN <= i["at"] < (hour + 1) * 60 * MIN]
        stream = stream.add_elements([_timed(i) for i in batch])
        stream = stream.advance_watermark_to(Timestamp(micros=((hour + 1) * 60 * MIN - 1) * 1000))
        if hour == 1:
            stream = stream.add_elements([_timed(late)])
    return stream.advance_watermark_to_infinity()


def _run(items, late, horizon_ms):
    COLLECTED.clear()
    options = PipelineOptions([])
    options.view_as(StandardOptions).streaming = True
    with beam.Pipeline(runner="BundleBasedDirectRunner", options=options) as pipeline:
        learned = (
            pipeline
            | _stream(items, late)
            | LearnOnline({SPEC.name: SPEC}, 0, streaming=True, correction_horizon_ms=horizon_ms)
        )
        _ = learned.scores | "Scores" >> beam.ParDo(_Collect("scores"))
        _ = learned[SUMMARIES] | "Summaries" >> beam.ParDo(_Collect("summaries"))
    return {"scores": COLLECTED.get("scores", []), "summaries": COLLECTED.get("summaries", [])}


def _plain(items):
    model = learning.new_model(SPEC)
    scores, _ = learning.feed(model, items)
    return scores, model.summary()


def test_a_late_example_is_learned_in_order_by_going_back_to_a_checkpoint():
    items = _inputs()
    # An example of minute 30 that comes once the watermark has passed the second hour.
    late = _input("example", "u99", 30 * MIN + 1, {"views": 11.0, "carts": 2.0}, True)
    scores, summary = _plain([*items, late])

    found = _run(items, late, horizon_ms=None)

    final = max(found["summaries"], key=lambda s: s["samples"])
    assert final == summary
    # Every score plain Python gives was issued (the corrected ones among them), and the
    # last issued score of each request is the right one.
    last = {}
    for score in found["scores"]:
        last[(score["user_id"], score["at"])] = score
    assert {(s["user_id"], s["at"]): s for s in scores} == last


def test_without_a_horizon_a_late_example_is_dropped():
    items = _inputs()
    late = _input("example", "u99", 30 * MIN + 1, {"views": 11.0, "carts": 2.0}, True)
    _, summary = _plain(items)

    found = _run(items, late, horizon_ms=0)

    final = max(found["summaries"], key=lambda s: s["samples"])
    assert final["samples"] == summary["samples"] == 120
    assert final == summary


def _run_sharded(items, spec, streaming):
    COLLECTED.clear()
    options = PipelineOptions([])
    options.view_as(StandardOptions).streaming = streaming
    runner = "BundleBasedDirectRunner" if streaming else "FnApiRunner"
    with beam.Pipeline(runner=runner, options=options) as pipeline:
        if streaming:
            source = pipeline | _stream(items, items[0])
        else:
            source = pipeline | beam.Create(items) | beam.Map(_timed)
        learned = source | LearnOnline({spec.name: spec}, 0, streaming=streaming)
        _ = learned.scores | "Scores" >> beam.ParDo(_Collect("scores"))
        _ = learned[SUMMARIES] | "Summaries" >> beam.ParDo(_Collect("summaries"))
    return COLLECTED.get("scores", []), COLLECTED.get("summaries", [])


def test_sharded_learners_each_learn_and_score_only_their_users_in_order():
    spec = learning.ModelSpec("purchase_intent", shards=3)
    items = _inputs()
    by_shard: dict[int, list] = {}
    for item in items:
        by_shard.setdefault(learning.shard_of(item["user_id"], 3), []).append(item)
    assert len(by_shard) == 3 and all(len(group) > 20 for group in by_shard.values())
    want_scores, want_summaries = {}, {}
    for shard, group in by_shard.items():
        model = learning.new_model(spec, shard)
        scores, _ = learning.feed(model, group)
        want_scores.update({(s["user_id"], s["at"]): s for s in scores})
        want_summaries[shard] = model.summary()
    # One model over every user learns from all of them: the shards differ from it.
    whole = learning.new_model(learning.ModelSpec("purchase_intent"))
    learning.feed(whole, items)
    assert whole.summary()["weights"] != want_summaries[0]["weights"]

    # The first item comes again at the end of the stream: late, dropped and counted.
    for streaming in (True, False):
        scores, summaries = _run_sharded(items, spec, streaming)
        assert {(s["user_id"], s["at"]): s for s in scores} == want_scores
        final = {}
        for summary in summaries:
            shard = summary["shard"]
            if shard not in final or summary["samples"] >= final[shard]["samples"]:
                final[shard] = summary
        assert final == want_summaries, streaming
        assert {s["shards"] for s in final.values()} == {3}


def _clicks() -> list[dict]:
    """Clicks of 30 users on 12 products over 3 hours, each followed by a list request,
    and one user's erasure in the second hour."""
    rng = random.Random(11)
    items = []
    for minute in range(180):
        user = f"u{rng.randrange(30)}"
        at = minute * MIN
        x = {"user": user, "item": f"p{rng.randrange(12)}", "bought": False, "period": None}
        for kind, value in (("example", x), ("request", {"user": user})):
            items.append({"model": "recommendations", "kind": kind, "user_id": user, "at": at,
                          "x": value, "y": None, "id": f"{user}:{at}"})  # fmt: skip
    items.append({"model": "recommendations", "kind": "forget", "user_id": "u3",
                  "at": 90 * MIN, "x": {"user": "u3"}, "y": None, "id": "u3:forget"})  # fmt: skip
    return items


def test_replicated_recommender_copies_serve_the_lists_of_one_model():
    params = (("evaluate_share", 1.0), ("k", 5))
    one = learning.ModelSpec("recommendations", "recommender", recommender=params)
    two = learning.ModelSpec(
        "recommendations", "recommender", shards=2, recommender=params, replicated=True
    )
    apart = learning.ModelSpec("recommendations", "recommender", shards=2, recommender=params)
    items = _clicks()
    for streaming in (False, True):
        want, want_summaries = _run_sharded(items, one, streaming)
        got, summaries = _run_sharded(items, two, streaming)
        # Every product's similar items, and each user's latest list of a feed.
        assert len({score["item_id"] for score in want if "item_id" in score}) == 12
        assert len({score["user_id"] for score in want if "user_id" in score}) == 30
        # The same lists and similar items, each given once (by the copy that owns it).
        assert sorted(map(repr, got)) == sorted(map(repr, want)), streaming
        final = {}
        for summary in summaries:
            if summary["samples"] >= final.get(summary["shard"], {"samples": -1})["samples"]:
                final[summary["shard"]] = summary
        whole = max(want_summaries, key=lambda s: s["samples"])
        assert [s["samples"] for s in final.values()] == [whole["samples"]] * 2
        assert all(s["replicated"] for s in final.values())
        # Each copy scored its own users' clicks: together, every click scored once.
        predictions = sum(s["metrics"]["predictions"] for s in final.values())
        assert predictions == whole["metrics"]["predictions"]
        # Copies that learn only their own users' clicks serve other lists.
        apart_scores, _ = _run_sharded(items, apart, streaming)
        assert sorted(map(repr, apart_scores)) != sorted(map(repr, want))
