"""Live on Flink: end-to-end latency and throughput, against a bare-Beam baseline on the same Flink.

    python bench/live.py [--rate 100,1000] [--seconds 60] [--settle 20] [--events 30000]
                         [--json OUT] [--config examples/config.yaml]
                         [--only latency|throughput] [--kinds baseline,pipeline]
                         [--checkpoint-ms 10000] [--max-bundle-ms N]
                         [--max-bundle-size N]

Starts a real Redis, a real Kafka broker (two partitions) and, for every run,
Beam's Flink job server with ``[local]`` (an embedded mini-cluster), all on
127.0.0.1. Events are product views of 2,000 users stamped with the time they
are sent (event time = now), so the watermark follows the wall clock.

* **latency**: once the job is running and warm, events are published at
  each ``--rate`` per second (100 and 1,000) for ``--settle`` seconds (20)
  and then for ``--seconds`` more; every 10th event of those is a probe whose
  latency is the time from handing it to the producer until Redis shows it
  (the user's profile counts that many events). Prints p50, p90, p99 and max,
  and ``latency_p99_ms_at_RATE`` (the pipeline's) and
  ``latency_p99_ratio_at_RATE`` (pipeline / baseline) per rate.
* **throughput**: ``--events`` events are published first, then the job
  starts; the rate is events over the time from the first profile write to the
  last event counted in Redis (``events_per_s``, ``second_half_events_per_s``).
  Then as many events again are published at once to the running job:
  ``warm_events_per_s`` (see ``throughput``). At parallelism 1 (the job's
  workers in its process) and 2 (a worker pool, a Python process per slot):
  ``throughput_ratio_pN`` (cold) and ``warm_throughput_ratio_pN``.

Each job runs in a process of its own (its LOOPBACK SDK worker with it, as
under ``microtarget run``); the producer and the Redis polling run in the
bench's process, so they do not share the job's interpreter lock.

The pipeline runs ``--config`` (the full example config by default: patterns,
rule segments and the online models; every user consents, as the events say
nothing of consent).

The **baseline** is the least a Beam job on the same runner does with the same
input: the same Kafka read (``transforms.kafka.ReadFromKafkaTopic``), JSON
decode, and one Redis ``INCR`` per event, which is what the probes wait
for. Every figure is printed for both, with the ratio pipeline / baseline.
The machine is shared and noisy: compare runs made side by side, not across
days.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

USERS = 2000
PROBE_EVERY = 10


def _event(i: int, now_ms: int) -> dict:
    return {
        "event_id": f"e{i}-{uuid.uuid4().hex[:6]}",
        "user_id": f"u{i % USERS}",
        "event_type": "product_view",
        "timestamp": now_ms,
        "product_id": f"p{i % 997}",
        "category": f"c{i % 23}",
        "price": 19.99,
    }


class _Counts:
    """What Redis shows per user: the pipeline's profile event count, or the baseline's counter."""

    def __init__(self, client, namespace: str, baseline: bool):
        from models.privacy import pseudonym
        from pipelines.keys import KeySource

        self.client = client
        self.namespace = namespace
        self.baseline = baseline
        self._key = KeySource("dev").load()
        self._pseudonym = pseudonym

    def key(self, user: str) -> str:
        if self.baseline:
            return f"bench:{self.namespace}:count:{user}"
        return f"mt:{self.namespace}:profile:{self._pseudonym(self._key, user)}"

    def read(self, users: list[str]) -> list[int]:
        pipe = self.client.pipeline(transaction=False)
        for user in users:
            if self.baseline:
                pipe.get(self.key(user))
            else:
                pipe.hget(self.key(user), "snapshot")
        out = []
        for raw in pipe.execute():
            if raw is None:
                out.append(0)
            elif self.baseline:
                out.append(int(raw))
            else:
                out.append(json.loads(raw)["events"])
        return out


class _BaselineCount:
    """One INCR counter per user and event (the least a job writes to Redis)."""

    def __init__(self, url: str, namespace: str):
        self._url = url
        self._namespace = namespace
        self._client = None

    def __call__(self, user: str):
        import redis

        if self._client is None:
            self._client = redis.Redis.from_url(self._url)
        self._client.incr(f"bench:{self._namespace}:count:{user}")


def _baseline_job(pipeline, bootstrap, topic, expansion, redis_url, namespace):
    import apache_beam as beam

    from transforms.kafka import ReadFromKafkaTopic

    count = _BaselineCount(redis_url, namespace)
    _ = (
        pipeline
        | "ReadKafka" >> ReadFromKafkaTopic(bootstrap, topic, expansion)
        | "User" >> beam.Map(lambda raw: json.loads(raw[3])["user_id"])
        | "Count" >> beam.Map(count)
    )


def bench_config(path: str):
    """The pipeline's config: ``path``, every user consenting unless it says otherwise."""
    from pipelines.config import load_config

    config = load_config(path)
    if "default" not in config.consent.model_fields_set:
        consent = config.consent.model_copy(update={"default": "granted"})
        config = config.model_copy(update={"consent": consent})
    return config


