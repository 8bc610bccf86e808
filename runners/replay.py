"""Replay recorded event files through the pipeline: in batch, or as a stream.

Wires the file source and the sinks (Redis, trigger log and topic, dead-letter
files) around ``pipelines.personalize.build``, runs it, and reads the run
summary back from the pipeline's metrics so that the counts reconcile:
``events_read == valid + invalid`` and ``valid == unique + duplicates``.

Batch (the default) runs on the FnApiRunner. ``streaming`` reads the files
first, orders their records by event time and drives them through a Beam
``TestStream`` on the (bundle-based) DirectRunner in streaming mode, the
watermark advancing every ``watermark_step`` of event time, so timers fire
and triggers come out in the order and timing of a live run. Both give the
same final Redis state and the same triggers.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from models.validation import validate_event
from pipelines import personalize
from pipelines.config import Config, ConfigError, load_config
from pipelines.keys import KeySource, PseudonymKeyError, resolve
from pipelines.options import PersonalizeOptions, unknown_flags
from runners import DEFAULT_HOME, local_runner
from runners.status import StatusLine
from transforms.erasure import EraseUsers
from transforms.models_sink import WriteModelOutputs
from transforms.redis_sink import WriteProfilesToRedis, WriteTrendingToRedis, key
from transforms.segments import WriteSegmentChanges
from transforms.sources import LINE, RECORD, ReadEvents, iter_file
from transforms.triggers import TopicSink, WriteTriggers

NAMESPACE = "microtarget"


class InputError(ValueError):
    """Inputs or endpoints a replay cannot start with (the message names which)."""


def check_redis(url: str) -> None:
    """Fail before the pipeline starts if Redis cannot be reached at ``url``."""
    import redis

    from transforms.redis_sink import redact_url

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    except ValueError:
        # The parser's message may quote a piece of the password: say only what is wrong.
        raise InputError(
            f"--redis {redact_url(url)} is not a valid redis:// or rediss:// URL "
            "(percent-encode / ? # @ in the user and password)"
        ) from None
    try:
        client.ping()
        client.close()
    except redis.exceptions.RedisError as exc:
        raise InputError(f"cannot reach Redis at --redis {redact_url(url)}: {exc}") from None


def check_inputs(patterns: list[str]) -> None:
    """Fail before the pipeline starts if a pattern matches no file."""
    for pattern in patterns:
        try:
            matched = FileSystems.match([pattern])[0].metadata_list
        except Exception as exc:  # Beam raises BeamIOError, a bare Exception subclass
            raise InputError(f"cannot read input {pattern!r}: {exc}") from exc
        if not matched:
            raise InputError(f"no file matches input {pattern!r}")


@dataclass
class ReplayRequest:
    """What to replay and where to write it."""

    inputs: list[str]
    redis_url: str
    namespace: str = "default"
    config: Config = field(default_factory=Config)
    dead_letters_dir: str = str(DEFAULT_HOME / "dead-letters")
    progress: bool = False
    beam_args: list[str] = field(default_factory=list)
    streaming: bool = False
    watermark_step_ms: int = 3_600_000
    key_source: KeySource | None = None  # None: the pseudonym key is required (see keys)


def _dead_letter_json(letter: dict) -> str:
    return json.dumps(letter, sort_keys=True, ensure_ascii=False)


class _Count(beam.DoFn):
    def __init__(self, name: str):
        self._counter = beam.metrics.Metrics.counter(NAMESPACE, name)

    def process(self, element):
        self._counter.inc()
        yield element


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


def _event_time(raw) -> int | None:
    """The event time of a raw record, or None if it will not decode into an event."""
    _, _, kind, payload = raw
    record = payload
    if kind == LINE:
        try:
            record = json.loads(payload)
        except (ValueError, RecursionError):
            return None
    elif kind != RECORD:
        return None
    event, _ = validate_event(record)
    return None if event is None else event["timestamp"]


def event_stream(patterns: list[str], step_ms: int) -> tuple[TestStream, int, int]:
    """The records of the files as a TestStream in event-time order, their number, and
    how many of them are valid events.

    Records are added in steps of ``step_ms`` of event time, each step followed
    by the watermark advancing to its end (through steps without records too);
    records that will not decode come first (they become dead letters either
    way).
    """
    timed = []
    for pattern in patterns:
        for metadata in FileSystems.match([pattern])[0].metadata_list:
            for raw in iter_file(metadata.path):
                timed.append((_event_time(raw), raw))
    first = min((ts for ts, _ in timed if ts is not None), default=0)
    timed.sort(key=lambda pair: first - 1 if pair[0] is None else pair[0])
    stream = TestStream().advance_watermark_to(Timestamp(micros=(first - 1) * 1000))
    batch, step_end = [], None
    for ts, raw in timed:
        ts = first - 1 if ts is None else ts
        if step_end is not None and ts >= step_end:
            # Up to just before the next step: the DirectRunner fires a timer at T once the
            # watermark reaches T, so a record at exactly step_end would come too late.
            # Through quiet hours one step at a time, as a live watermark would move: what
            # closes in them (sessions) comes out then, not all at once at the next record.
            stream = stream.add_elements(batch)
            while step_end <= ts:
                stream = stream.advance_watermark_to(Timestamp(micros=(step_end - 1) * 1000))
                step_end += step_ms
            batch = []
        if step_end is None:
            step_end = (ts // step_ms + 1) * step_ms
        batch.append(TimestampedValue(raw, Timestamp(micros=ts * 1000)))
    if batch:
        stream = stream.add_elements(batch)
    valid = sum(1 for ts, _ in timed if ts is not None)
    return stream.advance_watermark_to_infinity(), len(timed), valid


def wire(pipeline: beam.Pipeline, request: ReplayRequest, run_id: str = "") -> dict:
    """Source, graph and sinks of a replay; returns the graph's outputs.

    A streaming replay writes dead letters to ``dead-letters-RUN_ID-*.jsonl``
    and puts the number of records it feeds in ``outputs["records"]``, and of
    valid events among them in ``outputs["valid_records"]``.
    """
    records = valid = None
    if request.streaming:
        stream, records, valid = event_stream(request.inputs, request.watermark_step_ms)
        raw = pipeline | "ReplayAsStream" >> stream
    else:
        raw = pipeline | "ReadEvents" >> ReadEvents(request.inputs)
    outputs = personalize.build(
        raw,
        request.config,
        request.key_source,
        request.streaming,
        2 * request.watermark_step_ms if request.streaming else 0,
        correct_any_late_input=request.streaming,
    )
    attach_sinks(
        outputs,
        request.config,
        request.redis_url,
        request.namespace,
        dead_letters_prefix(request.dead_letters_dir, run_id if request.streaming else None),
        request.streaming,
    )
    return {**outputs, "records": records, "valid_records": valid}


def dead_letters_prefix(folder: str, run_id: str | None) -> str:
    """Where dead letters go: ``dead-letters`` (batch) or ``dead-letters-RUN_ID`` (streams)."""
    return str(Path(folder) / (f"dead-letters-{run_id}" if run_id else "dead-letters"))


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
    model_outputs = (outputs["scores"], outputs["model_summaries"], outputs["model_drifts"])
    _ = model_outputs | "WriteModelOutputs" >> WriteModelOutputs(redis_url, namespace, ttl)
    _ = outputs["erasures"] | "EraseUsers" >> EraseUsers(redis_url, namespace, ttl["erased"])
    min_sizes = {name: spec.min_size for name, spec in config.segments.items()}
    _ = outputs["profiles"] | "WriteProfilesToRedis" >> WriteProfilesToRedis(
        redis_url, namespace, ttl, min_sizes
    )
    _ = outputs["trending"] | "WriteTrendingToRedis" >> WriteTrendingToRedis(
        redis_url, namespace, ttl
    )
    triggers = config.triggers
    _ = outputs["segment_changes"] | "WriteSegmentChanges" >> WriteSegmentChanges(
        redis_url, namespace, ttl["triggers"], triggers.stream_maxlen, mirror
    )
    _ = outputs["triggers"] | "WriteTriggers" >> WriteTriggers(
        redis_url,
        namespace,
        ttl.get("triggers", 0),
        triggers.log_size,
        TopicSink(maxlen=triggers.stream_maxlen),
        mirror,
    )
    _ = (
        outputs["dead_letters"]
        | "CountDeadLetters" >> beam.ParDo(_Count("dead_letters"))
        | "DeadLetterJson" >> beam.Map(_dead_letter_json)
        | "WriteDeadLetters"
        >> (
            beam.ParDo(_AppendLines(letters_prefix, ".jsonl"))
            if streaming
            else beam.io.WriteToText(letters_prefix, file_name_suffix=".jsonl")
        )
    )


def counters(result) -> dict[str, int]:
    """The pipeline's counters in the microtarget namespace, summed over steps."""
    totals: dict[str, int] = {}
    query = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        name = counter.key.metric.name
        totals[name] = totals.get(name, 0) + (value or 0)
    return totals


