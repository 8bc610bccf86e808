"""Run the pipeline live: Kafka in, Redis and a Kafka topic out, on Flink (or Dataflow).

``microtarget run --source kafka://HOST:PORT/TOPIC --runner flink`` starts the
pieces Beam needs on this machine (``runners.local.flink``: a Java expansion service
for Kafka IO and Beam's Flink job server, with ``--flink-master [local]`` an
embedded Flink mini-cluster, or a cluster's REST address), submits the same
graph as ``replay`` (``pipelines.personalize.build``) in streaming mode, and
keeps running until it is interrupted (Ctrl-C or SIGTERM cancel the job) or
``--duration`` has passed. Python workers run in LOOPBACK mode, inside this
process; give ``-- --environment_type=EXTERNAL --environment_config=HOST:PORT``
for a worker pool elsewhere.

Profiles, segments, scores and the Redis topics are written as in a replay;
``--sink kafka://HOST:PORT/TOPIC`` also mirrors triggers and segment changes
to that Kafka topic (``transforms.kafka``). Dead letters go to JSON lines
files in ``--dead-letters`` on the machine that runs the Python workers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions, StandardOptions
from apache_beam.runners.runner import PipelineState

from pipelines import personalize
from pipelines.checks import InputError, check_redis
from pipelines.config import Config
from pipelines.keys import KeySource
from pipelines.sinks import attach_sinks, dead_letters_prefix
from runners import DEFAULT_HOME
from transforms.kafka import KafkaTopicSink, KafkaUrlError, ReadFromKafkaTopic, parse_url

log = logging.getLogger(__name__)
RUNNERS = ("flink", "portable", "dataflow")
DEFAULT_CHECKPOINT_MS = 10_000
STATE_CACHE_MB = 256  # the SDK worker's state cache (Beam's default: off)
BUNDLE_MS = 50
WATERMARK_MS = 50  # how often the Kafka read emits its watermark (Flink's default: 200)


class FlinkOptions(PipelineOptions):
    """Flink options Beam Python does not declare (declared, they reach the job server)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--checkpointing_interval",
            type=int,
            default=None,
            help="Flink checkpoint interval in ms (-1: off).",
        )
        parser.add_argument(
            "--state_backend",
            default=None,
            help="hashmap state on the heap with checkpoints in files ('filesystem'), "
            "or 'rocksdb' (needs its jar on the job server).",
        )
        parser.add_argument(
            "--state_backend_storage_path",
            default=None,
            help="Where checkpoints go (file:///..., hdfs://..., s3://...).",
        )
        parser.add_argument("--min_pause_between_checkpoints", type=int, default=None)
        parser.add_argument("--max_bundle_size", type=int, default=None)
        parser.add_argument("--max_bundle_time_mills", type=int, default=None)
        parser.add_argument("--auto_watermark_interval", type=int, default=None)
        parser.add_argument(
            "--finish_bundle_before_checkpointing",
            type=true_or_false,
            default=None,
            help="true (microtarget's default): finish bundles before a checkpoint barrier; "
            "false: Beam's default, which buffers a bundle's output into the checkpoint.",
        )


