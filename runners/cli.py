"""The ``microtarget`` command line.

``replay`` runs recorded files through the pipeline into Redis (in batch, or
``--streaming`` through a TestStream), ``profile`` prints one user's profile,
``triggers`` prints the published triggers, ``erase`` erases users from Redis,
``pseudonym`` prints the pseudonym an id is stored under, ``import`` and
``generate`` make event files, ``redis`` manages the embedded Redis that ``replay`` starts when no
``--redis`` URL is given.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
from pathlib import Path

from models.durations import parse_duration
from pipelines.config import ConfigError, load_config
from runners import DEFAULT_HOME, generate_cmd, import_cmd, kafka_cmd

EMBEDDED_DIR = DEFAULT_HOME / "redis"


def _redis_url(args) -> str:
    if args.redis:
        from redis.connection import parse_url

        from transforms.redis_sink import redact_url

        try:
            parse_url(args.redis)
        except ValueError:
            # The parser's message may quote a piece of the password: say only what is wrong.
            print(
                f"error: --redis {redact_url(args.redis)} is not a valid redis:// or rediss:// "
                "URL (percent-encode / ? # @ in the user and password)",
                file=sys.stderr,
            )
            raise SystemExit(2) from None
        return args.redis
    from runners.local.redis_server import ensure_embedded

    url = ensure_embedded(EMBEDDED_DIR)
    port = url.rsplit(":", 1)[1].split("/", 1)[0]
    print(
        f"embedded Redis: {url} (data in {EMBEDDED_DIR}/; connect with "
        f"`redis-cli -p {port}`; stop with `microtarget redis stop`)",
        file=sys.stderr,
    )
    return url


def _key_source(args):
    """The pseudonym key's source from the flags and environment, or None (error printed)."""
    from pipelines.keys import PseudonymKeyError, resolve

    try:
        return resolve(args.pseudonym_key_file, args.insecure_dev_key)
    except PseudonymKeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _user_key(args, key: bytes, user: str) -> str:
    """The key a user's data is stored under: the pseudonym of a raw id (see models.privacy)."""
    from models.privacy import pseudonym

    if args.pseudonymized:
        return user
    if args.anonymous:
        return "anon:" + pseudonym(key, user)
    return pseudonym(key, user)


def _config_and_key(args):
    """The config and the pseudonym key source, or None after printing what is wrong."""
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    source = _key_source(args)
    return None if source is None else (config, source)


def _quiet_step_failures(args) -> None:
    """Without --verbose, a failing step's traceback is not logged as well as raised.

    The failure still surfaces: as one line when it is Redis's, else as the traceback.
    """
    if not args.verbose:
        logging.getLogger("apache_beam.runners.common").setLevel(logging.CRITICAL)


def _replay(args) -> int:
    _quiet_step_failures(args)
    found = _config_and_key(args)
    if found is None:
        return 2
    config, source = found
    from pipelines.summary import format_summary, verdict
    from runners import replay

    request = replay.ReplayRequest.from_args(
        args,
        redis_url=_redis_url(args),
        namespace=args.namespace,
        config=config,
        streaming=args.streaming,
        watermark_step_ms=args.watermark_step,
        key_source=source,
        runner=args.runner,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
    )
    try:
        summary = replay.run(request)
    except replay.InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        lost = redis_failure(exc, request.redis_url)
        if lost is None or args.verbose:
            raise
        print(f"error: {lost}", file=sys.stderr)
        return 1
    if args.summary_json:
        # Before printing: a reader that went away (| head) must not cost the file.
        path = Path(args.summary_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"replayed {', '.join(args.files)} into namespace {args.namespace!r}")
    print(format_summary(summary))
    if summary.get("dead_letters"):
        print(f"dead letters: {args.dead_letters}/", file=sys.stderr)
    said = replay.hint(summary, config)
    if said:
        print(said, file=sys.stderr)
    failed = verdict(summary, args.max_invalid_share)
    if failed:
        print(f"error: {failed}", file=sys.stderr)
        return 1
    return 0