def _by_prefix(totals: dict[str, int], prefix: str) -> dict[str, int]:
    """Counters named ``PREFIX + NAME`` as ``{NAME: n}``, those above zero, sorted."""
    return {
        name.removeprefix(prefix): n
        for name, n in sorted(totals.items())
        if name.startswith(prefix) and n
    }


def summarize(totals: dict[str, int], wall_seconds: float) -> dict:
    """The run summary (keys documented in the README)."""
    valid = totals.get("valid", 0)
    unique = totals.get("unique", 0)
    by_reason = _by_prefix(totals, "invalid_")
    by_pattern = _by_prefix(totals, "matches.")
    triggered = _by_prefix(totals, "triggers.")
    converted = _by_prefix(totals, "converted.")
    suppressed = _by_prefix(totals, "triggers_suppressed_")
    events_read = totals.get("events_read", 0)
    return {
        "events_read": events_read,
        "valid": valid,
        "invalid": totals.get("invalid", 0),
        "invalid_by_reason": by_reason,
        "duplicates": valid - unique,
        "unique": unique,
        "unknown_event_type": totals.get("unknown_event_type", 0),
        "sessions": totals.get("sessions", 0),
        "profiles": totals.get("profiles", 0),
        "late": totals.get("late", 0),
        "dead_letters": totals.get("dead_letters", 0),
        "matches_by_pattern": by_pattern,
        "converted_by_pattern": converted,
        "converted_share_by_pattern": {
            name: round(converted.get(name, 0) / n, 4) for name, n in by_pattern.items()
        },
        "triggers": totals.get("triggers", 0),
        "triggers_by_pattern": triggered,
        "triggers_holdout": totals.get("triggers_holdout", 0),
        "triggers_suppressed": suppressed,
        "triggers_published": totals.get("triggers_published", 0),
        "partial_matches_dropped": totals.get("partial_matches_dropped", 0),
        "redis_writes_applied": totals.get("redis_writes_applied", 0),
        "redis_writes_stale": totals.get("redis_writes_stale", 0),
        "consent_blocked": totals.get("consent_blocked", 0),
        "sessions_consent_blocked": totals.get("sessions_consent_blocked", 0),
        "erasures": totals.get("erasures", 0),
        "erasure_keys_deleted": totals.get("erasure_keys_deleted", 0),
        "redis_writes_erased": totals.get("redis_writes_erased", 0),
        "triggers_refused_erased": totals.get("triggers_refused_erased", 0),
        "ip_addresses_dropped": totals.get("ip_addresses_dropped", 0),
        "wall_seconds": round(wall_seconds, 3),
        "events_per_second": round(events_read / wall_seconds, 1) if wall_seconds > 0 else 0.0,
    }


