"""The sinks of every run, attached to the outputs of ``pipelines.personalize.build``.

Redis (profiles, segments, scores, models, trending, erasures), the trigger
log and topics, and dead-letter JSON lines files. The endpoints (a Redis URL,
a dead-letter folder, a Kafka topic to mirror to) are given by the caller: a
runner, or ``python -m pipelines.personalize`` from its flags. The step labels
are what the Flink and Dataflow UIs and the metrics show.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import apache_beam as beam

from pipelines.config import Config
from transforms import metrics
from transforms.erasure import EraseUsers
from transforms.models_sink import WriteModelOutputs
from transforms.redis_sink import WriteProfilesToRedis, WriteTrendingToRedis
from transforms.segments import WriteSegmentChanges
from transforms.triggers import TopicSink, WriteTriggers


def _dead_letter_json(letter: dict) -> str:
    return json.dumps(letter, sort_keys=True, ensure_ascii=False)


class _CountDeadLetters(beam.DoFn):
    """Beam counts them in all (``dead_letters``), Prometheus by reason."""

    def __init__(self):
        self._counter = beam.metrics.Metrics.counter(metrics.NAMESPACE, "dead_letters")

    def process(self, letter):
        self._counter.inc()
        metrics.dead_letter(letter.get("reason") or "unknown")
        yield letter


class _AppendLines(beam.DoFn):
    """Lines to a local file of this worker's own, flushed every bundle.

    For the local streaming replay: Beam's file sinks close files on windows
    and processing-time triggers, so an unbounded input would wait on the
    wall clock for them.
    """

    def __init__(self, prefix: str, suffix: str):
        self._prefix = prefix
        self._suffix = suffix
        self._file = None

    def setup(self):
        Path(self._prefix).parent.mkdir(parents=True, exist_ok=True)
        name = f"{self._prefix}-{uuid.uuid4().hex[:12]}{self._suffix}"
        self._file = open(name, "a", encoding="utf-8")  # noqa: SIM115 (closed in teardown)

    def process(self, line: str):
        self._file.write(line + "\n")

    def finish_bundle(self):
        self._file.flush()

    def teardown(self):
        if self._file is not None:
            self._file.close()


def dead_letters_prefix(folder: str, run_id: str | None) -> str:
    """Where dead letters go: ``dead-letters`` (batch) or ``dead-letters-RUN_ID`` (streams)."""
    return str(Path(folder) / (f"dead-letters-{run_id}" if run_id else "dead-letters"))


def beam_temp_dirs(folder: str) -> set[Path]:
    """The temporary folders of Beam's file sinks in ``folder``.

    A failed batch run leaves the dead-letter sink's one behind: nothing in it
    is final, and a re-run writes its own, so the caller removes it.
    """
    return set(Path(folder).glob("beam-temp-*"))


def attach_sinks(
    outputs: dict,
    config: Config,
    redis_url: str,
    namespace: str,
    letters_prefix: str,
    streaming: bool,
    mirror=None,
) -> None:
    """The sinks of every run: Redis, the topics, dead-letter files.

    ``mirror``: a ``transforms.kafka.KafkaTopicSink`` that also gets the
    triggers and segment changes published on the Redis topics.
    """
    ttl = config.redis.ttl_seconds()
    retry = config.redis.retry_for / 1000
    model_outputs = (outputs["scores"], outputs["model_summaries"], outputs["model_drifts"])
    _ = model_outputs | "WriteModelOutputs" >> WriteModelOutputs(redis_url, namespace, ttl, retry)
    _ = outputs["erasures"] | "EraseUsers" >> EraseUsers(redis_url, namespace, ttl["erased"], retry)
    min_sizes = {name: spec.min_size for name, spec in config.segments.items()}
    _ = outputs["profiles"] | "WriteProfilesToRedis" >> WriteProfilesToRedis(
        redis_url, namespace, ttl, min_sizes, retry
    )
    _ = outputs["trending"] | "WriteTrendingToRedis" >> WriteTrendingToRedis(
        redis_url, namespace, ttl, retry
    )
    triggers = config.triggers
    _ = outputs["segment_changes"] | "WriteSegmentChanges" >> WriteSegmentChanges(
        redis_url, namespace, ttl["triggers"], triggers.stream_maxlen, mirror, retry
    )
    _ = outputs["triggers"] | "WriteTriggers" >> WriteTriggers(
        redis_url,
        namespace,
        ttl.get("triggers", 0),
        triggers.log_size,
        TopicSink(maxlen=triggers.stream_maxlen),
        mirror,
        retry,
    )
    _ = (
        outputs["dead_letters"]
        | "CountDeadLetters" >> beam.ParDo(_CountDeadLetters())
        | "DeadLetterJson" >> beam.Map(_dead_letter_json)
        | "WriteDeadLetters"
        >> (
            beam.ParDo(_AppendLines(letters_prefix, ".jsonl"))
            if streaming
            else beam.io.WriteToText(letters_prefix, file_name_suffix=".jsonl")
        )
    )
