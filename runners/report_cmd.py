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
        "served_intent": sections.served_intent(records["probes"], records["intent_examples"]),
        "bias": sections.bias(
            records["audit"],
            records["probes"],
            records["intent_examples"],
            list(config.segments),
            config.audit,
        ),
    }
    out["plots"] = {plot: key for plot, (key, _, _) in page.PLOTS.items()}
    return out


def run(args, redis_url: str, config, key_source) -> int:
    import redis

    from runners import replay
    from runners.report import page
    from transforms.redis_sink import delete_namespace

    missing = missing_libraries()
    if missing:
        print(
            f"error: report needs {', '.join(missing)}: pip install -r requirements-report.txt "
            "(or pip install -e '.[report]'; `make setup` installs them)",
            file=sys.stderr,
        )
        return 2
    namespace = f"report-{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(redis_url)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="microtarget-report-") as record_dir:
        request = replay.ReplayRequest(
            inputs=args.files,
            redis_url=redis_url,
            namespace=namespace,
            config=config,
            dead_letters_dir=args.dead_letters,
            progress=not args.quiet,
            beam_args=args.beam_args,
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
    found = build(records, config, summary, args.files)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")
    (out / "index.html").write_text(page.render(found, "microtarget report"))
    seconds = time.perf_counter() - started
    print(f"report of {found['events']:,} events in {seconds:.1f} s: {out / 'index.html'}")
    for name, test in found["triggers"].items():
        print(f"  {name}: {test['by_user']['sentence']}")
    return 0