def _streaming_summary(
    request: ReplayRequest, run_id: str, records: int, valid: int, wall: float
) -> dict:
    """What a streaming replay can say for sure.

    The DirectRunner in streaming mode reports only the last bundle of each
    step in its metrics, so the counters are not used: the numbers come from
    what this process fed and what landed in the dead-letter files and Redis.
    """
    import redis

    folder = Path(request.dead_letters_dir)
    letters = 0
    for path in folder.glob(f"dead-letters-{run_id}-*.jsonl"):
        with open(path, encoding="utf-8") as handle:
            letters += sum(1 for _ in handle)
    client = redis.Redis.from_url(request.redis_url)
    try:
        match = key(request.namespace, "profile", "*")
        profiles = sum(1 for _ in client.scan_iter(match=match, count=1000))
        on_topic = client.xlen(key(request.namespace, "topic", "triggers"))
    finally:
        client.close()
    return {
        "mode": "streaming",
        "events_read": records,
        "valid": valid,
        "invalid": records - valid,
        "dead_letters": letters,
        "profiles_in_namespace": profiles,
        "triggers_on_topic": on_topic,
        "counters": "see a batch replay (the streaming DirectRunner drops them)",
        "wall_seconds": round(wall, 3),
        "events_per_second": round(records / wall, 1) if wall > 0 else 0.0,
    }


def _execute(request: ReplayRequest):
    """Check, build and run the replay to the end: (result, outputs, wall seconds, run id)."""
    check_inputs(request.inputs)
    check_redis(request.redis_url)
    if request.key_source is None:
        raise InputError("no pseudonym key source (pipelines.keys.resolve gives one)")
    request.config.geo_table()  # a bad table fails now, naming privacy.geo_table
    unknown = unknown_flags(request.beam_args)
    if unknown:
        raise InputError(f"unknown Beam option after `--`: {', '.join(unknown)}")
    options = PipelineOptions(request.beam_args)
    standard = options.view_as(StandardOptions)
    if request.streaming:
        # TestStream runs on the bundle-based DirectRunner only.
        standard.streaming = True
        standard.runner = standard.runner or "BundleBasedDirectRunner"
    elif standard.runner is None:
        standard.runner = "FnApiRunner"
    if standard.runner in ("FnApiRunner", "DirectRunner"):
        local_runner.speed_up_state_cache()
        local_runner.pipeline_state_commits()
    if standard.runner in ("BundleBasedDirectRunner", "DirectRunner"):
        local_runner.speed_up_bundle_runner()
    started = time.perf_counter()
    run_id = uuid.uuid4().hex[:12]
    pipeline = beam.Pipeline(options=options)
    outputs = wire(pipeline, request, run_id)
    before = _beam_temp_dirs(request.dead_letters_dir)
    try:
        with StatusLine(request.progress):
            result = pipeline.run()
            result.wait_until_finish()
    except BaseException:
        # A failed run leaves the dead-letter sink's temporary folder: nothing in it is
        # final, and a re-run writes its own.
        for path in _beam_temp_dirs(request.dead_letters_dir) - before:
            shutil.rmtree(path, ignore_errors=True)
        raise
    return result, outputs, time.perf_counter() - started, run_id