def redis_failure(exc: BaseException, url: str) -> str | None:
    """One line for a job that failed because its Redis went away or refused, or None.

    The sink's error may come as itself (the job ran in this process) or only as
    text (a portable runner passes the worker's traceback on as a message).
    """
    import re

    from transforms.redis_sink import RedisSinkError, redact_url

    seen, cause, link = set(), None, exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, RedisSinkError):
            cause = link
            break
        link = link.__cause__ or link.__context__
    text = str(cause if cause is not None else exc)
    found = re.search(
        r"(?:writing|erasing) \d+ \w+ (?:to|at) \S+ failed(?: \(first key [^)]*\))?: (.+)", text
    )
    if cause is None and (found is None or "RedisSinkError" not in text):
        return None
    what = found.group(1) if found else text
    step = re.search(r"\[while running '([^']+)'\]", what)
    what = (what[: step.start()] if step else what).strip().rstrip(".")
    where = f" in step {step.group(1)}" if step else ""
    return (
        f"Redis at {redact_url(url)} failed{where}: {what}. Every write is idempotent, so "
        "running the same replay again once Redis is back is safe (--verbose shows the "
        "traceback)."
    )


def _run(args) -> int:
    found = _config_and_key(args)
    if found is None:
        return 2
    config, source = found
    from pipelines.summary import format_summary
    from runners import live, replay

    request = live.RunRequest(
        source=args.source,
        redis_url=_redis_url(args),
        runner=args.runner,
        flink_master=args.flink_master,
        parallelism=args.parallelism,
        worker_pool=args.worker_pool,
        checkpoint_interval_ms=args.checkpoint_interval,
        sink=args.sink,
        namespace=args.namespace,
        config=config,
        dead_letters_dir=args.dead_letters,
        group_id=args.group_id or "",
        duration_s=args.duration / 1000 if args.duration else None,
        job_endpoint=args.job_endpoint,
        expansion_service=args.expansion_service,
        beam_args=args.beam_args,
        key_source=source,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
    )
    try:
        summary = live.run(request)
    except replay.InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    error = summary.pop("error")
    print(format_summary(summary))
    if error:
        print(f"error: the job failed: {error[-2000:]}", file=sys.stderr)
        return 1
    return 0


def _user_and_client(args):
    """The user's key (pseudonymized as the job does) and a client, or None when no key."""
    import redis

    source = _key_source(args)
    if source is None:
        return None
    user = _user_key(args, source.load(), args.user)
    return user, redis.Redis.from_url(_redis_url(args))


def _profile(args) -> int:
    from transforms.redis_sink import read_profile

    found = _user_and_client(args)
    if found is None:
        return 2
    user, client = found
    snapshot = read_profile(client, args.namespace, user)
    if snapshot is None:
        print(f"no profile for that user in namespace {args.namespace!r}", file=sys.stderr)
        return 1
    from transforms.redis_sink import key

    scores = client.hgetall(key(args.namespace, "scores", user))
    if scores:
        snapshot["scores"] = _scores({k.decode(): v.decode() for k, v in scores.items()})
    print(json.dumps(snapshot if args.json else readable(snapshot), indent=2, sort_keys=True))
    return 0


def _scores(fields: dict[str, str]) -> dict:
    """The scores hash (``MODEL``, ``MODEL:version``, ``MODEL:at``) as numbers by model.

    >>> _scores({"churn": "0.5", "churn:version": "2", "churn:at": "1700000000000"})
    {'churn': {'score': 0.5, 'version': '2', 'at': 1700000000000}}
    """
    found: dict[str, dict] = {}
    for name, value in fields.items():
        model, _, part = name.partition(":")
        entry = found.setdefault(model, {})
        if part == "at":
            entry["at"] = int(value)
        elif part:
            entry[part] = value
        else:
            # A recommender's score is the user's list, as JSON.
            entry["score"] = json.loads(value) if value.startswith("[") else float(value)
    return dict(sorted(found.items()))


