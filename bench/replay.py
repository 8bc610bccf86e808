"""Replay throughput: the full pipeline against a bare-Beam baseline, side by side.

    python bench/replay.py FILE [--json OUT] [--repeat N]

FILE is an Avro event file, or the Taobao UserBehavior CSV (imported first).
Each variant runs in its own child process (so peak memory is its own), one
after the other, ``--repeat`` times (3), alternating; rates are the median of
the runs, and each ratio is the median of the ratios of the runs made side by
side in one round, with their spread (lowest, highest):

* ``baseline``: Beam's ReadFromAvro, key by user, Sessions(30 min),
  GroupByKey, count: the least a sessionizing Beam job does;
* ``pipeline``: microtarget's full replay (decode and validate, dedupe,
  sessions, trending, the ordered user timeline and profiles, writes to a
  real Redis started here), with no patterns;
* ``patterns``: the same with the default pattern pack
  (``examples/patterns.yaml``): detection, governance, trigger publishing;
* ``full``: the full example config (``examples/config.yaml``: patterns,
  rule segments and the online models, recommendations among them);
* ``full_no_recs`` (only with ``--only``): the same without the
  recommendations model, so ``recommendations_share`` (1 - its time / the
  full time) is what the recommendations cost; ``full`` runs also report
  what the recommender holds at the end and its HR and MRR (``recommender``);
* ``report`` (only with ``--only``): ``microtarget report`` of the file with
  the full config (its replay with the records, the numbers, the page), so
  ``full_over_report`` (the replay's time over the report's) is what the
  report costs beyond a replay: above 0.5 means less than twice its time;
* ``full_no_similar`` (only with ``--only``): the full config without the
  products' similar items (``recommendations.similar_items: false``), so
  ``full_over_no_similar`` is what writing them costs;
* ``protect``: not a pipeline: ``models.privacy.protect`` alone over every
  event of the file, in one loop, to see what pseudonymization costs.

All of these run on Beam's FnApiRunner. ``--runners fnapi,prism`` (the
default when Prism is built, ``runners.prism``) also runs ``baseline``,
``pipeline`` and ``patterns`` on Prism, each Prism ratio against the baseline
on Prism in the same round (under ``prism`` in the result). ``--streaming``
adds the streaming replay (``replay --streaming``, no patterns) on the
bundle-based DirectRunner (``streaming``; not on Prism, whose session windows
differ in a stream: README, Runners).
``--patches SPEC`` runs every child with ``MICROTARGET_BEAM_PATCHES=SPEC``
(``none``, or the names of the Beam patches to keep, ``runners.beam_patches``):
what the patches buy is the ratio with ``all`` against the ratio with ``none``.

``--sweep N`` adds ``users_sweep``: files of N generated events (``microtarget
generate``) from N/1, N/5, N/25 and N/100 users, each replayed with the full
config against the baseline side by side (events per user -> median ratio,
spread); the cost of a user shows as a falling ratio towards 1 event per user.
Every run also reports ``state_bytes_per_idle_user`` and ``key_spread``
(``user_facts``: what the timeline keeps per user, and how each keyed step's
work spreads over keys and over 2 workers), from the file in plain Python.

Prints and writes ``pipeline_events_per_s``, ``baseline_events_per_s``,
``ratio`` (pipeline rate / baseline rate) and ``ratio_spread``,
``peak_rss_mb`` (of the pipeline's process), ``patterns_events_per_s``,
``patterns_ratio`` (with patterns / baseline, and ``patterns_ratio_spread``)
and ``patterns_share`` (the share of the pipeline's time with patterns that
the patterns cost: 1 - pipeline time / patterns time), ``full_events_per_s``,
``full_ratio`` (and ``full_ratio_spread``), ``full_peak_rss_mb`` and
``full_memory_ratio`` (its peak RSS / the baseline's), plus the details of
every run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _runner_options(runner: str) -> list[str]:
    from runners import prism

    return prism.options() if runner == "prism" else ["--runner=FnApiRunner"]


def _baseline(path: str, runner: str = "fnapi") -> dict:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.transforms import window

    started = time.perf_counter()
    with beam.Pipeline(options=PipelineOptions(_runner_options(runner))) as pipeline:
        _ = (
            pipeline
            | "Read" >> beam.io.ReadFromAvro(path)
            | "KeyByUser" >> beam.Map(lambda e: (e["user_id"] or e["anonymous_id"], e))
            | "Timestamp"
            >> beam.Map(lambda kv: window.TimestampedValue(kv, kv[1]["timestamp"] / 1000))
            | "Sessions" >> beam.WindowInto(window.Sessions(30 * 60))
            | "GroupByKey" >> beam.GroupByKey()
            | "Count" >> beam.combiners.Count.Globally().without_defaults()
        )
    return {"wall_seconds": time.perf_counter() - started}


def _pipeline(
    path: str,
    patterns: bool = False,
    runner: str = "fnapi",
    streaming: bool = False,
    full: bool = False,
    recommendations: bool = True,
    similar_items: bool = True,
) -> dict:
    from pipelines.config import load_config
    from pipelines.keys import KeySource
    from runners.local.redis_server import RedisServer
    from runners.replay import ReplayRequest, run

    config = load_config(ROOT / "examples" / "config.yaml")
    if not full:
        models = config.models.model_copy(update={"enabled": []})
        config = config.model_copy(update={"segments": {}, "models": models})
    if not (patterns or full):
        config = config.model_copy(update={"patterns": {}})
    if not similar_items:
        recs = config.recommendations.model_copy(update={"similar_items": False})
        config = config.model_copy(update={"recommendations": recs})
    if not recommendations:
        enabled = [m for m in config.models.enabled if m != "recommendations"]
        models = config.models.model_copy(update={"enabled": enabled})
        config = config.model_copy(update={"models": models})
    sizes = None
    with tempfile.TemporaryDirectory() as tmp, RedisServer(data_dir=Path(tmp) / "redis") as server:
        request = ReplayRequest(
            inputs=[path],
            redis_url=server.url,
            namespace="bench",
            config=config,
            dead_letters_dir=str(Path(tmp) / "dead-letters"),
            key_source=KeySource("dev"),
            runner=runner,
            streaming=streaming,
        )
        started = time.perf_counter()
        summary = run(request)
        wall = time.perf_counter() - started
        if "recommendations" in config.models.enabled:
            import redis

            client = redis.Redis.from_url(server.url)
            raw = client.hget("mt:bench:model:recommendations", "summary")
            client.close()
            if raw:
                found = json.loads(raw)
                sizes = {"size": found["size"], "metrics": found["metrics"]}
                if "by_period" in found:
                    sizes["by_period"] = found["by_period"]
    out = {"wall_seconds": wall, "summary": summary}
    if sizes is not None:
        out["recommender"] = sizes
    return out


def _report(path: str) -> dict:
    """``microtarget report`` of the file with the full config: its replay with the
    records, the numbers and the page, timed whole (libraries imported before)."""
    import argparse as _argparse

    from pipelines.config import load_config
    from pipelines.keys import KeySource
    from runners import report_cmd
    from runners.local.redis_server import RedisServer
    from runners.report import page, sections  # noqa: F401 (imported outside the timing)

    for name in report_cmd.REPORT_LIBRARIES:
        __import__(name)
    config = load_config(ROOT / "examples" / "config.yaml")
    with tempfile.TemporaryDirectory() as tmp, RedisServer(data_dir=Path(tmp) / "redis") as server:
        args = _argparse.Namespace(
            files=[path],
            from_redis=None,
            out=str(Path(tmp) / "report"),
            dead_letters=str(Path(tmp) / "dead-letters"),
            quiet=True,
            beam_args=[],
        )
        started = time.perf_counter()
        code = report_cmd.run(args, server.url, config, KeySource("dev"))
        wall = time.perf_counter() - started
    if code:
        raise SystemExit(f"report failed: {code}")
    return {"wall_seconds": wall}


def _protect(path: str) -> dict:
    from models import privacy
    from pipelines.keys import KeySource
    from schemas.codecs import read_container

    events = list(read_container(path))
    params = privacy.PrivacyParams(key=KeySource("dev").load())
    started = time.perf_counter()
    for event in events:
        privacy.protect(params, event)
    return {"wall_seconds": time.perf_counter() - started}


def user_facts(path: str) -> dict:
    """What the full config keeps and where its work goes, from the file in plain Python.

    Each user's events and sessions (cut as ``Sessions(gap)`` does) go
    through ``models.timeline`` as the pipeline's timeline step would:

    * ``state_bytes_per_idle_user``: the pickled size of the state the
      timeline keeps for a user between events (median, p90, mean);
    * ``key_spread``: per keyed step, its keys, items, the largest key's share
      of the items, and the busiest worker's share when the keys are hashed
      onto 2 workers (a stable hash; Flink's own assignment picks other keys
      but spreads alike). 0.5 is an even spread, 1.0 one worker doing it all.
    """
    import dataclasses
    import hashlib
    import pickle
    from collections import Counter, defaultdict

    from models import learning, session, timeline
    from models.events import PRODUCT_VIEW, user_key
    from models.patterns import compile_pattern
    from models.segments import compile_segments
    from pipelines.config import load_config
    from schemas.codecs import read_container

    config = load_config(ROOT / "examples" / "config.yaml")
    params = dataclasses.replace(
        config.timeline_params(),
        patterns=tuple(compile_pattern(n, spec) for n, spec in config.patterns.items()),
        segments=compile_segments(config.segments),
    )
    gap = config.sessions.gap
    by_user, categories = defaultdict(list), Counter()
    for event in read_container(path):
        by_user[user_key(event)].append(event)
        if event["event_type"] == PRODUCT_VIEW and event.get("category") is not None:
            categories[event["category"]] += 1
    sizes, models, sharded = [], Counter(), Counter()
    shards = 8 if config.models.shards == 4 else 4  # and as many shards as the config's next to it
    for user, events in by_user.items():
        events.sort(key=lambda e: e["timestamp"])
        items = [timeline.event_item(e) for e in events]
        acc, last = session.empty(), None
        for event in [*events, None]:
            if last is not None and (event is None or event["timestamp"] - last >= gap):
                items.append(timeline.session_item(session.finish(acc, user), last + gap - 1))
                acc = session.empty()
            if event is not None:
                acc, last = session.add(acc, event), event["timestamp"]
        state = timeline.new_user_state(user)
        step = timeline.advance(params, state, items, max(item[0] for item in items))
        for model_input in step.model_inputs:
            name = model_input["model"]
            models[learning.learner_key(name, user, config.models.shards)] += 1
            sharded[learning.learner_key(name, user, shards)] += 1
        sizes.append(len(pickle.dumps(state, pickle.HIGHEST_PROTOCOL)))
    sizes.sort()

    def spread(counts: Counter) -> dict:
        total = sum(counts.values())
        workers = Counter()
        for key, n in counts.items():
            # md5, not crc32: keys that differ in their last character (NAME:0, NAME:1, ...)
            # all had the same crc32 parity.
            workers[hashlib.md5(str(key).encode()).digest()[0] % 2] += n
        return {
            "keys": len(counts),
            "items": total,
            "largest_key_share": round(max(counts.values()) / total, 4) if total else None,
            "busiest_of_2_share": round(max(workers.values()) / total, 3) if total else None,
        }

    return {
        "state_bytes_per_idle_user": {
            "users": len(sizes),
            "median": sizes[len(sizes) // 2],
            "p90": sizes[int(len(sizes) * 0.9)],
            "mean": round(statistics.fmean(sizes)),
        },
        "key_spread": {
            "Deduplicate, UserTimeline (user)": spread(
                Counter({u: len(e) for u, e in by_user.items()})
            ),
            "TrendingItems (category)": spread(categories),
            f"LearnOnline (model, models.shards {config.models.shards})": spread(models),
            f"LearnOnline (model, models.shards {shards})": spread(sharded),
        },
    }


SWEEP = (1, 5, 25, 100)


def _sweep(events: int, repeat: int, patches: str, workdir: Path) -> dict:
    """Events per user -> the full config's ratio against the baseline, same events each."""
    from runners import cli

    out = {}
    for per_user in SWEEP:
        path = workdir / f"sweep-{per_user}.avro"
        users = max(events // per_user, 1)
        argv = ["generate", "--events", str(events), "--users", str(users), "--seed", "1"]
        if cli.main([*argv, "--out", str(path)]) != 0:
            raise SystemExit(f"could not generate {path}")
        ratios = []
        for _ in range(repeat):
            base = _run_child("baseline", str(path), patches)
            full = _run_child("full", str(path), patches)
            ratios.append(base["wall_seconds"] / full["wall_seconds"])
            print(f"sweep {per_user}/user: {ratios[-1]:.3f}", file=sys.stderr)
        out[str(per_user)] = {
            "users": users,
            "ratio": round(statistics.median(ratios), 3),
            "spread": [round(min(ratios), 3), round(max(ratios), 3)],
        }
    return out


def _child(variant: str, path: str) -> None:
    variants = {
        "baseline": _baseline,
        "pipeline": _pipeline,
        "patterns": lambda p: _pipeline(p, patterns=True),
        "full": lambda p: _pipeline(p, full=True),
        "full_no_recs": lambda p: _pipeline(p, full=True, recommendations=False),
        "full_no_similar": lambda p: _pipeline(p, full=True, similar_items=False),
        "protect": _protect,
        "report": _report,
        "prism:baseline": lambda p: _baseline(p, "prism"),
        "prism:pipeline": lambda p: _pipeline(p, runner="prism"),
        "prism:patterns": lambda p: _pipeline(p, patterns=True, runner="prism"),
        "stream:direct": lambda p: _pipeline(p, runner="direct", streaming=True),
    }
    result = variants[variant](path)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def _count_events(path: str) -> int:
    from schemas.codecs import read_container

    return sum(1 for _ in read_container(path))


def _prepare(source: str, workdir: Path) -> str:
    if source.endswith(".csv"):
        from transforms.importers import import_taobao, write_events

        out = workdir / "events.avro"
        items, _report = import_taobao([source])
        write_events(items, out)
        return str(out)
    return source


def _run_child(variant: str, path: str, patches: str) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", variant, path],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "MICROTARGET_BEAM_PATCHES": patches},
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file")
    parser.add_argument("--json", default=None, help="write the result here")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--runners",
        default=None,
        help="fnapi, or fnapi,prism (default: both when Prism is built)",
    )
    parser.add_argument(
        "--streaming",
        action="store_true",
        help="also time the streaming replay (on the bundle-based DirectRunner)",
    )
    parser.add_argument(
        "--patches",
        default="all",
        help="MICROTARGET_BEAM_PATCHES for every run: all, none, or names to keep",
    )
    parser.add_argument(
        "--sweep",
        type=int,
        default=0,
        metavar="EVENTS",
        help="also sweep 1, 5, 25 and 100 events per user at EVENTS events each",
    )
    parser.add_argument(
        "--only",
        default=None,
        help="run only these variants (comma-separated, e.g. baseline,pipeline or "
        "stream:direct); the ratios of the others are left out",
    )
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.file)
        return 0
    from runners import prism

    runners = (args.runners or ("fnapi,prism" if prism.built() else "fnapi")).split(",")
    with tempfile.TemporaryDirectory() as tmp:
        path = _prepare(args.file, Path(tmp))
        events = _count_events(path)
        runs: dict[str, list[dict]] = {
            "baseline": [],
            "pipeline": [],
            "patterns": [],
            "full": [],
            "protect": [],
        }
        if "prism" in runners:
            runs.update({"prism:baseline": [], "prism:pipeline": [], "prism:patterns": []})
        if args.streaming:
            runs["stream:direct"] = []
        if args.only:
            wanted = args.only.split(",")
            extra = ("full_no_recs", "full_no_similar", "report")
            unknown = [v for v in wanted if v not in runs and v not in extra]
            if unknown:
                parser.error(f"--only: unknown variant(s) {unknown} (known: {', '.join(runs)})")
            runs = {v: [] for v in wanted}
        for _ in range(args.repeat):
            for variant in runs:
                runs[variant].append(_run_child(variant, path, args.patches))
                print(f"{variant}: {runs[variant][-1]['wall_seconds']:.2f} s", file=sys.stderr)
        facts = user_facts(path)
        sweep = _sweep(args.sweep, args.repeat, args.patches, Path(tmp)) if args.sweep else None
    median = {v: statistics.median(r["wall_seconds"] for r in rs) for v, rs in runs.items()}

    def side_by_side(variant: str, baseline: str = "baseline") -> tuple[float, list[float]]:
        """The median and spread of baseline time / variant time over the rounds."""
        ratios = [
            b["wall_seconds"] / v["wall_seconds"]
            for b, v in zip(runs[baseline], runs[variant], strict=True)
        ]
        return round(statistics.median(ratios), 3), [round(min(ratios), 3), round(max(ratios), 3)]

    if args.only:
        result = {"file": args.file, "events": events, "repeat": args.repeat}
        result["patches"] = args.patches
        result.update(facts)
        if sweep is not None:
            result["users_sweep"] = sweep
        for variant in runs:
            result[f"{variant}_events_per_s"] = round(events / median[variant], 1)
            result[f"{variant}_peak_rss_mb"] = round(
                max(r["peak_rss_mb"] for r in runs[variant]), 1
            )
        pairs = (
            ("pipeline", "baseline"),
            ("full", "baseline"),
            ("full_no_recs", "baseline"),
            ("prism:pipeline", "prism:baseline"),
        )
        for variant, baseline in pairs:
            if variant in runs and baseline in runs:
                result[f"{variant}_ratio"], result[f"{variant}_ratio_spread"] = side_by_side(
                    variant, baseline
                )
        if "full" in runs and "full_no_recs" in runs:
            result["recommendations_share"] = round(1 - median["full_no_recs"] / median["full"], 3)
            # full rate / full_no_recs rate, side by side: below 1 by what recommending costs.
            result["full_over_no_recs"], result["full_over_no_recs_spread"] = side_by_side(
                "full", "full_no_recs"
            )
        if "full" in runs and "full_no_similar" in runs:
            # full rate / full_no_similar rate, side by side: what the similar items cost.
            result["full_over_no_similar"], result["full_over_no_similar_spread"] = side_by_side(
                "full", "full_no_similar"
            )
        if "full" in runs and "report" in runs:
            # full time / report time, side by side: the report's cost over a replay of it.
            result["full_over_report"], result["full_over_report_spread"] = side_by_side(
                "report", "full"
            )
        if "full" in runs and runs["full"][-1].get("recommender"):
            result["recommender"] = runs["full"][-1]["recommender"]
        print(json.dumps(result, indent=2))
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps({**result, "runs": runs}, indent=2) + "\n")
        return 0
    ratio, ratio_spread = side_by_side("pipeline")
    patterns_ratio, patterns_spread = side_by_side("patterns")
    full_ratio, full_spread = side_by_side("full")
    result = {
        "file": args.file,
        "events": events,
        "repeat": args.repeat,
        "pipeline_events_per_s": round(events / median["pipeline"], 1),
        "baseline_events_per_s": round(events / median["baseline"], 1),
        "ratio": ratio,
        "ratio_spread": ratio_spread,
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs["pipeline"]), 1),
        "baseline_peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs["baseline"]), 1),
        "patterns_events_per_s": round(events / median["patterns"], 1),
        "patterns_ratio": patterns_ratio,
        "patterns_ratio_spread": patterns_spread,
        "patterns_share": round(1 - median["pipeline"] / median["patterns"], 3),
        "patterns_peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs["patterns"]), 1),
        "full_events_per_s": round(events / median["full"], 1),
        "full_ratio": full_ratio,
        "full_ratio_spread": full_spread,
        "full_peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs["full"]), 1),
        "full_memory_ratio": round(
            max(r["peak_rss_mb"] for r in runs["full"])
            / max(r["peak_rss_mb"] for r in runs["baseline"]),
            2,
        ),
        **facts,
        "protect_us_per_event": round(median["protect"] / events * 1e6, 2),
        "protect_share": round(median["protect"] / median["pipeline"], 4),
        "triggers": runs["patterns"][-1]["summary"]["triggers_by_pattern"],
        "patches": args.patches,
    }
    if "prism" in runners:
        prism_ratio, prism_spread = side_by_side("prism:pipeline", "prism:baseline")
        prism_patterns, prism_patterns_spread = side_by_side("prism:patterns", "prism:baseline")
        fnapi_over_prism, fnapi_over_prism_spread = side_by_side("prism:pipeline", "pipeline")
        result["prism"] = {
            "pipeline_events_per_s": round(events / median["prism:pipeline"], 1),
            "baseline_events_per_s": round(events / median["prism:baseline"], 1),
            "ratio": prism_ratio,
            "ratio_spread": prism_spread,
            "patterns_ratio": prism_patterns,
            "patterns_ratio_spread": prism_patterns_spread,
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs["prism:pipeline"]), 1),
            # FnApiRunner pipeline time / Prism pipeline time: above 1, Prism is faster.
            "speed_against_fnapi": fnapi_over_prism,
            "speed_against_fnapi_spread": fnapi_over_prism_spread,
        }
    if args.streaming:
        stream_ratio, stream_spread = side_by_side("stream:direct")
        result["streaming"] = {
            "direct_events_per_s": round(events / median["stream:direct"], 1),
            "ratio": stream_ratio,
            "ratio_spread": stream_spread,
        }
    if sweep is not None:
        result["users_sweep"] = sweep
    result["runs"] = runs
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
