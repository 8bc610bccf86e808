"""``microtarget report FILES... --out DIR``: what personalization did, as a page.

The files are replayed in batch into a namespace of the report's own (deleted
when done), recording per user what the run's counters sum (``runners.replay``
``record_dir``: ``models.timeline.audit_record``), the triggers, the segment
changes and the models' summaries, in a temporary folder deleted when done.
Only aggregates reach ``DIR``: ``report.json`` (every number behind every
plot, under ``triggers``, ``segments``, ``models``, ``served_intent`` and ``bias``) and
``index.html``
(``runners.report.page``: one static page, no script, opens offline).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPORT_LIBRARIES = ("statsmodels", "matplotlib", "numpy", "fairlearn", "sklearn")


def missing_libraries() -> list[str]:
    """The libraries ``report`` needs that are not installed (``requirements-report.txt``)."""
    import importlib.util

    return [name for name in REPORT_LIBRARIES if importlib.util.find_spec(name) is None]


def build(records: dict[str, list[dict]], config, summary: dict, files: list[str]) -> dict:
    """``report.json``'s content from a replay's records and summary."""
    from runners.report import page, sections

    out = {
        "about": (
            f"{', '.join(files)}: {summary['events_read']:,} events, {summary['profiles']:,} "
            f"users, replayed with {len(config.patterns)} patterns, {len(config.segments)} "
            f"segments and models {', '.join(config.models.enabled) or 'none'}."
        ),
        "events": summary["events_read"],
        "users": summary["profiles"],
        "audited_users": len(records["audit"]),
        "triggers": sections.triggers(records["audit"], list(config.patterns), summary),
        "segments": sections.segments(
            records["segment_changes"],
            records["audit"],
            {name: spec.min_size for name, spec in config.segments.items()},
        ),
        "models": sections.models(records["model_summaries"], records["model_drifts"]),
        "served_intent": sections.served_intent(records["probes"], records["intent_inputs"]),
        "bias": sections.bias(
            records["audit"],
            records["probes"],
            records["intent_inputs"],
            list(config.segments),
            config.audit,
        ),
    }
    out["plots"] = {plot: key for plot, (key, _, _) in page.PLOTS.items()}
    return out


# What a namespace in Redis cannot give: the run's counters and per-user records.
NOT_IN_REDIS = {
    "triggers": "The conversions of triggered and held-out users are counted in a replay, "
    "not kept in Redis: run `microtarget report FILES` on the recorded events.",
    "served_intent": "The scores served at each event of a session are not kept in Redis "
    "(only each user's latest): run `microtarget report FILES`.",
    "bias": "Per-user groups and counts are not kept in Redis: run `microtarget report FILES`.",
}


def from_redis(client, namespace: str, config) -> dict:
    """``report.json``'s content from what a namespace holds: the segment changes on its
    topic (sizes over time, no lift), the models' summaries and drifts; the sections
    that need a replay's records say so (``unavailable``)."""
    from runners.report import page, sections
    from transforms.redis_sink import key

    changes = []
    stream = key(namespace, "topic", "segments")
    for _, fields in client.xrange(stream):
        change = json.loads(fields[b"change_json"])
        changes.append(
            {
                "segment": fields[b"segment"].decode(),
                "change": fields[b"change"].decode(),
                "event_time": change["event_time"],
            }
        )
    summaries = []
    for name in sorted(client.scan_iter(match=key(namespace, "model", "*"), count=1000)):
        raw = client.hget(name, "summary")
        if raw:
            summaries.append(json.loads(raw))
    drifts = [
        {"model": f[b"model"].decode(), "version": int(f[b"version"]), "at": int(f[b"at"])}
        for _, f in client.xrange(key(namespace, "topic", "models"))
    ]
    trimmed = len(changes) >= 0.9 * config.triggers.stream_maxlen
    out = {
        "about": (
            f"namespace {namespace!r} in Redis: {len(changes):,} segment changes"
            + (
                " (the stream may have been trimmed: the oldest changes can be missing)"
                if trimmed
                else ""
            )
            + f", {len(summaries)} model summaries."
        ),  # fmt: skip
        "source": "redis",
        "triggers": {},
        "segments": sections.segments(
            changes, [], {name: spec.min_size for name, spec in config.segments.items()}
        ),
        "models": sections.models(summaries, drifts),
        "served_intent": {"sessions": 0, "by_event": {}, "reference": None},
        "bias": {"attributes": {}, "flags": [], "not_audited": [], "settings": {}},
        "unavailable": dict(NOT_IN_REDIS),
    }
    out["plots"] = {
        plot: key_ for plot, (key_, _, _) in page.PLOTS.items() if key_ not in NOT_IN_REDIS
    }
    return out


def run(args, redis_url: str, config, key_source) -> int:
    import redis

    from runners import replay
    from transforms.redis_sink import delete_namespace

    missing = missing_libraries()
    if missing:
        print(
            f"error: report needs {', '.join(missing)}: pip install -r requirements-report.txt "
            "(or pip install -e '.[report]'; `make setup` installs them)",
            file=sys.stderr,
        )
        return 2
    started = time.perf_counter()
    if args.from_redis and args.files:
        print("error: report takes FILES or --from-redis NS, not both", file=sys.stderr)
        return 2
    if args.from_redis:
        client = redis.Redis.from_url(redis_url)
        try:
            found = from_redis(client, args.from_redis, config)
        finally:
            client.close()
        return _write(args, found, started)
    if not args.files:
        print("error: report needs FILES to replay, or --from-redis NS", file=sys.stderr)
        return 2
    namespace = f"report-{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(redis_url)
    with tempfile.TemporaryDirectory(prefix="microtarget-report-") as record_dir:
        request = replay.ReplayRequest.from_args(
            args,
            redis_url=redis_url,
            namespace=namespace,
            config=config,
            key_source=key_source,
            record_dir=record_dir,
        )
        try:
            summary = replay.run(request)
        except replay.InputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        finally:
            delete_namespace(client, namespace)
            client.close()
        records = {name: replay.read_records(record_dir, name) for name in replay.RECORDS}
    return _write(args, build(records, config, summary, args.files), started)


def _write(args, found: dict, started: float) -> int:
    from runners.report import page

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")
    (out / "index.html").write_text(page.render(found, "microtarget report"))
    seconds = time.perf_counter() - started
    print(f"report in {seconds:.1f} s: {out / 'index.html'} ({found['about']})")
    for name, test in found["triggers"].items():
        print(f"  {name}: {test['by_user']['sentence']}")
    return 0