def _recommend(args) -> int:
    from transforms.redis_sink import key

    user_client = _user_and_client(args)
    if user_client is None:
        return 2
    user, client = user_client
    stored = client.hget(key(args.namespace, "scores", user), "recommendations")
    if stored is not None:
        found = {"user": user, "personalized": True, "items": json.loads(stored)}
    else:
        summaries = [
            client.hget(key(args.namespace, "model", name), "summary")
            for name in ["recommendations", *(f"recommendations:{k}" for k in range(64))]
        ]
        popular = next((json.loads(raw)["popular"] for raw in summaries if raw), None)
        if popular is None:
            print(
                f"no recommendations in namespace {args.namespace!r} (is the recommendations "
                "model enabled in models.enabled?)",
                file=sys.stderr,
            )
            return 1
        # No consent to personalization, or no click yet: the shop's most clicked items.
        items = [{"item": item, "reason": "popular", "because": None} for item in popular]
        found = {"user": user, "personalized": False, "items": items}
    if args.json:
        print(json.dumps(found, indent=2, sort_keys=True))
        return 0
    if not found["personalized"]:
        print(
            "no personalized list for this user (no consent to personalization, or no "
            "click yet): the most clicked items"
        )
    for rank, entry in enumerate(found["items"], 1):
        print(f"{rank:>3}. {entry['item']:<24} {_why(entry)}")
    return 0


def _similar(args) -> int:
    import redis

    from transforms.redis_sink import key

    client = redis.Redis.from_url(_redis_url(args))
    stored = {
        name.decode(): value.decode()
        for name, value in client.hgetall(key(args.namespace, "similar", args.product)).items()
    }
    client.close()
    # One list per model (per copy when the model runs as shards), with its :version and :at.
    lists = {
        name: json.loads(value)
        for name, value in stored.items()
        if not name.endswith((":version", ":at"))
    }
    if not lists:
        print(
            f"no similar items of {args.product!r} in namespace {args.namespace!r} (never "
            "clicked, or the recommendations model is off or a popularity list)",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps({"product": args.product, "similar": lists}, indent=2, sort_keys=True))
        return 0
    for name, entries in sorted(lists.items()):
        print(f"{name} (as of {iso(int(stored[name + ':at']))}):")
        for rank, entry in enumerate(entries, 1):
            print(f"{rank:>3}. {entry['item']:<24} {entry['score']:.4f}")
    return 0


def _why(entry: dict) -> str:
    """A reason a shop can show.

    >>> _why({"reason": "viewed", "because": "p1"}), _why({"reason": "popular"})
    ('because you viewed p1', 'popular now')
    """
    reason = entry.get("reason")
    if reason == "viewed":
        return f"because you viewed {entry['because']}"
    if reason == "session":
        return "you viewed it in this visit"
    return "popular now"


# Fields of a profile snapshot (and its scores) that hold event times in epoch ms.
TIME_FIELDS = frozenset(
    {"first_seen", "last_seen", "start", "end", "last", "window_start", "window_end", "at"}
)


