"""Model outputs to Redis: users' scores, model summaries, drift events.

Written by hand (Beam has no Redis sink for Python).

``mt:NS:scores:USER`` (hash)
    per model: ``MODEL`` (the score: a probability, a cluster number, or for
    ``recommendations`` the user's list as JSON, ``[{"item", "score",
    "reason", "because"}]``),
    ``MODEL:version`` and ``MODEL:at`` (the event time it is as of). The
    score as of the latest time wins (``write_score.lua``), so a replay or a
    retried bundle changes nothing; a score as of the same time replaces the
    stored one (a learner's correction); a score of a user erased since is refused.
``mt:NS:similar:ITEM`` (hash)
    a product's similar items from ``recommendations``: field
    ``recommendations`` (``NAME:SHARD`` per copy when the model runs as
    ``models.shards`` copies) the list as JSON, ``[{"item", "score"}]``, best
    first, as of the product's last click (``:version``, ``:at``), stored as
    the scores are.
``mt:NS:model:NAME`` (hash)
    ``version`` (examples learned: only grows), ``model_version``, the
    progressive metrics (``roc_auc``, ``log_loss`` or ``silhouette``) and
    ``summary``: the model's JSON summary (weights or cluster centres, sizes,
    metrics, baselines). Never a pickle. A model run as ``models.shards``
    copies has one such hash per copy, ``mt:NS:model:NAME:SHARD``, and none
    under its bare name (``runners.evaluate_cmd`` combines them).
``mt:NS:topic:models`` (stream)
    ``model_drift`` events: ``model``, ``version``, ``at`` (and ``shard``).
"""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam

from models.learning import summary_name
from transforms import metrics
from transforms.redis_sink import (
    RETRY_FOR_S,
    BatchedRedisFn,
    _CasWriteFn,
    canonical_json,
    key,
    run_batch,
    tombstone_key,
)

SCORE_SCRIPT = (Path(__file__).parent / "write_score.lua").read_text()


class _ScoreFn(BatchedRedisFn):
    def __init__(
        self, url: str, namespace: str, ttl_seconds: int, retry_for_s: float = RETRY_FOR_S
    ):
        super().__init__(url, SCORE_SCRIPT, retry_for_s)
        self._namespace = namespace
        self._ttl = ttl_seconds
        self._written = metrics.counter("scores_written")

    def write(self, batch):
        newest: dict = {}
        for score in batch:  # the newest per user (or product) and model in this bundle
            user = score.get("user_id")
            slot = (user, score.get("item_id"), summary_name(score))
            if slot not in newest or newest[slot]["at"] <= score["at"]:
                newest[slot] = score
        calls = []
        for (user, item, field), score in newest.items():
            if user is None:  # a product's similar items
                keys = [key(self._namespace, "similar", str(item))]
            else:
                keys = [key(self._namespace, "scores", user), tombstone_key(self._namespace, user)]
                field = score["model"]
            value = score["score"]
            # A recommender's score is the user's list: stored as JSON.
            text = canonical_json(value) if isinstance(value, list) else repr(value)
            args = [field, text, score["version"], score["at"], self._ttl]
            calls.append((keys, args))
        results = run_batch(self._client, self._script, calls, self._url)
        self._written.inc(sum(1 for result in results if result == 1))


def model_write(namespace: str, summary: dict, ttl: dict[str, int]) -> tuple[list, list]:
    """KEYS and ARGV of the compare-and-set that stores one model summary."""
    metrics = summary.get("metrics") or {}
    pairs = ["model_version", summary["version"], "samples", summary["samples"]]
    for name, value in sorted(metrics.items()):
        if value is not None and name != "samples":
            pairs += [name, repr(value)]
    pairs += ["summary", canonical_json(summary)]
    name = key(namespace, "model", summary_name(summary))
    return [name, name], [summary["samples"], "", 0, len(pairs) // 2, *pairs]


class _DriftFn(beam.DoFn):
    def __init__(self, url: str, namespace: str, retry_for_s: float = RETRY_FOR_S):
        self._url = url
        self._retry_for_s = retry_for_s
        self._namespace = namespace
        self._client = None

    def setup(self):
        from transforms.redis_sink import connect

        self._client = connect(self._url, self._retry_for_s)

    def process(self, event):
        guard = key(self._namespace, "model-drift", f"{summary_name(event)}:{event['version']}")
        if self._client.set(guard, event["at"], nx=True):
            fields = {"model": event["model"], "version": event["version"], "at": event["at"]}
            if event.get("shard") is not None:
                fields["shard"] = event["shard"]
            self._client.xadd(key(self._namespace, "topic", "models"), fields)

    def teardown(self):
        if self._client is not None:
            self._client.close()


class WriteModelOutputs(beam.PTransform):
    """(scores, summaries, drifts) -> the keys above."""

    def __init__(
        self,
        url: str,
        namespace: str,
        ttl_seconds: dict[str, int],
        retry_for_s: float = RETRY_FOR_S,
    ):
        super().__init__()
        self._retry_for_s = retry_for_s
        self._url = url
        self._namespace = namespace
        self._ttl = dict(ttl_seconds)

    def expand(self, outputs):
        scores, summaries, drifts = outputs
        _ = scores | "WriteScores" >> beam.ParDo(
            _ScoreFn(self._url, self._namespace, self._ttl.get("profile", 0), self._retry_for_s)
        )
        _ = summaries | "WriteSummaries" >> beam.ParDo(
            _CasWriteFn(
                self._url, self._namespace, self._ttl, model_write, retry_for_s=self._retry_for_s
            )
        )
        return drifts | "PublishDrifts" >> beam.ParDo(
            _DriftFn(self._url, self._namespace, self._retry_for_s)
        )