def true_or_false(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise ValueError(f"expected true or false, not {text!r}")
    return text.lower() == "true"


@dataclass
class RunRequest:
    """What to read, where to run and where to write."""

    source: str
    redis_url: str
    runner: str = "flink"
    flink_master: str = "[local]"
    parallelism: int = 1
    checkpoint_interval_ms: int = DEFAULT_CHECKPOINT_MS
    sink: str | None = None
    namespace: str = "default"
    config: Config = field(default_factory=Config)
    dead_letters_dir: str = str(DEFAULT_HOME / "dead-letters")
    group_id: str = ""
    duration_s: float | None = None
    job_endpoint: str | None = None
    expansion_service: str | None = None
    beam_args: list[str] = field(default_factory=list)
    key_source: KeySource | None = None
    work_dir: str = str(DEFAULT_HOME / "flink")
    worker_pool: bool = False
    # Serve the job's metrics for Prometheus on this port while it runs (runners.metrics_server).
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"


def check_topic(bootstrap: str, topic: str, option: str) -> None:
    """Fail before the pipeline starts if the broker or the topic is not there."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        topics = admin.list_topics(topic=topic, timeout=10).topics
    except Exception as exc:  # KafkaException: broker unreachable
        raise InputError(f"cannot reach Kafka at {option} {bootstrap}: {exc}") from None
    found = topics.get(topic)
    if found is None or found.error is not None:
        raise InputError(f"{option}: topic {topic!r} does not exist on {bootstrap}")


def check(request: RunRequest) -> tuple[tuple[str, str], tuple[str, str] | None]:
    """Every check that can fail before anything starts; the parsed source and sink."""
    if request.runner not in RUNNERS:
        raise InputError(f"--runner {request.runner!r} is not one of {', '.join(RUNNERS)}")
    if request.parallelism < 1:
        raise InputError(f"--parallelism must be at least 1, not {request.parallelism}")
    if request.runner == "portable" and not request.job_endpoint:
        raise InputError("--runner portable needs --job-endpoint HOST:PORT")
    try:
        source = parse_url(request.source, "--source")
        sink = parse_url(request.sink, "--sink") if request.sink else None
    except KafkaUrlError as exc:
        raise InputError(str(exc)) from None
    if request.key_source is None:
        raise InputError("no pseudonym key source (pipelines.keys.resolve gives one)")
    if request.metrics_port is not None:
        environment = PipelineOptions(request.beam_args).view_as(PortableOptions).environment_type
        if (
            request.runner == "dataflow"
            or request.worker_pool
            or environment
            not in (
                None,
                "LOOPBACK",
            )
        ):
            raise InputError(
                "--metrics-port serves the metrics of the Python workers in this process "
                "(LOOPBACK, the default); with --worker-pool, another environment or "
                "Dataflow the workers run elsewhere"
            )
    request.config.geo_table()
    check_redis(request.redis_url)
    check_topic(*source, "--source")
    if sink is not None:
        check_topic(*sink, "--sink")
    return source, sink


def build(pipeline: beam.Pipeline, request: RunRequest, source, sink, expansion: str, run_id):
    """Kafka source, the graph and every sink, on ``pipeline``."""
    bootstrap, topic = source
    raw = pipeline | "ReadKafka" >> ReadFromKafkaTopic(
        bootstrap, topic, expansion, request.group_id
    )
    outputs = personalize.build(raw, request.config, request.key_source, streaming=True)
    attach_sinks(
        outputs,
        request.config,
        request.redis_url,
        request.namespace,
        dead_letters_prefix(request.dead_letters_dir, run_id),
        True,
        KafkaTopicSink(*sink) if sink else None,
    )
    return outputs


def _options(request: RunRequest, job_endpoint: str | None, work: Path) -> PipelineOptions:
    args = list(request.beam_args)
    options = PipelineOptions(args)
    standard = options.view_as(StandardOptions)
    standard.streaming = True
    if request.runner == "dataflow":
        standard.runner = "DataflowRunner"
        return options
    standard.runner = "PortableRunner"
    portable = options.view_as(PortableOptions)
    portable.job_endpoint = job_endpoint
    if not portable.environment_type:
        portable.environment_type = "LOOPBACK"
    flink = options.view_as(FlinkOptions)
    flink.checkpointing_interval = request.checkpoint_interval_ms
    # Beam's default (false) finishes a bundle inside the checkpoint and buffers its
    # output into it, but lets the operator's watermark out at once (Beam 2.56's
    # ExecutableStageDoFnOperator): those outputs then reach the next stage behind
    # its watermark, a session is cut in two or a timeline item dead-lettered as late.
    if flink.finish_bundle_before_checkpointing is None:
        flink.finish_bundle_before_checkpointing = True
    # Checkpoints to files: the default keeps them in the job manager's memory, capped
    # at 5 MB, and a profile store outgrows that within minutes.
    flink.state_backend = flink.state_backend or "filesystem"
    if not flink.state_backend_storage_path:
        flink.state_backend_storage_path = (work / "checkpoints").resolve().as_uri()
    from apache_beam.options.pipeline_options import FlinkRunnerOptions, WorkerOptions

    # Beam's SDK worker caches no user state by default, so each read of a state cell
    # is a round trip to the runner. (Workers of Beam's own worker pool never see this
    # option; those of runners.local.worker_pool do.)
    worker = options.view_as(WorkerOptions)
    if not worker.max_cache_memory_usage_mb:
        worker.max_cache_memory_usage_mb = STATE_CACHE_MB
    in_process = portable.environment_type == "LOOPBACK"
    if in_process:  # runners.local.worker_pool does the same in its workers
        from runners import beam_patches

        beam_patches.apply_worker()
    if flink.max_bundle_time_mills is None and (in_process or request.worker_pool):
        # A stage's watermark moves when its bundle ends; Beam's 1 s limit per bundle
        # added up along the stages (bench/live.py at 100 events/s: p50 4.8 s, 1.0 s
        # with 100 ms, 0.7 s with 50 ms, the same throughput). Only with the state
        # cache and the pipelined commits above: without them more bundles cost
        # throughput (Beam's worker pool at parallelism 2: 257 events/s, 328 with 1 s).
        flink.max_bundle_time_mills = BUNDLE_MS
    # The Kafka read's watermark every 50 ms, not Flink's 200 (bench/live.py at 100
    # events/s with 100 ms bundles: p50 1,075 ms, 957 with 50 ms).
    if flink.auto_watermark_interval is None:
        flink.auto_watermark_interval = WATERMARK_MS
    options.view_as(FlinkRunnerOptions).parallelism = request.parallelism
    return options


def warn_untested_pair(request: RunRequest) -> str | None:
    """Log a warning if the Java services this run starts are untested with this SDK.

    They run from the jars of ``runners/local/jvm/flink/pom.xml`` (a Beam Java release
    older than the Python SDK); a job server or expansion service given by address
    is somebody else's, of a version unknown here. Returns the warning, if any.
    """
    starts_java = request.expansion_service is None or (
        request.runner != "dataflow" and request.job_endpoint is None
    )
    if not starts_java:
        return None
    from runners.local.flink import untested_pair

    warning = untested_pair()
    if warning:
        log.warning("%s", warning)
    return warning


def _serve_metrics(stack: contextlib.ExitStack, request: RunRequest, source, run_id) -> None:
    from runners import metrics_server

    metrics_server.serve(request.metrics_port, request.metrics_host)
    job = (run_id, request.runner, request.namespace)
    metrics_server.job_started(*job)
    stack.callback(metrics_server.job_ended, *job)
    if request.group_id:
        lag = metrics_server.watch_kafka_lag(*source, request.group_id)
        stack.callback(metrics_server.unwatch, lag)


class _Stop(Exception):
    pass


def _raise_stop(_signum, _frame):
    raise _Stop


def run(request: RunRequest, on_running=None) -> dict:
    """Run until interrupted or ``duration_s`` has passed; returns what happened.

    ``state`` says how the job ended (``... (cancelled)`` when this process
    cancelled it); ``error`` is the failure's message if it failed.

    ``on_running(result)`` is called once the job is submitted (tests use it).
    """
    warn_untested_pair(request)
    source, sink = check(request)
    run_id = uuid.uuid4().hex[:12]
    work = Path(request.work_dir) / run_id
    services = []
    state = "UNKNOWN"
    error = None
    started = time.monotonic()
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main_thread else None
    with contextlib.ExitStack() as stack:
        expansion = request.expansion_service
        job_endpoint = request.job_endpoint
        from runners.local.flink import ExpansionService, FlinkJobServer

        if expansion is None:
            embedded = request.runner != "dataflow"
            service = stack.enter_context(ExpansionService(work, embedded=embedded))
            services.append(service.name)
            expansion = service.endpoint
        if request.worker_pool and request.runner != "dataflow":
            from runners.local.flink import WorkerPool

            pool = stack.enter_context(WorkerPool(work))
            services.append("worker-pool")
            environment = [
                "--environment_type=EXTERNAL",
                f"--environment_config={pool.endpoint}",
            ]
            request = dataclasses.replace(request, beam_args=[*request.beam_args, *environment])
        if request.runner != "dataflow" and job_endpoint is None:
            server = FlinkJobServer(work, request.flink_master)
            stack.enter_context(server)
            services.append(server.name)
            job_endpoint = server.endpoint
        options = _options(request, job_endpoint, work)
        pipeline = beam.Pipeline(options=options)
        build(pipeline, request, source, sink, expansion, run_id)
        if request.metrics_port is not None:
            _serve_metrics(stack, request, source, run_id)
        result = pipeline.run()
        try:
            if main_thread:  # SIGTERM cancels the job as Ctrl-C does
                signal.signal(signal.SIGTERM, _raise_stop)
            if on_running is not None:
                on_running(result)
            millis = None if request.duration_s is None else int(request.duration_s * 1000)
            try:
                result.wait_until_finish(duration=millis)
                state = str(result.state)
            except RuntimeError as exc:
                # Beam raises for every end but DONE. A job cancelled in the cluster (its
                # UI or REST API) is no failure: the job server reports it as FAILED
                # with Flink's JobCancellationException.
                state = str(result.state)
                if result.state == PipelineState.CANCELLED or "JobCancellationException" in str(
                    exc
                ):
                    state = "CANCELLED (in the cluster)"
                else:
                    error = str(exc)
        except (KeyboardInterrupt, _Stop):
            state = "INTERRUPTED"
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous)
            if not PipelineState.is_terminal(result.state):
                with contextlib.suppress(Exception):
                    result.cancel()
                state = f"{state} (cancelled)"
    return {
        "run_id": run_id,
        "runner": request.runner,
        "flink_master": request.flink_master if request.runner != "dataflow" else None,
        "source": request.source,
        "sink": request.sink,
        "state": state,
        "error": error,
        "wall_seconds": round(time.monotonic() - started, 3),
        "services_started": services,
    }