def _start_job(kind, env, topic, namespace, parallelism, work, tuning):
    """Submit the pipeline (or the baseline) on Flink [local]; returns (result, stop)."""
    import contextlib

    import apache_beam as beam

    from pipelines.keys import KeySource
    from runners import live
    from runners.local.flink import ExpansionService, FlinkJobServer, WorkerPool

    stack = contextlib.ExitStack()
    expansion = stack.enter_context(ExpansionService(work))
    server = stack.enter_context(FlinkJobServer(work))
    args = [f"--max_bundle_time_mills={tuning['bundle_ms']}"] if tuning["bundle_ms"] else []
    if tuning["bundle_size"]:
        args.append(f"--max_bundle_size={tuning['bundle_size']}")
    if parallelism > 1:
        pool = stack.enter_context(WorkerPool(work))
        args += ["--environment_type=EXTERNAL", f"--environment_config={pool.endpoint}"]
    request = live.RunRequest(
        source=f"kafka://{env['bootstrap']}/{topic}",
        redis_url=env["redis"],
        namespace=namespace,
        parallelism=parallelism,
        config=bench_config(tuning["config"]),
        key_source=KeySource("dev"),
        dead_letters_dir=str(work / "dead"),
        beam_args=args,
        checkpoint_interval_ms=tuning["checkpoint_ms"],
        worker_pool=parallelism > 1,
    )
    options = live._options(request, server.endpoint, work)
    pipeline = beam.Pipeline(options=options)
    if kind == "baseline":
        _baseline_job(
            pipeline, env["bootstrap"], topic, expansion.endpoint, env["redis"], namespace
        )
    else:
        source = (env["bootstrap"], topic)
        live.build(pipeline, request, source, None, expansion.endpoint, uuid.uuid4().hex[:8])
    result = pipeline.run()

    def stop():
        with contextlib.suppress(Exception):
            result.cancel()
        stack.close()

    return result, stop


def _job_main(spec: str) -> int:
    """``--job-process SPEC``: submit the job SPEC names, say ``ready``, run until SIGTERM."""
    import signal

    args = json.loads(spec)
    args["work"] = Path(args["work"])
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    _, stop = _start_job(**args)
    print("ready", flush=True)
    os.dup2(2, 1)  # nobody reads the pipe any more: what the job prints goes to its log
    stopping.wait()
    stop()
    return 0


