"""Replay recorded event files through the pipeline: in batch, or as a stream.

Wires the file source and the sinks (``pipelines.sinks``: Redis, trigger log
and topic, dead-letter files) around ``pipelines.personalize.build``, runs it,
and reads the run summary back from the pipeline's metrics
(``pipelines.summary``) so that the counts reconcile:
``events_read == valid + invalid`` and ``valid == unique + duplicates``.

Batch (the default) runs on the FnApiRunner. ``streaming`` reads the files
first, orders their records by event time and drives them through a Beam
``TestStream`` on the (bundle-based) DirectRunner in streaming mode, the
watermark advancing every ``watermark_step`` of event time, so timers fire
and triggers come out in the order and timing of a live run. Both give the
same final Redis state and the same triggers. ``runner="prism"`` runs a batch
replay on Prism, Beam's portable local runner (``runners.prism``), with the
same answers; not a streaming one (``NOT_HERE``).

Why the FnApiRunner, named explicitly: ``DirectRunner`` picks its engine per
pipeline (in Beam 2.77 Prism where it can download it, which nothing here
does while a job runs; the bundle-based runner for a pipeline with
processing-time timers). The FnApiRunner runs every transform here, timers
included, and is the fastest of the three on these replays (bench/RESULTS.md):
Prism gives the SDK worker no cache tokens, so each bundle reads its users'
state from the runner again.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from models.validation import validate_event
from pipelines import personalize
from pipelines.checks import InputError, check_inputs, check_redis
from pipelines.config import Config
from pipelines.keys import KeySource
from pipelines.options import unknown_flags
from pipelines.sinks import attach_sinks, dead_letters_prefix
from pipelines.sinks import beam_temp_dirs as _beam_temp_dirs
from pipelines.summary import counters, summarize
from runners import DEFAULT_HOME, beam_patches, metrics_server, prism
from runners.status import StatusLine
from transforms.redis_sink import key
from transforms.sources import LINE, RECORD, ReadEvents, iter_file

log = logging.getLogger(__name__)

# --runner of a replay: Beam's runner class by mode (batch, streaming).
RUNNERS = {
    "fnapi": ("FnApiRunner", None),
    "direct": (None, "BundleBasedDirectRunner"),
    "prism": ("PrismRunner", None),
}
# Prism 2.77 merges the session windows of a key only among those it fires together
# (tests/runners/test_prism.py shows it; README, Runners).
PRISM_SESSIONS = (
    "Prism 2.77 merges session windows only among those that close together: where the "
    "watermark moves in steps it can cut a session in two, and then sessions and what the "
    "models learn from them differ from the FnApiRunner's (README, Runners)"
)
# Why a runner cannot run a mode, when it is not only that Beam's runner cannot.
NOT_HERE = {
    ("prism", True): "Prism 2.77 merges session windows only among those that close "
    "together, and in a stream the watermark always moves in steps, so its sessions would "
    "differ from every other runner's (README, Runners)",
}
DEFAULT_RUNNER = {False: "fnapi", True: "direct"}


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
    runner: str | None = None  # one of RUNNERS; None: DEFAULT_RUNNER, or a --runner in beam_args
    # Batch only: what `microtarget report` reads, as JSON lines under this folder
    # (RECORDS: the users' audit records, triggers, segment changes, model summaries).
    record_dir: str | None = None
    # Serve the job's metrics for Prometheus on this port while it runs (runners.metrics_server).
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"

    @classmethod
    def from_args(cls, args, **fields) -> ReplayRequest:
        """A request from a command's parsed arguments (``files``, ``dead_letters``,
        ``quiet``, ``beam_args``), with ``fields`` for the rest."""
        return cls(
            inputs=args.files,
            dead_letters_dir=args.dead_letters,
            progress=not args.quiet,
            beam_args=args.beam_args,
            **fields,
        )


# The outputs a replay with ``record_dir`` writes, each to ``record_dir/NAME-*``.
RECORDS = (
    "audit",
    "triggers",
    "segment_changes",
    "model_summaries",
    "model_drifts",
    "probes",
    "intent_inputs",
)


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
        audit=request.record_dir is not None,
    )
    if request.record_dir is not None:
        for name in RECORDS:
            _ = (
                outputs[name]
                | f"ReportRecords_{name}" >> beam.Map(_json_line)
                | f"WriteReportRecords_{name}"
                >> beam.io.WriteToText(
                    str(Path(request.record_dir) / name), file_name_suffix=".jsonl"
                )
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


def _json_line(record: dict) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)


def read_records(record_dir: str, name: str) -> list[dict]:
    """The records a replay with ``record_dir`` wrote for ``name`` (one of ``RECORDS``)."""
    found = []
    for path in sorted(Path(record_dir).glob(f"{name}-*.jsonl")):
        with open(path) as lines:
            found.extend(json.loads(line) for line in lines if line.strip())
    return found


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
    options = PipelineOptions(runner_flags(request) + list(request.beam_args))
    standard = options.view_as(StandardOptions)
    if request.streaming:
        standard.streaming = True
    if standard.runner in ("FnApiRunner", "DirectRunner", "PrismRunner"):
        # The SDK worker runs in this process. Its state cache sizing is most of a replay's
        # speed (bench/RESULTS.md: 3.7 to 8 times); the pipelined commits are for workers
        # whose state lives in another process (Flink) and buy replays nothing.
        beam_patches.apply("state_cache_sizing")
    if standard.runner in ("BundleBasedDirectRunner", "DirectRunner"):
        beam_patches.apply("dofn_specs_cache")
    if request.metrics_port is not None:
        metrics_server.serve(request.metrics_port, request.metrics_host)
    started = time.perf_counter()
    run_id = uuid.uuid4().hex[:12]
    pipeline = beam.Pipeline(options=options)
    outputs = wire(pipeline, request, run_id)
    before = _beam_temp_dirs(request.dead_letters_dir)
    job = (run_id, standard.runner or "", request.namespace)
    metrics_server.job_started(*job)
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
    finally:
        metrics_server.job_ended(*job)
    return result, outputs, time.perf_counter() - started, run_id


def runner_flags(request: ReplayRequest) -> list[str]:
    """The Beam flags that choose the replay's runner (``request.runner``, see ``RUNNERS``).

    A ``--runner`` among the Beam flags is used as given (Prism still gets its
    location and options unless they are given too); ``request.runner`` with one
    is an error naming both.
    """
    given = PipelineOptions(request.beam_args).view_as(StandardOptions).runner
    mode = "streaming" if request.streaming else "batch"
    if request.runner is not None and request.runner not in RUNNERS:
        raise InputError(f"--runner {request.runner!r} is not one of {', '.join(RUNNERS)}")
    if given is not None:
        if request.runner is not None:
            raise InputError(
                f"--runner {request.runner} and --runner={given} after `--` disagree: give one"
            )
        if given != "PrismRunner":
            return []
        name = "prism"
    else:
        name = request.runner or DEFAULT_RUNNER[request.streaming]
    runner = RUNNERS[name][request.streaming]
    if runner is None:
        able = " or ".join(n for n, pair in RUNNERS.items() if pair[request.streaming])
        why = NOT_HERE.get((name, request.streaming))
        raise InputError(
            f"--runner {name} does not run a {mode} replay ({able} does)"
            + (f": {why}" if why else "")
        )
    if runner != "PrismRunner":
        return [f"--runner={runner}"]
    log.warning("%s", PRISM_SESSIONS)
    try:
        flags = prism.options()
    except prism.MissingPrism as exc:
        raise InputError(str(exc)) from None
    # Flags the caller gave win: argparse keeps the last of each, and theirs come after.
    return [flag for flag in flags if flag != f"--runner={given}"]


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
