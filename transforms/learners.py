"""LearnOnline: one stateful learner per model, fed in event-time order.

Input: model inputs from ``UserTimeline`` (``models.timeline``: examples when
a label becomes known, requests for a user's current score), keyed here by
model name, so each model is one key and learns on one worker, in one order.
The DoFn holds the items in a bag and keeps a watermark timer; when it fires
at ``T`` it feeds every held item at or before ``T - allowed_lateness`` to the
model in ``models.learning.order`` (time, then user, examples first), so the
order of learning, and every score, is the same wherever no input comes
late. The learner stays ``allowed_lateness`` behind the watermark
(``models.allowed_lateness``; a streaming replay uses two watermark steps):
a session's example appears only when the session window closes, and a
user's timeline releases items it held ahead of the watermark with its
latest one. Inputs later than that are counted and dropped; on the Taobao
file a streaming replay still loses under 1% of the examples this way. The model lives in state
between firings (river models pickle). For a bounded input the learner
groups each model's items instead and feeds them once, in the same order.

Progressive metrics are pipeline gauges (``model_roc_auc_x1e6.NAME``,
``model_log_loss_x1e6.NAME``, ``model_silhouette_x1e6.NAME``,
``model_samples.NAME``, ``model_version.NAME``).

Outputs: ``scores`` (main: user, model, version, score, at), ``summaries``
(the model's JSON summary after each firing, for ``mt:NS:model:NAME``) and
``drifts`` (a new model version started, for the topic). An item that
reaches a learner already released past its time is counted
(``model_inputs_late``) and dropped: its user's timeline released it late,
which a streaming replay's watermark never causes.

Why inputs come late at all: ``UserTimeline`` re-arms its release timer at
the latest item it holds (``transforms.ordering``), so the items before that
one hold no watermark and can be released after the learner's watermark
passed them. Re-arming at the earliest held item would hold them on Flink
(its timers hold the output watermark), but Beam Python's streaming
DirectRunner keeps no watermark holds for user timers: on the Taobao file
that variant made the streaming replay 2.3 times slower and no more exact.

A single learner is a bound on throughput: ``bench/learners.py`` measures
its updates per second.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.coders import PickleCoder, VarIntCoder
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.window import GlobalWindows

from models import learning
from transforms import ordering
from transforms.metrics import Counters

NAMESPACE = "microtarget"
SUMMARIES = "summaries"
DRIFTS = "drifts"


def report_metrics(summary: dict) -> None:
    """The model's progressive metrics as pipeline gauges (millionths: gauges are integers)."""
    name = summary["model"]
    for metric, value in (summary.get("metrics") or {}).items():
        if value is not None and metric != "samples":
            gauge = beam.metrics.Metrics.gauge(NAMESPACE, f"model_{metric}_x1e6.{name}")
            gauge.set(int(round(value * 1e6)))
    beam.metrics.Metrics.gauge(NAMESPACE, f"model_samples.{name}").set(summary["samples"])
    beam.metrics.Metrics.gauge(NAMESPACE, f"model_version.{name}").set(summary["version"])


def _item(model_input: dict):
    return model_input["model"], (model_input["at"], model_input)


