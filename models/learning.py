"""Online models with river, validated progressively, as plain Python.

Each model is fed one stream of items in a fixed order (``order``: event
time, then user, examples before scoring requests at the same time), so the
same events give the same model and the same scores wherever they run:

* an **example** ``(x, y)`` is first predicted (progressive validation: the
  prediction is made before the label is learned), the prediction goes into
  the running metrics, then the model learns it;
* a **request** ``x`` is only predicted: its score is the user's current score.

``OnlineClassifier`` is a river pipeline (``StandardScaler`` then
``LogisticRegression``: scaling inside the pipeline, so it learns online
too). Its metrics are an exact online ROC AUC (``OnlineAUC``) and river's
``LogLoss``, next to two baselines measured on the same examples the same
way: ``majority`` (one answer for all, so its ROC AUC is 0.5; its probability
the running share of positives) and ``views`` (ranked by the session's
product views so far; its probability the running rate at that count). ``ADWIN`` watches the model's
log loss; when it detects a rise the model starts again as a new version
(``drift`` events say when), and the metrics of the new version start from
nothing while the run's metrics go on.

``OnlineClusterer`` is river's ``KMeans`` after a ``StandardScaler``, with
river's ``Silhouette`` as its running metric (river's online silhouette is a
ratio of distances to the assigned and another centre: lower is better).
KMeans was chosen over DBSTREAM, CluStream and STREAMKMeans by
``bench/clustering.py``: it was the most stable under a change of order on
both data sets measured, with the best silhouette on Diginetica.

The models are the library's; what is here is the ordering, the bookkeeping
and a JSON summary for consumers (never a pickle).
"""

from __future__ import annotations

import math
import pickle
import zlib
from array import array
from dataclasses import dataclass
from operator import itemgetter

from river import cluster, compose, drift, linear_model, metrics, optim, preprocessing

from models import recommend
from models.features import FEATURE_NAMES, views_so_far

EXAMPLE = "example"
# An example learned like one, but neither scored in the running metrics nor watched for
# drift: a session as of its k-th event (``models.timeline``), while its whole is the
# session's ``EXAMPLE``, so the metrics and the drift detector see one item per session.
PREFIX = "prefix"
REQUEST = "request"
LEARNED = frozenset({EXAMPLE, PREFIX})
FORGET = "forget"  # drop what a model holds of a user (only recommenders hold users)
# A score asked for the report only (``models.timeline`` intent probes): given with
# ``probe`` set, never stored.
PROBE = "probe"
_KIND_ORDER = {EXAMPLE: 0, PREFIX: 1, REQUEST: 2, FORGET: 3, PROBE: 4}


def order(item: dict) -> tuple:
    """The order in which a model sees its items: time, user, examples first, then id."""
    return item["at"], item["user_id"], _KIND_ORDER[item["kind"]], item.get("id", "")


@dataclass(frozen=True)
class ModelSpec:
    """What a model is: its name, kind (``classifier`` or ``clusterer``), settings.

    ``shards``: how many independent copies of the model run, each learning
    from and scoring the users whose pseudonym hashes to it (``shard_of``).
    One copy sees every example in one order on one key, so one worker does
    all of a model's work; with N copies the work spreads over N keys, and
    each copy learns from about 1/N of the examples.

    ``replicated`` (a recommender's, with ``shards`` above 1): every copy
    learns every example, in the same order, so each holds the same model as
    one copy would; each serves, and scores the clicks of, only its own
    users, and gives the similar items of only the products that hash to it
    (``owns``). The lists are those of one copy; the serving, the costly
    part, spreads over the copies; memory and learning are paid N times.
    """

    name: str
    kind: str = "classifier"
    learning_rate: float = 0.05
    # The classifiers' optimizer: ``adagrad`` (each weight's step shrinks with the
    # gradients it has seen) or ``sgd`` (a constant step).
    optimizer: str = "adagrad"
    l2: float = 0.0001
    clusters: int = 4
    drift_delta: float = 0.002
    shards: int = 1
    # A recommender's settings (kind ``recommender``): ``models.recommend.SessionRecommender``'s
    # keyword arguments as sorted (name, value) pairs.
    recommender: tuple = ()
    replicated: bool = False