def _run_job(kind, env, topic, namespace, parallelism, work, tuning):
    """Start the job in a process of its own; returns what stops it (by its PID).

    With LOOPBACK workers the job's Python SDK worker lives in the process
    that submits it. The producer and the Redis polling stay here: in the job's
    process they held its interpreter lock (py-spy with ``--gil``: the polling
    alone took 28% of it with the full config, much less with the baseline's
    plain counters), which measured the harness as much as the job.
    """
    import subprocess

    work.mkdir(parents=True, exist_ok=True)
    spec = {
        "kind": kind,
        "env": env,
        "topic": topic,
        "namespace": namespace,
        "parallelism": parallelism,
        "work": str(work),
        "tuning": tuning,
    }
    log = open(work / "job.log", "w")  # noqa: SIM115 (closed by stop)
    child = subprocess.Popen(
        [sys.executable, __file__, "--job-process", json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    if child.stdout.readline().strip() != "ready":
        child.wait()
        log.close()
        raise RuntimeError(f"the {kind} job's process exited with {child.returncode}: {work}")

    def stop():
        child.terminate()  # SIGTERM: the job is cancelled and its servers stop
        try:
            child.wait(120)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        log.close()

    return stop


def _producer(bootstrap):
    from confluent_kafka import Producer

    return Producer({"bootstrap.servers": bootstrap, "linger.ms": 1, "log_level": 3})


def _send(producer, topic, event):
    from transforms.kafka import produce

    produce(
        producer,
        topic,
        key=event["user_id"].encode(),
        value=json.dumps(event).encode(),
        timestamp=event["timestamp"],
    )


def latency(
    kind: str, env: dict, rate: float, seconds: float, work: Path, tuning: dict, settle: float
) -> dict:
    """Probes' publish-to-Redis latency at a fixed rate (ms), after ``settle`` s at that rate.

    The settling keeps the job's start out of the figures: the first checkpoint
    falls while the job works through the warm-up's burst, and took 6.5 s there
    (steady ones: 0.2 to 0.3 s at 100 events/s), which alone made the p99.
    """
    import redis

    from runners.kafka_cmd import ensure_topic

    topic = f"lat-{kind}-{uuid.uuid4().hex[:6]}"
    namespace = f"lat{uuid.uuid4().hex[:6]}"
    ensure_topic(env["bootstrap"], topic, 2)
    client = redis.Redis.from_url(env["redis"])
    counts = _Counts(client, namespace, kind == "baseline")
    stop = _run_job(kind, env, topic, namespace, 1, work, tuning)
    producer = _producer(env["bootstrap"])
    sent: dict[str, int] = {}
    try:
        # Warm up: one event per user, until Redis shows them all.
        for i in range(USERS):
            _send(producer, topic, _event(i, int(time.time() * 1000)))
            sent[f"u{i}"] = 1
        producer.flush()
        deadline = time.monotonic() + 300
        users = [f"u{i}" for i in range(USERS)]
        while time.monotonic() < deadline and min(counts.read(users)) < 1:
            time.sleep(0.5)
        pending: list[tuple[str, int, float]] = []
        latencies: list[float] = []
        lock = threading.Lock()
        done = threading.Event()

        def poll():
            while not done.is_set() or pending:
                with lock:
                    batch = list(pending)
                if batch:
                    seen = counts.read([user for user, _, _ in batch])
                    now = time.monotonic()
                    with lock:
                        for (user, want, at), have in zip(batch, seen):
                            if have >= want:
                                latencies.append((now - at) * 1000)
                                pending.remove((user, want, at))
                if done.is_set() and time.monotonic() > stop_at:
                    break
                time.sleep(0.005)

        stop_at = float("inf")
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        started = time.monotonic()
        unprobed = int(rate * settle)
        total = unprobed + int(rate * seconds)
        for n in range(total):
            due = started + n / rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            i = USERS + n
            event = _event(i, int(time.time() * 1000))
            user = event["user_id"]
            sent[user] = sent.get(user, 0) + 1
            _send(producer, topic, event)
            producer.poll(0)
            if n >= unprobed and n % PROBE_EVERY == 0:
                with lock:
                    pending.append((user, sent[user], time.monotonic()))
        producer.flush()
        stop_at = time.monotonic() + 60
        done.set()
        poller.join(90)
        lost = len(pending)
    finally:
        stop()
        client.close()
    latencies.sort()

    def pct(q):  # None when no probe came through (the job fell too far behind)
        if not latencies:
            return None
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1)

    return {
        "kind": kind,
        "rate": rate,
        "seconds": seconds,
        "settle_s": settle,
        "probes": len(latencies),
        "probes_unseen": lost,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": pct(1.0),
        "mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
    }


def _drain(
    counts, expected: dict, events: int, kind: str, start: float | None, base: dict | None = None
) -> dict:
    """Poll Redis until every user shows ``expected``; the rate of the ``events`` sent since.

    ``base``: what each user showed before those events (all its earlier ones).
    The rate counts from ``start``, or (None) from when the first event showed;
    the second half's, from when half of them had.
    """
    users = list(expected)
    base = base or dict.fromkeys(users, 0)  # what the users showed before these events
    first = half = None
    seen = complete = half_seen = 0
    deadline = time.monotonic() + 1200
    while users and time.monotonic() < deadline:
        # It reads only users still short of their events and, while the job is far from
        # done, once a second.
        partial, short = 0, []
        for user, n in zip(users, counts.read(users), strict=True):
            if n >= expected[user]:
                complete += expected[user] - base[user]
            else:
                short.append(user)
                partial += n - base[user]
        users, seen = short, complete + partial
        if seen and first is None:
            first = time.monotonic()
        if seen >= events // 2 and half is None:
            half, half_seen = time.monotonic(), seen
        if users:
            near = first is None or seen >= 0.9 * events or kind == "baseline"
            time.sleep(0.25 if near else 1.0)
    finished = time.monotonic()
    origin = first if start is None else start
    return {
        "counted": seen,
        "first": first,
        "seconds": round(finished - origin, 2) if origin else None,
        "events_per_s": round(seen / (finished - origin), 1) if origin else 0.0,
        "second_half_events_per_s": (
            round((seen - half_seen) / (finished - half), 1)
            if half is not None and finished > half
            else None
        ),
    }


def throughput(
    kind: str, env: dict, events: int, parallelism: int, work: Path, tuning: dict
) -> dict:
    """Events per second through a backlog of ``events``, cold and then warm.

    * cold: the events are published before the job starts; the rate counts
      from the first profile write to the last event counted. It includes the
      runner's own warm-up: the JVM compiles the Flink and Beam code it runs
      for the first minutes (its JIT compiler took 68% of a core 60 s into a
      run with the full config), and the job's first checkpoint;
    * warm: once the cold backlog is through, the same number of events more
      is published at once (faster than either job takes them, so a backlog
      builds up) and the rate counts from the first of them counted to the
      last (``warm_first_s``: how long after publishing began the first one
      showed). This is the rate of a job that has been running a while.
    """
    import redis

    from runners.kafka_cmd import ensure_topic

    topic = f"tp-{kind}-{uuid.uuid4().hex[:6]}"
    namespace = f"tp{uuid.uuid4().hex[:6]}"
    ensure_topic(env["bootstrap"], topic, 2)
    producer = _producer(env["bootstrap"])
    now = int(time.time() * 1000)
    for i in range(events):
        _send(producer, topic, _event(i, now - events + i))
    producer.flush()
    client = redis.Redis.from_url(env["redis"])
    counts = _Counts(client, namespace, kind == "baseline")
    users = [f"u{i}" for i in range(USERS)]
    submitted = time.monotonic()
    stop = _run_job(kind, env, topic, namespace, parallelism, work, tuning)
    expected = {user: events // USERS + (i < events % USERS) for i, user in enumerate(users)}
    try:
        cold = _drain(counts, expected, events, kind, None)
        # Later in event time than everything before, so nothing is late.
        now = max(int(time.time() * 1000), now + 1)
        started = time.monotonic()
        for i in range(events, 2 * events):
            _send(producer, topic, _event(i, now + i - events))
            producer.poll(0)
        producer.flush()
        published = time.monotonic() - started
        # From the first of them counted, as cold: a job idle a moment takes a few seconds
        # to poll Kafka again (the bare job too), which is latency, not throughput.
        warm = _drain(counts, {u: 2 * n for u, n in expected.items()}, events, kind, None, expected)
    finally:
        stop()
        client.close()
    return {
        "kind": kind,
        "parallelism": parallelism,
        "events": events,
        "counted": cold["counted"],
        "startup_s": round(cold["first"] - submitted, 1) if cold["first"] else None,
        "seconds": cold["seconds"],
        "events_per_s": cold["events_per_s"],
        "second_half_events_per_s": cold["second_half_events_per_s"],
        "warm_counted": warm["counted"],
        "warm_publish_s": round(published, 2),
        "warm_seconds": warm["seconds"],
        "warm_events_per_s": warm["events_per_s"],
        "warm_first_s": round(warm["first"] - started, 1) if warm["first"] else None,
    }


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--job-process"]:
        return _job_main(argv[1])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rate", default="100,1000", help="latency runs: events per second, e.g. 100,1000"
    )
    parser.add_argument(
        "--config",
        default=str(ROOT / "examples" / "config.yaml"),
        help="the pipeline's config (default: the full example config)",
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--settle",
        type=float,
        default=20.0,
        help="seconds at the rate before the first probe (the job's start and first checkpoint)",
    )
    parser.add_argument("--events", type=int, default=30000)
    parser.add_argument("--only", choices=["latency", "throughput"], default=None)
    parser.add_argument("--parallelism", default="1,2", help="throughput runs, e.g. 1,2")
    parser.add_argument("--kinds", default="baseline,pipeline", help="which jobs to run")
    parser.add_argument(
        "--checkpoint-ms", type=int, default=10_000, help="Flink checkpoint interval (ms)"
    )
    parser.add_argument(
        "--max-bundle-ms",
        type=int,
        default=0,
        help="Beam's --max_bundle_time_mills for both jobs (0: the live job's default, 50)",
    )
    parser.add_argument(
        "--max-bundle-size",
        type=int,
        default=0,
        help="Beam's --max_bundle_size for both jobs (0: the runner's default, 1000)",
    )
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    kinds = [k for k in ("baseline", "pipeline") if k in args.kinds.split(",")]
    tuning = {
        "checkpoint_ms": args.checkpoint_ms,
        "bundle_ms": args.max_bundle_ms,
        "bundle_size": args.max_bundle_size,
        "config": args.config,
    }
    bench_config(args.config)  # a bad config fails now, not after the servers start

    from runners.local.kafka_broker import KafkaServer
    from runners.local.redis_server import RedisServer

    report: dict = {"latency": [], "throughput": []}
    with tempfile.TemporaryDirectory(prefix="mt-bench-live-") as tmp:
        work = Path(tmp)
        with RedisServer(work / "redis") as redis_server, KafkaServer(work / "kafka") as kafka:
            env = {"redis": redis_server.url, "bootstrap": kafka.bootstrap}
            if args.only in (None, "latency"):
                for rate in [float(r) for r in args.rate.split(",")]:
                    for kind in kinds:
                        row = latency(
                            kind,
                            env,
                            rate,
                            args.seconds,
                            work / f"lat-{kind}-{rate:g}",
                            tuning,
                            args.settle,
                        )
                        row["rate"] = rate
                        print(json.dumps(row), flush=True)
                        report["latency"].append(row)
            if args.only in (None, "throughput"):
                for parallelism in [int(p) for p in args.parallelism.split(",")]:
                    for kind in kinds:
                        folder = work / f"tp-{kind}-{parallelism}"
                        row = throughput(kind, env, args.events, parallelism, folder, tuning)
                        print(json.dumps(row), flush=True)
                        report["throughput"].append(row)
    for rate in sorted({r["rate"] for r in report["latency"]}):
        by = {r["kind"]: r for r in report["latency"] if r["rate"] == rate}
        mine, bare = by.get("pipeline"), by.get("baseline")
        if mine:
            report[f"latency_p99_ms_at_{rate:g}"] = mine["p99_ms"]
        if mine and bare and mine["p99_ms"] and bare["p99_ms"]:
            report[f"latency_p99_ratio_at_{rate:g}"] = round(mine["p99_ms"] / bare["p99_ms"], 2)
    for parallelism in (1, 2):
        rows = {r["kind"]: r for r in report["throughput"] if r["parallelism"] == parallelism}
        if len(rows) == 2 and rows["baseline"]["events_per_s"]:
            report[f"throughput_ratio_p{parallelism}"] = round(
                rows["pipeline"]["events_per_s"] / rows["baseline"]["events_per_s"], 3
            )
            if rows["baseline"]["warm_events_per_s"]:
                report[f"warm_throughput_ratio_p{parallelism}"] = round(
                    rows["pipeline"]["warm_events_per_s"] / rows["baseline"]["warm_events_per_s"],
                    3,
                )
    figures = {
        k: v for k, v in report.items() if k.startswith(("latency_", "throughput_", "warm_"))
    }
    print(json.dumps(figures))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