def iso(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 in UTC.

    >>> iso(1710062061358)
    '2024-03-10T09:14:21.358Z'
    """
    from datetime import UTC, datetime

    at = datetime.fromtimestamp(ms / 1000, UTC)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def readable(value, field: str = ""):
    """A profile with its event times (and segment join times) in ISO 8601.

    >>> readable({"last_seen": 0, "segments": {"buyers": 1000}, "events": 3})["segments"]
    {'buyers': '1970-01-01T00:00:01.000Z'}
    """
    if isinstance(value, dict):
        if field == "segments":
            return {name: iso(at) for name, at in value.items()}
        return {name: readable(item, name) for name, item in value.items()}
    if field in TIME_FIELDS and isinstance(value, int) and not isinstance(value, bool):
        return iso(value)
    return value


def _triggers(args) -> int:
    import redis

    from transforms.redis_sink import key
    from transforms.triggers import read_triggers

    client = redis.Redis.from_url(_redis_url(args))
    after, shown = "-", 0
    if not args.json:
        print(f"{'time (UTC)':<19}  {'pattern':<20} {'user':<21} keys")
    try:
        while True:
            batch = read_triggers(client, args.namespace, after, count=1000)
            for entry_id, payload in batch:
                print(payload if args.json else _trigger_line(json.loads(payload)), flush=True)
                after, shown = entry_id, shown + 1
            if batch:
                continue
            if not args.follow:
                break
            # Block until something new is appended (XREAD wakes us), then read it.
            stream = key(args.namespace, "topic", "triggers")
            client.xread({stream: "0-0" if after == "-" else after}, count=1, block=5000)
    except KeyboardInterrupt:
        pass
    except redis.exceptions.RedisError as exc:
        from transforms.redis_sink import redact_url

        print(
            f"error: reading triggers from {redact_url(_redis_url(args))}: {exc}", file=sys.stderr
        )
        return 1
    if not args.json:
        print(f"{shown} triggers in namespace {args.namespace!r}", file=sys.stderr)
    return 0


def _erase(args) -> int:
    import time

    import redis

    from transforms.erasure import SCRIPT, erase_users
    from transforms.redis_sink import RedisSinkError, connect, redact_url

    found = _config_and_key(args)
    if found is None:
        return 2
    config, source = found
    key = source.load()
    now = int(time.time() * 1000)
    erasures = [
        {
            "user_id": _user_key(args, key, user),
            "requested_at": now,
            "reason": "erasure_requested",
            "event_id": args.reference,
        }
        for user in args.users
    ]
    url = _redis_url(args)
    client = connect(url)
    try:
        audits = erase_users(
            client,
            client.register_script(SCRIPT),
            args.namespace,
            erasures,
            config.redis.ttl_seconds()["erased"],
            url,
        )
    except (RedisSinkError, redis.exceptions.RedisError) as exc:
        print(f"error: erasing at {redact_url(url)}: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    for audit in audits:
        print(
            f"erased subject {audit['subject'][:16]}: {audit['keys_deleted']} keys, "
            f"{audit['memberships_removed']} segment memberships, "
            f"{audit['log_entries_removed']} log entries, "
            f"{audit['stream_entries_removed']} stream entries"
        )
    print(
        f"{len(audits)} erasures in namespace {args.namespace!r}, audited in "
        f"mt:{args.namespace}:audit:erasures. A running pipeline still holds these users' "
        "state: send it an erasure_requested event for each to clear it (until then, "
        "the tombstone keeps its older data out of Redis).",
        file=sys.stderr,
    )
    return 0


def _replaying(command: str):
    """A command that replays files (``runners.COMMAND_cmd.run``): config and key first,
    a lost Redis said in one line."""

    def run(args) -> int:
        _quiet_step_failures(args)
        found = _config_and_key(args)
        if found is None:
            return 2
        config, source = found
        module = importlib.import_module(f"runners.{command}_cmd")
        url = _redis_url(args)
        try:
            return module.run(args, url, config, source)
        except Exception as exc:
            lost = redis_failure(exc, url)
            if lost is None or args.verbose:
                raise
            print(f"error: {lost}", file=sys.stderr)
            return 1

    return run


def _pseudonym(args) -> int:
    from models import privacy

    source = _key_source(args)
    if source is None:
        return 2
    key = source.load()
    for value in args.values:
        if args.kind == "email":
            print(privacy.pseudonym(key, privacy.normalize_email(value)))
        elif args.kind == "phone":
            print(privacy.pseudonym(key, privacy.normalize_phone(value)))
        elif args.kind == "anonymous":
            print("anon:" + privacy.pseudonym(key, value))
        else:
            print(privacy.pseudonym(key, value))
    return 0


def _trigger_line(trigger: dict) -> str:
    from datetime import UTC, datetime

    at = datetime.fromtimestamp(trigger["event_time"] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    keys = " ".join(
        f"{k}={iso(int(v)) if k == 'session_start' else v}"
        for k, v in sorted(trigger["keys"].items())
    )
    user = trigger["user_id"]
    user = user[:21] if user.startswith("anon:") else user[:16]
    return f"{at}  {trigger['pattern']:<20} {user:<21} {keys}".rstrip()


def _duration(text: str) -> int:
    try:
        millis = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if millis <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return millis


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _flink(args) -> int:
    from runners.local import flink_cluster

    directory = DEFAULT_HOME / "flink-cluster"
    if args.action == "down":
        print("stopped" if flink_cluster.stop_embedded(directory) else "not running")
        return 0
    if args.action == "url" and not (directory / "rest.port").exists():
        print("not running (microtarget flink up starts it)", file=sys.stderr)
        return 1
    rest = flink_cluster.ensure_embedded(directory)
    print(f"Flink cluster: http://{rest} (submit with: microtarget run --flink-master {rest} ...)")
    return 0


def _redis(args) -> int:
    from runners.local.redis_server import ensure_embedded, stop_embedded

    if args.action == "stop":
        stopped = stop_embedded(EMBEDDED_DIR)
        print(
            f"embedded Redis stopped; its data is saved in {EMBEDDED_DIR}/dump.rdb and "
            "loaded when it starts again"
            if stopped
            else "embedded Redis was not running"
        )
    else:
        print(ensure_embedded(EMBEDDED_DIR))
    return 0


def _add_redis_flags(parser: argparse.ArgumentParser, namespace_help: str = "") -> None:
    parser.add_argument(
        "--redis",
        default=None,
        help="redis:// or rediss:// URL (user and password may be in it); "
        "default: the embedded Redis in .microtarget/redis",
    )
    parser.add_argument(
        "--namespace",
        default="default",
        help=namespace_help or "key namespace: keys are mt:NS:... (default: %(default)s)",
    )


def _add_replaying_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of a command that replays files (``_replaying``) besides its own."""
    parser.add_argument(
        "--dead-letters",
        default=str(DEFAULT_HOME / "dead-letters"),
        help="folder for dead-letter JSON lines (default: %(default)s)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress line (it shows only on a terminal)"
    )
    parser.add_argument(
        "--verbose", action="store_true", help="show the whole traceback when the job fails"
    )
    _add_key_flags(parser)


def _add_metrics_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve the job's metrics for Prometheus on http://HOST:PORT/metrics while it "
        "runs (default: off)",
    )
    parser.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="the address the metrics are served on (default: %(default)s; 0.0.0.0: all)",
    )


