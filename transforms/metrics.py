"""The job's metrics: Beam counters, mirrored into Prometheus in the worker's process.

Every counter is a Beam counter in the ``microtarget`` namespace (the run
summary reads those back when a run ends) and a ``prometheus_client`` counter
in this process's default registry, which ``runners.metrics_server`` serves
while the job runs (``--metrics-port``). Names map one way:

* ``NAME`` -> ``microtarget_NAME_total``;
* ``FAMILY.KEY`` -> ``microtarget_FAMILY_by_LABEL_total{LABEL="KEY"}``, the label
  ``pattern``, ``segment`` or ``model`` by family (``_LABELS``), else ``key``;
* ``invalid_REASON`` and ``triggers_suppressed_REASON`` ->
  ``microtarget_invalid_by_reason_total`` and ``microtarget_triggers_suppressed_total``
  with the label ``reason``.

Beyond the counters: dead letters by reason, the event time to Redis write
latency (a histogram), the event time the timeline has released (its lag is read
at scrape time), and the learners' progressive metrics (gauges). A Prometheus
counter counts every attempt of a bundle, so a bundle the runner retries counts
twice; the summary's Beam counters are the committed ones.

The prometheus_client objects are made on the first increment in the worker: a
DoFn is pickled with its counters, and locks do not pickle.
"""

from __future__ import annotations

import threading
import time

import apache_beam as beam
import prometheus_client

NAMESPACE = "microtarget"
PREFIX = "microtarget_"
# The label of a FAMILY.KEY counter's key, by family (model_* families: "model").
_LABELS = {
    "matches": "pattern",
    "triggers": "pattern",
    "triggers_holdout": "pattern",
    "converted": "pattern",
    "converted_treatment": "pattern",
    "converted_control": "pattern",
    "segment_entries": "segment",
    "segment_converted": "segment",
}
# Counters named PREFIX + reason, and the family they are in.
_REASONS = {"invalid_": "invalid_by_reason", "triggers_suppressed_": "triggers_suppressed"}
# Event time to Redis write, seconds: a live job's is under a few seconds; a replay's
# is the age of its file (+Inf).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)

# No ``*_created`` series beside each counter: the start of a worker is no news.
prometheus_client.disable_created_metrics()
_LOCK = threading.Lock()
_FAMILIES: dict = {}
_released_s = [float("nan")]


def _family(kind, name: str, documentation: str, labels: tuple = (), **kwargs):
    with _LOCK:
        family = _FAMILIES.get(name)
        if family is None:
            family = _FAMILIES[name] = kind(
                name, documentation, labelnames=labels, namespace="", **kwargs
            )
        return family


def prometheus_name(name: str) -> tuple[str, dict[str, str]]:
    """A Beam counter's name as a Prometheus counter's name (without ``_total``) and labels.

    >>> prometheus_name("events_read")
    ('microtarget_events_read', {})
    >>> prometheus_name("triggers.cart_abandonment")
    ('microtarget_triggers_by_pattern', {'pattern': 'cart_abandonment'})
    >>> prometheus_name("model_updates.purchase_intent")
    ('microtarget_model_updates_by_model', {'model': 'purchase_intent'})
    >>> prometheus_name("invalid_missing_field")
    ('microtarget_invalid_by_reason', {'reason': 'missing_field'})
    """
    family, dot, key = name.partition(".")
    if dot:
        label = _LABELS.get(family) or ("model" if family.startswith("model_") else "key")
        return f"{PREFIX}{family}_by_{label}", {label: key}
    for prefix, reasons in _REASONS.items():
        if name.startswith(prefix):
            return PREFIX + reasons, {"reason": name.removeprefix(prefix)}
    return PREFIX + name, {}