def shard_of(user_id: str, shards: int) -> int:
    """The shard of a user's model inputs: a stable hash of the pseudonym, modulo ``shards``.

    >>> shard_of("u1", 1), shard_of("u1", 4) == shard_of("u1", 4)
    (0, True)
    """
    return zlib.crc32(user_id.encode()) % shards if shards > 1 else 0


def learner_key(model: str, user_id: str, shards: int) -> str:
    """The key a model input is learned under: the model's name, or ``NAME:SHARD``.

    >>> learner_key("churn_risk", "u1", 1)
    'churn_risk'
    >>> learner_key("churn_risk", "u1", 4) in {f"churn_risk:{k}" for k in range(4)}
    True
    """
    return f"{model}:{shard_of(user_id, shards)}" if shards > 1 else model


def learner_keys(spec: ModelSpec, kind: str, user_id: str) -> list[str]:
    """The keys a model input goes to: its user's copy; every copy for a replicated
    model's examples and erasures.

    >>> spec = ModelSpec("recommendations", "recommender", shards=2, replicated=True)
    >>> learner_keys(spec, "example", "u1"), learner_keys(spec, "forget", "u1")
    (['recommendations:0', 'recommendations:1'], ['recommendations:0', 'recommendations:1'])
    >>> learner_keys(spec, "request", "u1") == [learner_key("recommendations", "u1", 2)]
    True
    """
    if spec.replicated and spec.shards > 1 and kind != REQUEST:
        return [f"{spec.name}:{shard}" for shard in range(spec.shards)]
    return [learner_key(spec.name, user_id, spec.shards)]


def owns(model, key) -> bool:
    """Whether a copy of a model owns a user's or a product's work (all of it, unsharded).

    >>> one = OnlineRecommender(ModelSpec("r", "recommender", shards=2, replicated=True), 0)
    >>> two = OnlineRecommender(ModelSpec("r", "recommender", shards=2, replicated=True), 1)
    >>> [owns(one, "u1"), owns(two, "u1")].count(True)
    1
    """
    shard = getattr(model, "shard", None)
    return shard is None or shard_of(str(key), model.spec.shards) == shard


def split_key(key: str) -> tuple[str, int | None]:
    """``learner_key``'s key -> (model name, shard or None).

    >>> split_key("clusters"), split_key("clusters:3")
    (('clusters', None), ('clusters', 3))
    """
    name, _, shard = key.partition(":")
    return name, int(shard) if shard else None


def _clip(p: float) -> float:
    return min(max(p, 1e-6), 1 - 1e-6)


def log_loss(y: bool, p: float) -> float:
    """The log loss of one prediction."""
    p = _clip(p)
    return -math.log(p if y else 1 - p)


class OnlineAUC:
    """The exact ROC AUC of a stream of (label, score) with scores in [0, 1].

    river's ``ROCAUC`` approximates the curve with a few thresholds (10 by
    default), far too coarse for probabilities that stay small. This counts,
    for each new pair, the earlier pairs of the other label it is ordered
    against (ties count half), with two Fenwick trees over ``BINS`` score bins:
    exact for scores that differ by more than 1 / BINS, in O(log BINS) per update
    and fixed memory.

    >>> auc = OnlineAUC()
    >>> for y, p in [(True, 0.9), (False, 0.1), (True, 0.4), (False, 0.6)]:
    ...     auc.update(y, p)
    >>> auc.get()
    0.75
    """

    BINS = 10_001

    def __init__(self):
        self.trees = {True: [0] * (self.BINS + 1), False: [0] * (self.BINS + 1)}
        self.counts = {True: 0, False: 0}
        self.concordant = 0.0

    def _below(self, tree: list, index: int) -> int:  # pairs with a bin < index
        total = 0
        while index > 0:
            total += tree[index]
            index -= index & -index
        return total

    def update(self, y: bool, score: float) -> None:
        index = int(round(min(max(score, 0.0), 1.0) * (self.BINS - 1))) + 1
        other = self.trees[not y]
        below, upto = self._below(other, index - 1), self._below(other, index)
        ties = upto - below
        # A positive is right over every earlier negative below it; a negative, under
        # every earlier positive above it.
        wins = below if y else self.counts[True] - upto
        self.concordant += wins + 0.5 * ties
        self.counts[y] += 1
        tree = self.trees[y]
        while index <= self.BINS:
            tree[index] += 1
            index += index & -index

    def get(self) -> float:
        pairs = self.counts[True] * self.counts[False]
        return self.concordant / pairs if pairs else 0.5


