"""LearnOnline: one stateful learner per model, fed in event-time order.

Input: model inputs from ``UserTimeline`` (``models.timeline``: examples when
a label becomes known, requests for a user's current score), keyed here by
model name, so each model is one key and learns on one worker, in one order.
With ``models.shards`` N above 1 a model runs as N independent copies, keyed
``NAME:SHARD`` (``models.learning.learner_key``: a hash of the user's
pseudonym), each learning from and scoring its own users: the work of a
model spreads over N keys, and each copy learns from about 1/N of the
examples (what that costs in quality is in ``bench/RESULTS.md``). The
recommendations model can instead run replicated
(``recommendations.replicated``): every copy learns every click and serves
only its own users, so the lists are one model's and the serving spreads.
The DoFn holds the items in a bag and keeps a watermark timer; when it fires
at ``T`` it feeds every held item at or before ``T - allowed_lateness`` to the
model in ``models.learning.order`` (time, then user, examples first). The
model lives in state between firings (river models pickle). For a bounded
input the learner groups each model's items instead and feeds them once, in
the same order.

Late inputs. An item can reach the learner after it fed items later than
that one: ``UserTimeline`` re-arms its release timer at the latest item it
holds (``transforms.ordering``), so the items before that one hold no
watermark and can be released after the learner's watermark passed them
(re-arming at the earliest would hold them on Flink, but Beam Python's
streaming DirectRunner keeps no watermark holds for user timers; on the
Taobao file that variant made the streaming replay 2.3 times slower and no
more exact). So the learner corrects instead of waiting longer:

* every ``_checkpoint_every`` of event time it keeps a checkpoint (the model
  pickled, with the time it has learned up to) and it logs what it feeds;
* an item later than what was fed, but after the oldest checkpoint, is held
  as usual and marks a correction; at the next firing the learner takes the
  latest checkpoint before that item, feeds again everything logged after
  it together with the new items, in order, and gives those requests' scores
  again (``write_score.lua`` lets a score as of the same time replace the
  stored one);
* checkpoints and log reach back ``models.correction_horizon`` (0, the
  default: no corrections, late items are counted in ``model_inputs_late``
  and dropped); of the requests only each user's latest is kept, since only
  its score can still be the stored one. A streaming replay corrects for any
  late input (its input is finite).

So the order of learning, and every score left in Redis, is the same in a
batch and a streaming replay. Counters: ``model_inputs_corrected.NAME``,
``model_corrections.NAME``, ``model_inputs_learned_again.NAME``. Drift
events are published once per model version (``transforms.models_sink``): a
drift seen before a correction and not after it stays published.

Progressive metrics are pipeline gauges (``model_roc_auc_x1e6.NAME``,
``model_log_loss_x1e6.NAME``, ``model_silhouette_x1e6.NAME``,
``model_samples.NAME``, ``model_version.NAME``).

Outputs: ``scores`` (main: user, model, version, score, at), ``summaries``
(the model's JSON summary after each firing, for ``mt:NS:model:NAME``),
``drifts`` (a new model version started, for the topic) and ``probes`` (the
scores of the timeline's intent probes, with ``probe``: for the report only).

A single learner is a bound on throughput: ``bench/learners.py`` measures
its updates per second; shards lift that bound where there are workers to
spread them over.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.coders import VarIntCoder
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.window import GlobalWindows

from models import learning
from transforms import metrics, ordering, pickled
from transforms.metrics import Counters

NAMESPACE = "microtarget"
SUMMARIES = "summaries"
DRIFTS = "drifts"
PROBES = "probes"
HOUR_MS = 3_600_000


def report_metrics(summary: dict) -> None:
    """The model's progressive metrics as pipeline gauges (millionths: gauges are integers)."""
    name = learning.summary_name(summary)
    for metric, value in (summary.get("metrics") or {}).items():
        if value is not None and metric not in ("samples", "predictions"):
            gauge = beam.metrics.Metrics.gauge(NAMESPACE, f"model_{metric}_x1e6.{name}")
            gauge.set(int(round(value * 1e6)))
    beam.metrics.Metrics.gauge(NAMESPACE, f"model_samples.{name}").set(summary["samples"])
    beam.metrics.Metrics.gauge(NAMESPACE, f"model_version.{name}").set(summary["version"])
    metrics.model_metrics(name, summary)


class _Keyed:
    """A model input keyed for its learners (``models.learning.learner_keys``: its user's
    copy, or every copy of a replicated model for examples and erasures)."""

    def __init__(self, specs: dict[str, learning.ModelSpec], packed: bool):
        self._specs = dict(specs)
        self._packed = packed

    def __call__(self, model_input: dict):
        keys = learning.learner_keys(
            self._specs[model_input["model"]], model_input["kind"], model_input["user_id"]
        )
        # Grouped and held all at once in batch: compact (models.learning.pack).
        value = learning.pack(model_input) if self._packed else (model_input["at"], model_input)
        return [(key, value) for key in keys]