class _LearnFn(beam.DoFn):
    BUFFER = userstate.BagStateSpec("buffer", PickleCoder())
    MODEL = userstate.ReadModifyWriteStateSpec("model", PickleCoder())
    RELEASED = userstate.ReadModifyWriteStateSpec("released", VarIntCoder())
    PENDING = userstate.ReadModifyWriteStateSpec("pending", VarIntCoder())
    RELEASE = userstate.TimerSpec("release", TimeDomain.WATERMARK)

    def __init__(self, specs: dict[str, learning.ModelSpec], allowed_lateness_ms: int):
        self._specs = dict(specs)
        # One millisecond more: a runner may fire a timer at T once the watermark reaches T,
        # while an item at exactly T may still come (the watermark promises only < T).
        self._lateness = allowed_lateness_ms + 1
        self._late = beam.metrics.Metrics.counter(NAMESPACE, "model_inputs_late")
        self._counts = Counters()

    def process(
        self,
        keyed,
        buffer=beam.DoFn.StateParam(BUFFER),
        released=beam.DoFn.StateParam(RELEASED),
        pending=beam.DoFn.StateParam(PENDING),
        release=beam.DoFn.TimerParam(RELEASE),
    ):
        _, item = keyed
        if ordering.hold(item, buffer, released, pending, release, self._lateness) is not None:
            self._late.inc()

    @userstate.on_timer(RELEASE)
    def on_release(
        self,
        key=beam.DoFn.KeyParam,
        fired=beam.DoFn.TimestampParam,
        buffer=beam.DoFn.StateParam(BUFFER),
        model=beam.DoFn.StateParam(MODEL),
        released=beam.DoFn.StateParam(RELEASED),
        pending=beam.DoFn.StateParam(PENDING),
        release=beam.DoFn.TimerParam(RELEASE),
    ):
        if pending.read() is None:
            return
        ready = ordering.release(fired, buffer, released, pending, release, self._lateness)
        if not ready:
            return
        learner = model.read() or learning.new_model(self._specs[key])
        scores, drifts = learning.feed(learner, [item for _, item in ready])
        model.write(learner)
        examples = sum(1 for _, item in ready if item["kind"] == learning.EXAMPLE)
        self._counts.inc(f"model_updates.{key}", examples)
        self._counts.inc(f"model_scores.{key}", len(scores))
        yield from scores
        for event in drifts:
            self._counts.inc(f"model_drifts.{key}", 1)
            yield beam.pvalue.TaggedOutput(DRIFTS, event)
        summary = learner.summary()
        report_metrics(summary)
        yield beam.pvalue.TaggedOutput(SUMMARIES, summary)


class _LearnAllFn(beam.DoFn):
    """A bounded input's items of one model, all at once, fed in order (batch)."""

    def __init__(self, specs: dict[str, learning.ModelSpec]):
        self._specs = dict(specs)
        self._counts = Counters()

    def process(self, grouped):
        name, items = grouped
        learner = learning.new_model(self._specs[name])
        scores, drifts = learning.feed(learner, [item for _, item in items])
        summary = learner.summary()
        self._counts.inc(f"model_updates.{name}", summary["samples"])
        self._counts.inc(f"model_scores.{name}", len(scores))
        self._counts.inc(f"model_drifts.{name}", len(drifts))
        yield from scores
        for event in drifts:
            yield beam.pvalue.TaggedOutput(DRIFTS, event)
        report_metrics(summary)
        yield beam.pvalue.TaggedOutput(SUMMARIES, summary)


class LearnOnline(beam.PTransform):
    """Model inputs -> ``scores`` (main), ``summaries`` and ``drifts``."""

    def __init__(
        self,
        specs: dict[str, learning.ModelSpec],
        allowed_lateness_ms: int = 0,
        streaming: bool = False,
    ):
        super().__init__()
        self._specs = dict(specs)
        self._streaming = streaming
        self._fn = _LearnFn(specs, allowed_lateness_ms)

    def expand(self, model_inputs):
        keyed = (
            model_inputs
            | "IntoGlobalWindow" >> beam.WindowInto(GlobalWindows())
            | "KeyByModel" >> beam.Map(_item).with_output_types(tuple[str, tuple])
        )
        if self._streaming or not keyed.is_bounded:
            learn = beam.ParDo(self._fn)
        else:
            # A bounded input: every item is there once grouped, so the same order needs no
            # timer. (Beam 2.77's FnApiRunner also lost the timeline's timer output when a
            # timer-driven stateful step read it.)
            keyed = keyed | "GroupByModel" >> beam.GroupByKey()
            learn = beam.ParDo(_LearnAllFn(self._specs))
        return keyed | "LearnInOrder" >> learn.with_outputs(SUMMARIES, DRIFTS, main="scores")