class _Metrics:
    """ROC AUC and log loss of one scorer, progressive."""

    def __init__(self):
        self.auc = OnlineAUC()
        self.loss = metrics.LogLoss()
        self.n = 0

    def update(self, y: bool, p: float, rank: float | None = None) -> None:
        """Score one prediction ``p``; ``rank`` (in [0, 1], default ``p``) orders ROC AUC."""
        self.auc.update(y, p if rank is None else rank)
        self.loss.update(y, {True: _clip(p), False: 1 - _clip(p)})
        self.n += 1

    def report(self) -> dict:
        return {
            "roc_auc": round(float(self.auc.get()), 6) if self.n else None,
            "log_loss": round(float(self.loss.get()), 6) if self.n else None,
            "samples": self.n,
        }


SERIES_POINTS = 200  # at most this many points of a classifier's metrics over time
SERIES_FIRST_EVERY_MS = 3_600_000
SERIES_FIELDS = (
    "at",
    "samples",
    "roc_auc",
    "log_loss",
    "version_roc_auc",
    "majority_log_loss",
    "views_roc_auc",
    "views_log_loss",
    "version",
)
CALIBRATION_BINS = 10


class OnlineClassifier:
    """A probability of a binary outcome, learned online, with progressive metrics.

    Over event time it keeps ``series``: a point (``SERIES_FIELDS``) at the first
    example in each bucket of ``series_every`` ms (an hour at first; past
    ``SERIES_POINTS`` points the bucket doubles and the last point of each new
    bucket stays), and ``calibration``: per tenth of the predicted probability,
    the examples, the sum of the predictions and the positives. Both depend only
    on the examples in their order, so batch and streaming keep the same.
    """

    def __init__(self, spec: ModelSpec, shard: int | None = None):
        self.spec = spec
        self.shard = shard
        self.version = 1
        self.model = self._new_model()
        self.metrics = _Metrics()
        self.version_metrics = _Metrics()
        self.baselines = {"majority": _Metrics(), "views": _Metrics()}
        self._positives = 0
        self._by_views: dict = {}  # views so far -> (examples, positives)
        self.detector = drift.ADWIN(delta=spec.drift_delta)
        self.drifts: list[int] = []
        self._series_state()

    def _series_state(self) -> None:
        self.series: list[list] = []
        self.series_every = SERIES_FIRST_EVERY_MS
        self._next_point = None
        self.calibration = [[0, 0.0, 0] for _ in range(CALIBRATION_BINS)]

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if "series" not in state:  # a model pickled before the series: they start now
            self._series_state()

    def _new_model(self):
        if self.spec.optimizer == "sgd":
            optimizer = optim.SGD(self.spec.learning_rate)
        else:
            optimizer = optim.AdaGrad(self.spec.learning_rate)
        return compose.Pipeline(
            preprocessing.StandardScaler(),
            linear_model.LogisticRegression(optimizer=optimizer, l2=self.spec.l2),
        )

    def predict(self, x: dict) -> float:
        """P(outcome) for ``x``; 0.5 before any learning; never changes the model."""
        return float(self.model.predict_proba_one(dict(x)).get(True, 0.5))

    def learn_only(self, x: dict, y: bool) -> None:
        """Learn ``(x, y)`` unscored (a ``PREFIX``): no metrics, no drift watch."""
        self.model.learn_one(dict(x), bool(y))

    def learn(self, x: dict, y: bool, at: int) -> dict:
        """Predict ``x``, score the prediction, then learn ``(x, y)``; what was predicted."""
        y = bool(y)
        p = self.predict(x)
        self.metrics.update(y, p)
        self.version_metrics.update(y, p)
        n = self.metrics.n - 1  # examples seen before this one
        # The majority class: one answer for everyone (ROC AUC 0.5), its probability the
        # running base rate (smoothed) for the log loss.
        majority = (self._positives + 1) / (n + 2)
        self.baselines["majority"].update(y, majority, rank=0.5)
        # The views baseline ranks by the raw count (views / (views + 1) keeps the order and
        # fits [0, 1]); its probability for the log loss is the running rate at that count
        # seen so far, smoothed.
        views = views_so_far(x)
        seen, bought = self._by_views.get(views, (0, 0))
        self.baselines["views"].update(y, (bought + 1) / (seen + 2), rank=views / (views + 1))
        self._by_views[views] = (seen + 1, bought + y)
        self._positives += y
        calibration = self.calibration[min(int(p * CALIBRATION_BINS), CALIBRATION_BINS - 1)]
        calibration[0] += 1
        calibration[1] += p
        calibration[2] += y
        if self._next_point is None or at >= self._next_point:
            self._point(at)
        self.model.learn_one(dict(x), y)
        before = self.detector.estimation
        self.detector.update(log_loss(y, p))
        # A change in the loss is drift only if the loss went up: a model that learns
        # lowers its loss, and that must not start it again.
        drifted = self.detector.drift_detected and self.detector.estimation > before
        if drifted:
            self.version += 1
            self.model = self._new_model()
            self.version_metrics = _Metrics()
            self.drifts = [*self.drifts[-19:], at]  # the last 20
        return {"p": p, "drift": drifted}

    def _point(self, at: int) -> None:
        """A point of the series: the metrics as of this example."""
        every = self.series_every
        metrics, baselines = self.metrics, self.baselines
        self.series.append(
            [
                at,
                metrics.n,
                round(metrics.auc.get(), 6),
                round(float(metrics.loss.get()), 6),
                round(self.version_metrics.auc.get(), 6),
                round(float(baselines["majority"].loss.get()), 6),
                round(baselines["views"].auc.get(), 6),
                round(float(baselines["views"].loss.get()), 6),
                self.version,
            ]
        )
        if len(self.series) > SERIES_POINTS:
            every = self.series_every = every * 2
            last = {}
            for point in self.series:
                last[point[0] // every] = point
            self.series = list(last.values())
        self._next_point = (at // every + 1) * every

    def summary(self) -> dict:
        """What consumers read (JSON): version, samples, metrics, baselines, weights,
        the series of the metrics over event time and the calibration."""
        weights = {}
        lr = self.model["LogisticRegression"]
        for name, weight in sorted(lr.weights.items()):
            weights[name] = round(float(weight), 6)
        return {
            "model": self.spec.name,
            **_shard_fields(self),
            "kind": "classifier",
            "version": self.version,
            "samples": self.metrics.n,
            "positives": self._positives,
            "metrics": self.metrics.report(),
            "version_metrics": self.version_metrics.report(),
            "baselines": {name: m.report() for name, m in self.baselines.items()},
            "drifts": list(self.drifts),
            "weights": weights,
            "intercept": round(float(lr.intercept), 6),
            "series": {
                "every_ms": self.series_every,
                "fields": list(SERIES_FIELDS),
                "points": [list(point) for point in self.series],
            },
            "calibration": [
                {
                    "bin": [place / CALIBRATION_BINS, (place + 1) / CALIBRATION_BINS],
                    "examples": n,
                    "mean_p": round(total / n, 6) if n else None,
                    "rate": round(positives / n, 6) if n else None,
                }
                for place, (n, total, positives) in enumerate(self.calibration)
            ],
        }


class OnlineClusterer:
    """Users' feature vectors grouped online (river's KMeans after a scaler)."""

    def __init__(self, spec: ModelSpec, shard: int | None = None):
        self.spec = spec
        self.shard = shard
        self.version = 1
        self.scaler = preprocessing.StandardScaler()
        self.model = cluster.KMeans(n_clusters=spec.clusters, halflife=0.5, sigma=1.0, seed=7)
        self.silhouette = metrics.Silhouette()
        self.sizes: dict[int, int] = {}
        self.n = 0

    def predict(self, x: dict) -> float:
        """The cluster of ``x`` (as a number, like a classifier's score).

        The nearest centre is found here, reading the centres without touching
        them: river's ``predict_one`` draws a random start for a feature a centre
        has not seen, which would make a score depend on how many were asked.
        """
        scaled = self._scale(x)
        centres = self.model.centers
        if not centres:
            return 0.0

        def distance(k):
            centre = centres[k]
            names = sorted(set(centre) | set(scaled))
            return sum((scaled.get(n, 0.0) - centre.get(n, 0.0)) ** 2 for n in names)

        return float(min(sorted(centres), key=distance))

    def _scale(self, x: dict) -> dict:
        means, variances = self.scaler.means, self.scaler.vars
        out = {}
        for name, value in x.items():
            var = variances.get(name, 0.0)
            out[name] = (value - means.get(name, 0.0)) / var**0.5 if var > 0 else 0.0
        return out

    def learn(self, x: dict, y, at: int) -> dict:
        """Assign ``x`` (scored by the silhouette before learning), then learn it."""
        self.scaler.learn_one(dict(x))
        scaled = self.scaler.transform_one(dict(x))
        # A centre draws a random start for a feature it has not seen; draw them here, in
        # a fixed order, not in the order of a set of names (which changes from process
        # to process with Python's string hashing).
        for centre in (self.model.centers[k] for k in sorted(self.model.centers)):
            for name in sorted(scaled):
                centre[name]  # noqa: B018 (the defaultdict draws on access)
        k = self.model.predict_one(scaled)
        if self.n:
            self.silhouette.update(scaled, k, self.model.centers)
        self.model.learn_one(scaled)
        self.sizes[k] = self.sizes.get(k, 0) + 1
        self.n += 1
        return {"p": float(k), "drift": False}

    def summary(self) -> dict:
        centres = {
            str(k): {name: round(float(v), 6) for name, v in sorted(centre.items())}
            for k, centre in sorted(self.model.centers.items())
        }
        return {
            "model": self.spec.name,
            **_shard_fields(self),
            "kind": "clusterer",
            "version": self.version,
            "samples": self.n,
            "metrics": {
                "silhouette": round(float(self.silhouette.get()), 6) if self.n > 1 else None
            },
            "sizes": {str(k): n for k, n in sorted(self.sizes.items())},
            "centres": centres,
        }


class OnlineRecommender:
    """Recommendations per user (``models.recommend.SessionRecommender``) as a learner.

    Its examples are clicks (``x``: ``user``, ``item``, ``bought``, ``period``),
    its requests ask for a user's list (``x``: ``user``), which is the score
    it gives: a list of ``{item, score, reason, because}``. A ``forget`` input
    drops what it holds of a user (an erasure). After a product's last click
    in a feed it gives the product's similar items (``similar``).
    """

    def __init__(self, spec: ModelSpec, shard: int | None = None):
        self.spec = spec
        self.shard = shard
        self.version = 1
        self.model = recommend.SessionRecommender(**dict(spec.recommender))

    def learn(self, x: dict, y, at: int) -> dict:
        # A replicated copy learns every click but scores only its own users' (``owns``).
        self.model.learn(x, at, score=not self.spec.replicated or owns(self, x["user"]))
        return {"p": None, "drift": False}

    def predict(self, x: dict) -> list:
        return self.model.serve(x, x["at"])

    def similar(self, item, at: int) -> list | None:
        if self.spec.replicated and not owns(self, item):
            return None  # another copy, holding the same model, gives them
        return self.model.similar(item, at)

    def forget(self, x: dict) -> None:
        self.model.forget(x)

    def summary(self) -> dict:
        inner = self.model.summary()
        return {
            "model": self.spec.name,
            **_shard_fields(self),
            "kind": "recommender",
            **({"replicated": True} if self.spec.replicated and self.spec.shards > 1 else {}),
            "version": self.version,
            "samples": inner.pop("clicks"),
            **inner,
        }


def new_model(spec: ModelSpec, shard: int | None = None):
    """A fresh model of the spec's kind (``shard``: which copy, when it has several)."""
    kind = {"classifier": OnlineClassifier, "recommender": OnlineRecommender}.get(
        spec.kind, OnlineClusterer
    )
    return kind(spec, shard)


def _shard_fields(model) -> dict:
    shard = getattr(model, "shard", None)  # a model pickled before shards has none
    return {} if shard is None else {"shard": shard, "shards": model.spec.shards}


def combine(summaries: list[dict]) -> dict:
    """The summaries of a model's shards as one: what ``evaluate`` reports for a sharded model.

    Samples add up. Each metric is the shards' mean weighted by their
    samples: exact for the log loss (a mean over examples), an approximation
    for ROC AUC (pairs across shards are not compared) and the silhouette.
    ``version`` is the highest of the shards'.

    >>> a = {"model": "m", "version": 1, "samples": 1, "metrics": {"log_loss": 0.2}}
    >>> b = {"model": "m", "version": 2, "samples": 3, "metrics": {"log_loss": 0.6}}
    >>> combined = combine([a, b])
    >>> combined["samples"], combined["version"], combined["metrics"], combined["shards"]
    (4, 2, {'log_loss': 0.5}, 2)
    """
    if len(summaries) == 1:
        return summaries[0]

    def mean(reports: list[tuple[dict, int]]) -> dict:
        out = {}
        for name in sorted({name for report, _ in reports for name in report}):
            pairs = [(r[name], n) for r, n in reports if r.get(name) is not None and n]
            if name in ("samples", "predictions"):
                out[name] = sum(r.get(name) or 0 for r, _ in reports)
            elif pairs:
                out[name] = round(sum(v * n for v, n in pairs) / sum(n for _, n in pairs), 6)
            else:
                out[name] = None
        return out

    def weight(report: dict, default: int) -> int:
        # A recommender's metrics are over its predictions, not its clicks.
        return report.get("predictions", report.get("samples", default)) or 0

    weighted = [
        (s.get("metrics") or {}, weight(s.get("metrics") or {}, s["samples"])) for s in summaries
    ]
    baselines = {}
    for name in sorted({b for s in summaries for b in s.get("baselines") or {}}):
        reports = [s["baselines"][name] for s in summaries if name in (s.get("baselines") or {})]
        baselines[name] = mean([(r, weight(r, 0)) for r in reports])
    out = {
        "model": summaries[0]["model"],
        "shards": len(summaries),
        "version": max(s["version"] for s in summaries),
        "samples": sum(s["samples"] for s in summaries),
        "metrics": mean(weighted),
    }
    if baselines:
        out["baselines"] = baselines
    return out


def summary_name(summary: dict) -> str:
    """What a summary is stored and reported under: the model's name, or ``NAME:SHARD``."""
    shard = summary.get("shard")
    return summary["model"] if shard is None else f"{summary['model']}:{shard}"


def restart(checkpoints: list[tuple[int, bytes]], log: list[dict], since: int):
    """Where a correction starts: the latest checkpoint before ``since`` and what came after.

    ``checkpoints`` are ``(cutoff, pickle)`` pairs, each the model once every
    item at or before ``cutoff`` was fed; ``log`` the items fed since the
    oldest. Returns ``(model, checkpoints kept, log kept, items to feed again)``,
    or ``None`` when no checkpoint is that old.

    >>> model = new_model(ModelSpec("m"))
    >>> log = [{"at": 5}, {"at": 12}, {"at": 20}]
    >>> _, kept, older, again = restart([(0, snapshot(model)), (10, snapshot(model))], log, 15)
    >>> [c for c, _ in kept], older, again
    ([0, 10], [{'at': 5}], [{'at': 12}, {'at': 20}])
    >>> restart([(10, snapshot(model))], log, 10) is None
    True
    """
    earlier = [point for point in checkpoints if point[0] < since]
    if not earlier:
        return None
    cutoff, pickled = max(earlier, key=lambda point: point[0])
    kept = sorted((point for point in checkpoints if point[0] <= cutoff), key=lambda p: p[0])
    older = [item for item in log if item["at"] <= cutoff]
    again = [item for item in log if item["at"] > cutoff]
    return pickle.loads(pickled), kept, older, again


def trim(checkpoints: list[tuple[int, bytes]], log: list[dict], horizon_from: int | None):
    """What a correction back to ``horizon_from`` (``None``: any time) can still need.

    The newest checkpoint at or before ``horizon_from`` and all later ones;
    of the log, the items after that checkpoint, with only each user's latest
    request (an older request's score is superseded by the later one's).

    >>> log = [{"at": 1, "kind": "request", "user_id": "a"}, {"at": 3, "kind": "example",
    ...     "user_id": "a"}, {"at": 4, "kind": "request", "user_id": "a"}]
    >>> trim([(0, b""), (2, b"")], log, None)
    ([(0, b''), (2, b'')], [{'at': 3, 'kind': 'example', 'user_id': 'a'}, \
{'at': 4, 'kind': 'request', 'user_id': 'a'}])
    >>> trim([(0, b""), (2, b""), (5, b"")], log, 4)[0]
    [(2, b''), (5, b'')]
    """
    points = sorted(checkpoints, key=lambda point: point[0])
    if horizon_from is not None:
        base = [point for point in points if point[0] <= horizon_from]
        if base:
            points = [point for point in points if point[0] >= base[-1][0]]
    floor = points[0][0] if points else None
    latest: dict = {}
    for item in log:
        user = item.get("user_id")
        if item["kind"] != REQUEST or (floor is not None and item["at"] <= floor):
            continue
        if user not in latest or order(item) > order(latest[user]):
            latest[user] = item
    kept = [
        item
        for item in log
        if (floor is None or item["at"] > floor)
        and (item["kind"] != REQUEST or latest.get(item["user_id"]) is item)
    ]
    return points, kept


def snapshot(model) -> bytes:
    """The model as bytes for a checkpoint in the learner's state (river models pickle)."""
    return pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)


_TAGS = {names: tag for tag, names in FEATURE_NAMES.items()}


def pack(item: dict) -> tuple:
    """A model input as a compact tuple, for shipping and holding many (``unpack`` reverses it).

    It starts with the item's ``order``. The feature names travel as a short
    tag when they are a known set (``models.features.FEATURE_NAMES``) and the
    values, when all are floats, as the bytes of a float array: a third of
    the size of the dict, and no feature name decoded per item.

    >>> item = {"model": "m", "kind": "example", "user_id": "u", "at": 5,
    ...         "x": {"a": 1.5, "b": 2}, "y": True, "id": "u:5"}
    >>> packed = pack(item)
    >>> packed[:4], unpack(packed) == item, list(unpack(packed)) == list(item)
    ((5, 'u', 0, 'u:5'), True, True)
    """
    x = item["x"]
    names = tuple(x)
    values = tuple(x.values())
    if all(type(value) is float for value in values):
        values = array("d", values).tobytes()
    kind = item["kind"]
    return (
        item["at"],
        item["user_id"],
        _KIND_ORDER[kind],
        item.get("id", ""),
        item["model"],
        kind,
        _TAGS.get(names, names),
        values,
        item["y"],
    )


def unpack(packed: tuple) -> dict:
    """The model input ``pack`` made this from, with its keys in their order."""
    at, user, _, ident, model, kind, names, values, y = packed
    if isinstance(names, str):
        names = FEATURE_NAMES[names]
    if isinstance(values, bytes):
        floats = array("d")
        floats.frombytes(values)
        values = floats.tolist()
    x = dict(zip(names, values, strict=True))
    return {"model": model, "kind": kind, "user_id": user, "at": at, "x": x, "y": y, "id": ident}


_PACKED_ORDER = itemgetter(0, 1, 2, 3)  # ``order`` of a packed item


def _latest_requests(model, items: list, user_of, is_request) -> list:
    """A recommender's ``items`` with only each user's last request.

    A list costs a ranking (about a millisecond) and only the latest of a
    user's scores outlives a feed (the sink keeps the newest per user), so a
    recommender serves the list once per user and feed. The classifiers'
    scores are cheap and all go out.
    """
    if model.spec.kind != "recommender":
        return items
    last = {user_of(item): i for i, item in enumerate(items) if is_request(item)}
    keep = set(last.values())
    return [item for i, item in enumerate(items) if i in keep or not is_request(item)]


def _last_clicks(model, items: list, item_of) -> frozenset:
    """The places in a recommender's ``items`` of each product's last click.

    After it, the recommender gives that product's similar items: the list as
    of the product's last click, whatever the feeds a runner cut the stream
    into (an earlier list of the product would be replaced in the same feed).
    """
    if model.spec.kind != "recommender":
        return frozenset()
    return frozenset(
        {
            product: i for i, item in enumerate(items) if (product := item_of(item)) is not None
        }.values()
    )


def _packed_product(packed: tuple):
    """The product of a packed recommender example (``None`` for other inputs)."""
    if packed[2] != _KIND_ORDER[EXAMPLE]:
        return None
    names, values = packed[6], packed[7]
    if isinstance(names, str) or isinstance(values, bytes):
        return unpack(packed)["x"].get("item")
    return values[names.index("item")] if "item" in names else None


def feed(model, items: list[dict]) -> tuple[list[dict], list[dict]]:
    """Feed items (sorted here by ``order``); the scores of requests and the drift events.

    A recommender's scores also hold each clicked product's similar items
    (``item_id`` in place of ``user_id``).
    """
    ordered = _latest_requests(
        model, sorted(items, key=order), itemgetter("user_id"), lambda i: i["kind"] == REQUEST
    )
    clicks = _last_clicks(
        model, ordered, lambda i: i["x"].get("item") if i["kind"] == EXAMPLE else None
    )
    return _feed(model, ordered, clicks)


def feed_packed(model, packed) -> tuple[list[dict], list[dict]]:
    """``feed`` for packed items (``pack``): each is unpacked only when its turn comes."""
    request = _KIND_ORDER[REQUEST]
    ordered = _latest_requests(
        model, sorted(packed, key=_PACKED_ORDER), itemgetter(1), lambda p: p[2] == request
    )
    return _feed(model, map(unpack, ordered), _last_clicks(model, ordered, _packed_product))


def _feed(model, items, last_clicks: frozenset = frozenset()) -> tuple[list[dict], list[dict]]:
    scores, drifts = [], []
    for place, item in enumerate(items):
        kind = item["kind"]
        if kind == EXAMPLE:
            done = model.learn(item["x"], item["y"], item["at"])
            if done["drift"]:
                drift_event = {"model": model.spec.name, "version": model.version, "at": item["at"]}
                drifts.append({**drift_event, **_shard_fields(model)})
            if place in last_clicks:
                product = item["x"]["item"]
                similar = model.similar(product, item["at"])
                if similar is not None:
                    scores.append(
                        {
                            "item_id": product,
                            "model": model.spec.name,
                            "version": model.version,
                            "score": similar,
                            "at": item["at"],
                            # The copies of a replicated model give the same lists: one field.
                            **({} if model.spec.replicated else _shard_fields(model)),
                        }
                    )
        elif kind == PREFIX:
            model.learn_only(item["x"], item["y"])
        elif kind == FORGET:
            forget = getattr(model, "forget", None)
            if forget is not None:
                forget(item["x"])
        else:
            if model.spec.kind == "recommender":
                score = model.predict({**item["x"], "at": item["at"]})
            else:
                score = round(model.predict(item["x"]), 6)
            found = {
                "user_id": item["user_id"],
                "model": model.spec.name,
                "version": model.version,
                "score": score,
                "at": item["at"],
            }
            if kind == PROBE:
                found["probe"] = item["id"]
            scores.append(found)
    return scores, drifts