class _LearnFn(beam.DoFn):
    # Pickled bytes, read and written as objects (transforms.pickled says why).
    BUFFER = userstate.BagStateSpec("buffer", pickled.CODER)
    MODEL = userstate.ReadModifyWriteStateSpec("model", pickled.CODER)
    CLOCK = userstate.ReadModifyWriteStateSpec("clock", ordering.CLOCK_CODER)
    RELEASE = userstate.TimerSpec("release", TimeDomain.WATERMARK)
    # Corrections: the items fed since the oldest checkpoint, the checkpoints
    # ((cutoff, pickled model) pairs), the oldest and newest cutoffs, and the
    # earliest time of a late item still to be learned in order.
    LOG = userstate.BagStateSpec("log", pickled.CODER)
    CHECKPOINTS = userstate.BagStateSpec("checkpoints", pickled.CODER)
    FLOOR = userstate.ReadModifyWriteStateSpec("floor", VarIntCoder())
    NEWEST = userstate.ReadModifyWriteStateSpec("newest", VarIntCoder())
    REWIND = userstate.ReadModifyWriteStateSpec("rewind", VarIntCoder())

    def __init__(
        self,
        specs: dict[str, learning.ModelSpec],
        allowed_lateness_ms: int,
        correction_horizon_ms: int | None = 0,
    ):
        self._specs = dict(specs)
        # One millisecond more: a runner may fire a timer at T once the watermark reaches T,
        # while an item at exactly T may still come (the watermark promises only < T).
        self._lateness = allowed_lateness_ms + 1
        self._horizon = correction_horizon_ms
        self._correcting = correction_horizon_ms is None or correction_horizon_ms > 0
        self._every = _checkpoint_every(correction_horizon_ms)
        self._late = metrics.counter("model_inputs_late")
        self._counts = Counters()

    def process(
        self,
        keyed,
        buffer=beam.DoFn.StateParam(BUFFER),
        clock=beam.DoFn.StateParam(CLOCK),
        release=beam.DoFn.TimerParam(RELEASE),
        floor=beam.DoFn.StateParam(FLOOR),
        rewind=beam.DoFn.StateParam(REWIND),
    ):
        released, pending = ordering.clock(clock)
        buffer = pickled.bag(buffer)
        key, item = keyed
        name, _ = learning.split_key(key)
        passed = ordering.hold(item, buffer, released, pending, release, self._lateness)
        if passed is None:
            return
        oldest = floor.read() if self._correcting else None
        if oldest is None or item[0] <= oldest:
            self._late.inc()
            return
        # Late, but within the horizon: learned in order by going back to a checkpoint.
        buffer.add(item)
        since = rewind.read()
        rewind.write(item[0] if since is None else min(since, item[0]))
        # The watermark is past it: the timer fires at once.
        ordering.arm(passed + self._lateness, pending, release)
        self._counts.inc(f"model_inputs_corrected.{name}", 1)

    @userstate.on_timer(RELEASE)
    def on_release(
        self,
        key=beam.DoFn.KeyParam,
        fired=beam.DoFn.TimestampParam,
        buffer=beam.DoFn.StateParam(BUFFER),
        model=beam.DoFn.StateParam(MODEL),
        clock=beam.DoFn.StateParam(CLOCK),
        release=beam.DoFn.TimerParam(RELEASE),
        log=beam.DoFn.StateParam(LOG),
        checkpoints=beam.DoFn.StateParam(CHECKPOINTS),
        floor=beam.DoFn.StateParam(FLOOR),
        newest=beam.DoFn.StateParam(NEWEST),
        rewind=beam.DoFn.StateParam(REWIND),
    ):
        name, shard = learning.split_key(key)
        released, pending = ordering.clock(clock)
        buffer = pickled.bag(buffer)
        model = pickled.cell(model)
        log = pickled.bag(log)
        checkpoints = pickled.bag(checkpoints)
        if pending.read() is None:
            return
        before = released.read()
        ready = ordering.release(fired, buffer, released, pending, release, self._lateness)
        if not ready:
            return
        items = [item for _, item in ready]
        learner, again = None, []
        since = rewind.read()
        if since is not None:
            rewind.clear()
            back = learning.restart(list(checkpoints.read()), list(log.read()), since)
            if back is None:  # no checkpoint is old enough any more: late after all
                items = [item for ts, item in ready if ts > before]
                self._late.inc(len(ready) - len(items))
            else:
                learner, points, older, again = back
                _rewrite(checkpoints, points)
                _rewrite(log, older)
                newest.write(points[-1][0])
                items = again + items
                self._counts.inc(f"model_corrections.{name}", 1)
                self._counts.inc(f"model_inputs_learned_again.{name}", len(again))
        if learner is None:
            learner = model.read() or learning.new_model(self._specs[name], shard)
        if self._correcting and before is None:
            # The model before anything: a correction can reach back to the first item.
            start = min(ts for ts, _ in ready) - 1
            checkpoints.add((start, learning.snapshot(learner)))
            floor.write(start)
            newest.write(start)
        scores, drifts = learning.feed(learner, items)
        model.write(learner)
        if self._correcting:
            for item in items:
                log.add(item)
            self._checkpoint(learner, released.read(), checkpoints, log, floor, newest)
        # Examples learned once each: what a correction learns again is counted apart, and
        # of a replicated model's copies (each learns every example) only the first counts.
        if not self._specs[name].replicated or not shard:
            examples = sum(1 for item in items[len(again) :] if item["kind"] in learning.LEARNED)
            self._counts.inc(f"model_updates.{name}", examples)
        yield from _scores(self._counts, name, scores)
        for event in drifts:
            self._counts.inc(f"model_drifts.{name}", 1)
            yield beam.pvalue.TaggedOutput(DRIFTS, event)
        summary = learner.summary()
        report_metrics(summary)
        yield beam.pvalue.TaggedOutput(SUMMARIES, summary)

    def _checkpoint(self, learner, cutoff: int, checkpoints, log, floor, newest) -> None:
        """Every ``_every`` of event time: a checkpoint, and what falls out of the horizon goes."""
        last = newest.read()
        if last is not None and cutoff - last < self._every:
            return
        checkpoints.add((cutoff, learning.snapshot(learner)))
        newest.write(cutoff)
        horizon_from = None if self._horizon is None else cutoff - self._horizon
        points, kept = learning.trim(list(checkpoints.read()), list(log.read()), horizon_from)
        _rewrite(checkpoints, points)
        _rewrite(log, kept)
        floor.write(points[0][0])