def _beam_temp_dirs(folder: str) -> set[Path]:
    """The temporary folders of Beam's file sinks in ``folder``."""
    return set(Path(folder).glob("beam-temp-*"))


def run(request: ReplayRequest) -> dict:
    """Run a replay to the end; returns its summary."""
    result, outputs, wall, run_id = _execute(request)
    if request.streaming:
        return _streaming_summary(
            request, run_id, outputs["records"], outputs["valid_records"], wall
        )
    return summarize(counters(result), wall)


def run_counters(request: ReplayRequest) -> tuple[dict, dict]:
    """Run a batch replay to the end; its counters and its summary."""
    result, _, wall, _ = _execute(request)
    totals = counters(result)
    return totals, summarize(totals, wall)


def verdict(summary: dict, max_invalid_share: float | None = None) -> str | None:
    """Why a finished replay failed on its input, or None.

    >>> verdict({"events_read": 0, "valid": 0, "invalid": 0})
    'nothing was read: the input holds no records'
    >>> verdict({"events_read": 10, "valid": 9, "invalid": 1}, 0.05)
    '1 of 10 records (10.0%) are invalid, more than --max-invalid-share 0.05'
    """
    read, valid, invalid = summary["events_read"], summary["valid"], summary["invalid"]
    if read == 0:
        return "nothing was read: the input holds no records"
    if valid == 0:
        reasons = summary.get("invalid_by_reason") or {}
        why = ", ".join(f"{reason} {n:,}" for reason, n in reasons.items())
        return (
            f"nothing valid was read: all {read:,} records are invalid"
            + (f" ({why})" if why else "")
            + "; the dead letters say why for each"
        )
    if max_invalid_share is not None and invalid / read > max_invalid_share:
        return (
            f"{invalid:,} of {read:,} records ({invalid / read:.1%}) are invalid, "
            f"more than --max-invalid-share {max_invalid_share:g}"
        )
    return None


def hint(summary: dict, config: Config) -> str | None:
    """One line on what to configure when a replay computed (almost) nothing, or None."""
    said = []
    blocked, unique = summary.get("consent_blocked", 0), summary.get("unique", 0)
    if unique and blocked > unique / 2:
        said.append(
            f"{blocked:,} of {unique:,} events were consent-blocked "
            f"(consent.default is {config.consent.default!r} and they state no consent)"
        )
    if not (config.patterns or config.segments or config.models.enabled):
        said.append("no patterns, segments or models are configured")
    if not said:
        return None
    return (
        f"hint: {' and '.join(said)}; set consent.default, patterns, segments and models "
        "in a --config (examples/config.yaml sets them all)"
    )


def format_summary(summary: dict) -> str:
    """The summary as a small aligned table."""
    rows = []
    for name, value in summary.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        elif isinstance(value, int):
            value = f"{value:,}"
        rows.append((name, str(value)))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)


def run_from_argv(argv: list[str]) -> int:
    """``python -m pipelines.personalize --input ... [Beam flags]``."""
    options = PipelineOptions(argv)
    mine = options.view_as(PersonalizeOptions)
    if not mine.input:
        print("error: --input is required (a file, a glob, repeatable)", file=sys.stderr)
        return 2
    try:
        config = load_config(mine.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        key_source = resolve(mine.pseudonym_key_file, mine.insecure_dev_key)
    except PseudonymKeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    redis_url = mine.redis
    if redis_url is None:
        from runners.local_redis import ensure_embedded

        redis_url = ensure_embedded(DEFAULT_HOME / "redis")
    request = ReplayRequest(
        inputs=list(mine.input),
        redis_url=redis_url,
        namespace=mine.namespace,
        config=config,
        dead_letters_dir=mine.dead_letters or str(DEFAULT_HOME / "dead-letters"),
        beam_args=argv,
        key_source=key_source,
    )
    try:
        summary = run(request)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if mine.summary_json:
        Path(mine.summary_json).write_text(json.dumps(summary, indent=2) + "\n")
    print(format_summary(summary))
    failed = verdict(summary)
    if failed:
        print(f"error: {failed}", file=sys.stderr)
        return 1
    return 0