def _add_key_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pseudonym-key-file",
        default=None,
        help="file holding the pseudonym key (else $MICROTARGET_PSEUDONYM_KEY)",
    )
    parser.add_argument(
        "--insecure-dev-key",
        action="store_true",
        help="use the public development key (demos and tests only: it protects nothing)",
    )


def _add_user_flags(parser: argparse.ArgumentParser) -> None:
    _add_key_flags(parser)
    parser.add_argument(
        "--anonymous", action="store_true", help="the ids are anonymous ids, not user ids"
    )
    parser.add_argument(
        "--pseudonymized",
        action="store_true",
        help="the ids are already pseudonyms (as stored in Redis)",
    )


def quiet_beam_notices() -> None:
    """Beam logs about Google Cloud clients and empty output shards on every run."""
    from pipelines import NOTICES

    for handler in logging.getLogger().handlers:
        handler.addFilter(NOTICES)


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``microtarget``."""
    top = argparse.ArgumentParser(
        prog="microtarget", description="Real-time micro-targeted personalization on Apache Beam."
    )
    sub = top.add_subparsers(dest="command", required=True)

    replay = sub.add_parser(
        "replay",
        help="replay recorded event files into Redis (batch)",
        epilog="Beam pipeline flags go after a bare `--`, e.g. -- --runner=FnApiRunner",
    )
    replay.add_argument("files", nargs="+", help="Avro or JSON lines files; globs allowed")
    _add_redis_flags(replay)
    replay.add_argument("--config", default=None, help="YAML config (see examples/config.yaml)")
    replay.add_argument(
        "--dead-letters",
        default=str(DEFAULT_HOME / "dead-letters"),
        help="folder for dead-letter JSON lines (default: %(default)s)",
    )
    replay.add_argument("--summary-json", default=None, help="write the run summary as JSON here")
    replay.add_argument(
        "--quiet", action="store_true", help="no progress line (it shows only on a terminal)"
    )
    replay.add_argument(
        "--verbose", action="store_true", help="show the whole traceback when the job fails"
    )
    replay.add_argument(
        "--max-invalid-share",
        type=_share,
        default=None,
        metavar="SHARE",
        help="fail (exit 1) when more than this share of the records is invalid, "
        "e.g. 0.01 (default: off; a replay where nothing is valid always fails)",
    )
    replay.add_argument(
        "--streaming",
        action="store_true",
        help="drive the files through a TestStream in event-time order, the watermark "
        "advancing as in a live run (slower; same final state and triggers)",
    )
    replay.add_argument(
        "--runner",
        choices=("fnapi", "prism", "direct"),
        default=None,
        help="Beam's local runner: fnapi (batch; the default), direct (the bundle-based "
        "DirectRunner, streaming; the default there) or prism (Beam's portable runner, "
        "batch; built by `make prism`). All give the same final state",
    )
    replay.add_argument(
        "--watermark-step",
        type=_duration,
        default="1h",
        help="with --streaming: event time between watermark advances (default: 1h)",
    )
    _add_key_flags(replay)
    _add_metrics_flags(replay)
    replay.set_defaults(func=_replay)

    run = sub.add_parser(
        "run",
        help="run live: read a Kafka topic on Flink (or Dataflow), write Redis and a topic",
        description="Runs the replay's graph on a Kafka topic, live, on Flink (a local "
        "mini-cluster or a cluster's REST address), a running Beam job server, or Dataflow; "
        "writes Redis as a replay does and, with --sink, mirrors triggers and segment changes "
        "to a Kafka topic. Ctrl-C cancels the job.",
        epilog="Beam pipeline flags go after a bare `--`, e.g. -- --environment_type=EXTERNAL",
    )
    run.add_argument(
        "--source",
        required=True,
        metavar="kafka://HOST:PORT/TOPIC",
        help="the Kafka topic of events to read",
    )
    run.add_argument(
        "--runner",
        choices=["flink", "portable", "dataflow"],
        default="flink",
        help="flink: start Beam's Flink job server here and submit to --flink-master; "
        "portable: submit to a running job server (--job-endpoint); dataflow: Google Cloud "
        "Dataflow (default: %(default)s)",
    )
    run.add_argument(
        "--flink-master",
        default="[local]",
        help="[local] (an embedded mini-cluster, the default) or a cluster's REST HOST:PORT",
    )
    run.add_argument(
        "--parallelism",
        type=int,
        default=1,
        help="parallel instances of each step (default: 1; above 1, use --worker-pool)",
    )
    run.add_argument(
        "--worker-pool",
        action="store_true",
        help="Python workers in processes of their own (a Beam worker pool started here), "
        "so that --parallelism above 1 uses more than one core (default: in this process)",
    )
    run.add_argument(
        "--checkpoint-interval",
        type=_duration,
        default="10s",
        help="Flink checkpoint interval (default: %(default)s)",
    )
    run.add_argument(
        "--sink",
        default=None,
        metavar="kafka://HOST:PORT/TOPIC",
        help="also publish triggers and segment changes to this Kafka topic",
    )
    _add_redis_flags(run)
    run.add_argument("--config", default=None, help="YAML config (see examples/config.yaml)")
    run.add_argument(
        "--dead-letters",
        default=str(DEFAULT_HOME / "dead-letters"),
        help="folder for dead-letter JSON lines (default: %(default)s)",
    )
    run.add_argument(
        "--group-id",
        default=None,
        help="Kafka consumer group: offsets are committed with checkpoints and a restart "
        "goes on from them (default: none, read from the earliest offset)",
    )
    run.add_argument(
        "--duration", type=_duration, default=None, help="stop after this long (e.g. 10m)"
    )
    run.add_argument(
        "--job-endpoint", default=None, help="a running Beam job server (HOST:PORT) to submit to"
    )
    run.add_argument(
        "--expansion-service",
        default=None,
        help="a running Java expansion service (HOST:PORT) for Kafka IO",
    )
    _add_metrics_flags(run)
    _add_key_flags(run)
    run.set_defaults(func=_run)

    triggers = sub.add_parser(
        "triggers",
        help="print the published triggers",
        description="Prints the triggers published on the namespace's trigger stream, "
        "oldest first: time, pattern, the user's pseudonym (first 16 characters) and the "
        "keys the pattern matched on.",
    )
    _add_redis_flags(triggers)
    triggers.add_argument("--json", action="store_true", help="one trigger object per line")
    triggers.add_argument("--follow", action="store_true", help="wait for new triggers")
    triggers.set_defaults(func=_triggers)

    profile = sub.add_parser(
        "profile",
        help="print one user's profile as JSON",
        description="Prints the stored profile snapshot with the user's scores; times in "
        "ISO 8601 (UTC). --json prints it as stored: times in epoch milliseconds.",
    )
    profile.add_argument(
        "--json", action="store_true", help="times as epoch milliseconds, as stored"
    )
    profile.add_argument("user", help="the user id (pseudonymized with the key to look it up)")
    _add_redis_flags(profile)
    _add_user_flags(profile)
    profile.set_defaults(func=_profile)

    recommend = sub.add_parser(
        "recommend",
        help="print one user's recommended products with reasons",
        description="Prints the user's list as the pipeline last served it (mt:NS:scores:USER, "
        "field recommendations) with a reason per item; for a user without one (no consent "
        "to personalization, or no click yet) the most clicked items, labelled so.",
    )
    recommend.add_argument("user", help="the user id (pseudonymized with the key to look it up)")
    recommend.add_argument("--json", action="store_true", help="the list as JSON")
    _add_redis_flags(recommend)
    _add_user_flags(recommend)
    recommend.set_defaults(func=_recommend)

    similar = sub.add_parser(
        "similar",
        help="print the products similar to one product",
        description="Prints what the recommendations model last gave as the product's similar "
        "items (mt:NS:similar:PRODUCT): the items clicked in the sessions nearest to one of "
        "the product alone, as of its last click.",
    )
    similar.add_argument("product", help="the product id")
    similar.add_argument("--json", action="store_true", help="the lists as JSON")
    _add_redis_flags(similar)
    similar.set_defaults(func=_similar)

    erase = sub.add_parser(
        "erase",
        help="erase users from Redis now: every key, segment membership and trigger",
        description="Deletes each user's keys in the namespace in one atomic step, "
        "leaves a tombstone that keeps older data from being written back, and appends "
        "an entry to the audit stream mt:NS:audit:erasures.",
    )
    erase.add_argument("users", nargs="+", help="user ids (pseudonymized with the key)")
    _add_redis_flags(erase)
    _add_user_flags(erase)
    erase.add_argument("--config", default=None, help="YAML config (for redis.ttl.erased)")
    erase.add_argument(
        "--reference", default=None, help="the request's reference, kept in the audit entry"
    )
    erase.set_defaults(func=_erase)

    evaluate = sub.add_parser(
        "evaluate",
        help="replay files and report the models' progressive metrics, segment sizes and lift",
        description="Replays the files in batch into a namespace of its own (deleted when "
        "done, unless --namespace is given) and reports each online model's progressive "
        "metrics against baselines, each rule segment's size, and the purchase lift after "
        "a segment entry or a pattern match.",
        epilog="Beam pipeline flags go after a bare `--`.",
    )
    evaluate.add_argument("files", nargs="+", help="Avro or JSON lines files; globs allowed")
    _add_redis_flags(
        evaluate,
        namespace_help="keep the replay's output in this namespace (default: a namespace "
        "of its own, deleted when the evaluation is done)",
    )
    evaluate.set_defaults(namespace=None)
    evaluate.add_argument("--config", default=None, help="YAML config (models, segments, patterns)")
    evaluate.add_argument("--json", default=None, help="write the evaluation as JSON here")
    _add_replaying_flags(evaluate)
    evaluate.set_defaults(func=_replaying("evaluate"))

    report = sub.add_parser(
        "report",
        help="replay files and write a page of what personalization did (A/B tests, segments)",
        description="Replays the files in batch into a namespace of its own (deleted when "
        "done) and writes DIR/index.html (one static page, opens offline) and "
        "DIR/report.json (every number behind it): each trigger's A/B test against its "
        "held-out users, segment members over event time with their lift, and the models' "
        "summaries.",
        epilog="Beam pipeline flags go after a bare `--`.",
    )
    report.add_argument("files", nargs="*", help="Avro or JSON lines files; globs allowed")
    report.add_argument("--out", required=True, help="folder for index.html and report.json")
    report.add_argument(
        "--from-redis",
        metavar="NS",
        default=None,
        help="no replay: what namespace NS holds (segment sizes over time, the models); "
        "the A/B tests, served intent and bias audit need FILES",
    )
    report.add_argument(
        "--redis",
        default=None,
        help="redis:// or rediss:// URL the replay writes to, in a namespace of its own "
        "deleted when done (default: the embedded Redis in .microtarget/redis)",
    )
    report.add_argument("--config", default=None, help="YAML config (patterns, segments, models)")
    _add_replaying_flags(report)
    report.set_defaults(func=_replaying("report"), namespace=None)

    pseudo = sub.add_parser(
        "pseudonym",
        help="print the pseudonyms of ids, as stored in Redis",
        description="Prints the keyed pseudonym (HMAC-SHA256 with the pseudonym key) each id "
        "is stored under, one per line.",
    )
    pseudo.add_argument("values", nargs="+", help="the raw ids")
    pseudo.add_argument(
        "--kind",
        choices=["user", "anonymous", "email", "phone"],
        default="user",
        help="what the values are: user ids, anonymous ids (stored as anon:PSEUDONYM), or "
        "e-mail addresses and phone numbers (normalized first) (default: %(default)s)",
    )
    _add_key_flags(pseudo)
    pseudo.set_defaults(func=_pseudonym)

    flink = sub.add_parser(
        "flink",
        help="a local standalone Flink cluster: start it, stop it, print its address",
        description="A standalone Flink cluster on 127.0.0.1 (one job manager, one task "
        "manager), started with Flink's own scripts from the distribution `make jvm-deps` "
        "fetched, in .microtarget/flink-cluster: `up` starts it (or finds it running) and "
        "prints its REST address for `run --flink-master`, `url` prints it, `down` stops it.",
    )
    flink.add_argument("action", choices=["up", "down", "url"], help="up, down or url")
    flink.set_defaults(func=_flink)

    redis_cmd = sub.add_parser(
        "redis",
        help="the embedded Redis: print its URL, or stop it",
        description=f"The Redis that commands use when no --redis URL is given, in "
        f"{EMBEDDED_DIR}: `url` starts it if needed and prints its URL, `stop` stops it. "
        "It keeps its data: it saves dump.rdb when stopped and loads it when started again.",
    )
    redis_cmd.add_argument("action", choices=["url", "stop"], help="url or stop")
    redis_cmd.set_defaults(func=_redis)

    import_cmd.register(sub)
    generate_cmd.register(sub)
    kafka_cmd.register(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``microtarget`` console script."""
    # force: Beam's import may already have given the root logger a handler of its own.
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", force=True
    )
    quiet_beam_notices()
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after a bare `--` goes to Beam untouched (e.g. -- --runner=FnApiRunner).
    beam_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    ours = argv[: argv.index("--")] if "--" in argv else argv
    args = parser().parse_args(ours)
    args.beam_args = beam_args
    try:
        return args.func(args)
    except BrokenPipeError:
        # The reader went away (`microtarget triggers | head`): stop quietly, as other
        # Unix tools do, with the exit status of a process ended by SIGPIPE.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's last flush at exit must not fail
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