def _scores(counts: Counters, name: str, scores: list):
    """The scores to store (main output), and the report's probes apart (``PROBES``)."""
    probes = 0
    for score in scores:
        if "probe" in score:
            probes += 1
            yield beam.pvalue.TaggedOutput(PROBES, score)
        else:
            yield score
    counts.inc(f"model_scores.{name}", len(scores) - probes)
    if probes:
        counts.inc(f"model_probes.{name}", probes)


def _rewrite(bag, items) -> None:
    bag.clear()
    for item in items:
        bag.add(item)


def _checkpoint_every(horizon_ms: int | None) -> int:
    """How often (event time) the learner keeps a checkpoint: an eighth of the horizon,
    between a second and an hour (an unbounded horizon: every hour)."""
    if horizon_ms is None:
        return HOUR_MS
    return min(max(horizon_ms // 8, 1_000), HOUR_MS)


class _LearnAllFn(beam.DoFn):
    """A bounded input's items of one model, all at once, fed in order (batch)."""

    def __init__(self, specs: dict[str, learning.ModelSpec]):
        self._specs = dict(specs)
        self._counts = Counters()

    def process(self, grouped):
        key, packed = grouped
        name, shard = learning.split_key(key)
        learner = learning.new_model(self._specs[name], shard)
        scores, drifts = learning.feed_packed(learner, packed)
        summary = learner.summary()
        if not self._specs[name].replicated or not shard:  # one count of each example
            self._counts.inc(f"model_updates.{name}", summary["samples"])
        self._counts.inc(f"model_drifts.{name}", len(drifts))
        yield from _scores(self._counts, name, scores)
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
        correction_horizon_ms: int | None = 0,
    ):
        super().__init__()
        self._specs = dict(specs)
        self._streaming = streaming
        self._fn = _LearnFn(specs, allowed_lateness_ms, correction_horizon_ms)

    def expand(self, model_inputs):
        inputs = model_inputs | "IntoGlobalWindow" >> beam.WindowInto(GlobalWindows())
        if self._streaming or not inputs.is_bounded:
            keyed = inputs | "KeyByModel" >> beam.FlatMap(
                _Keyed(self._specs, False)
            ).with_output_types(tuple[str, tuple])
            learn = beam.ParDo(self._fn)
        else:
            # A bounded input: every item is there once grouped, so the same order needs no
            # timer. (Beam 2.77's FnApiRunner also lost the timeline's timer output when a
            # timer-driven stateful step read it.)
            keyed = (
                inputs
                | "KeyByModel"
                >> beam.FlatMap(_Keyed(self._specs, True)).with_output_types(tuple[str, tuple])
                | "GroupByModel" >> beam.GroupByKey()
            )
            learn = beam.ParDo(_LearnAllFn(self._specs))
        return keyed | "LearnInOrder" >> learn.with_outputs(
            SUMMARIES, DRIFTS, PROBES, main="scores"
        )