def prometheus_counter(name: str):
    """The Prometheus counter (a labelled child if the name has a key) of a Beam counter."""
    family_name, labels = prometheus_name(name)
    family = _family(
        prometheus_client.Counter,
        family_name,
        f"Beam counter {family_name.removeprefix(PREFIX)} of the microtarget job",
        tuple(labels),
    )
    return family.labels(**labels) if labels else family


class Counter:
    """``Counter("events_read").inc()``: a Beam counter and its Prometheus counter."""

    __slots__ = ("_beam", "_name", "_prometheus")

    def __init__(self, name: str):
        self._name = name
        self._beam = beam.metrics.Metrics.counter(NAMESPACE, name)
        self._prometheus = None

    def inc(self, n: int = 1) -> None:
        self._beam.inc(n)
        if n > 0:
            mirrored = self._prometheus
            if mirrored is None:
                mirrored = self._prometheus = prometheus_counter(self._name)
            mirrored.inc(n)

    def __getstate__(self):
        return self._name

    def __setstate__(self, name):
        self.__init__(name)


def counter(name: str) -> Counter:
    return Counter(name)


class Counters:
    """``counters.inc("triggers.cart_abandonment", 2)``: counters made on first use."""

    def __init__(self):
        self._made: dict = {}

    def inc(self, name: str, n: int = 1) -> None:
        made = self._made.get(name)
        if made is None:
            made = self._made[name] = Counter(name)
        made.inc(n)

    def __getstate__(self):
        return {}

    def __setstate__(self, _state):
        self._made = {}


def dead_letter(reason: str) -> None:
    """One dead letter more, by its reason (Prometheus only: Beam counts them in all)."""
    _family(
        prometheus_client.Counter,
        f"{PREFIX}dead_letters",
        "Dead letters written, by reason",
        ("reason",),
    ).labels(reason=reason).inc()


def write_latencies(sink: str, seconds) -> None:
    """Event time to Redis write, for the records a batch wrote (``sink``: what it wrote)."""
    histogram = _family(
        prometheus_client.Histogram,
        f"{PREFIX}redis_write_latency_seconds",
        "From a record's event time to its write to Redis (a replay: the age of its file)",
        ("sink",),
        buckets=LATENCY_BUCKETS,
    ).labels(sink=sink)
    for value in seconds:
        histogram.observe(value)


def released(event_time_ms: int) -> None:
    """The timeline released its events up to this event time (a timer fired there).

    ``microtarget_released_event_time_seconds`` keeps the newest; its lag behind the
    wall clock (``microtarget_watermark_lag_seconds``) is read when scraped, so a job
    that stops moving shows a lag that grows.
    """
    seconds = event_time_ms / 1000
    if seconds > _released_s[0] or _released_s[0] != _released_s[0]:
        if not _FAMILIES.get(f"{PREFIX}watermark_lag_seconds"):
            _family(
                prometheus_client.Gauge,
                f"{PREFIX}released_event_time_seconds",
                "Event time up to which the timeline released events (the watermark passed it)",
            ).set_function(lambda: _released_s[0])
            _family(
                prometheus_client.Gauge,
                f"{PREFIX}watermark_lag_seconds",
                "Wall clock minus the event time the timeline released up to",
            ).set_function(lambda: time.time() - _released_s[0])
        _released_s[0] = seconds


def model_metrics(name: str, summary: dict) -> None:
    """A learner's progressive metrics (ROC AUC, log loss, ...), samples and version."""
    values = _family(
        prometheus_client.Gauge,
        f"{PREFIX}model_metric",
        "A model's progressive metric (test, then train) as of its newest summary",
        ("model", "metric"),
    )
    for metric, value in (summary.get("metrics") or {}).items():
        if value is not None and metric not in ("samples", "predictions"):
            values.labels(model=name, metric=metric).set(value)
    for field in ("samples", "version"):
        _family(
            prometheus_client.Gauge,
            f"{PREFIX}model_{field}",
            f"A model's {field} as of its newest summary",
            ("model",),
        ).labels(model=name).set(summary[field])
