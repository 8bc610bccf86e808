"""``microtarget evaluate FILES... [--json PATH]``: how good are the models and segments?

Replays the files in batch (the same pipeline as ``replay``) into a namespace
of its own, ``evaluate-RANDOM``, which it deletes when done (also when it
fails), so that no copy of a user's data outlives it; with ``--namespace NS``
the replay's output stays in ``NS`` (and ``microtarget erase --namespace NS``
reaches it). It prints:

* each online model's progressive metrics (every prediction made before its
  label was learned: ROC AUC and log loss, silhouette for the clusters) next
  to the baselines measured on the same examples the same way: ``majority``
  (one answer for all, its probability the running base rate) and ``views``
  (product views so far as the score);
* each rule segment's size (members at the end) and whether it reached its
  ``min_size``;
* for every rule segment and trigger pattern, the purchase rate after an
  entry (a match) within ``triggers.attribution_window``, against the base
  rate (a purchase within the same window after a visit), as a lift with a
  95% confidence interval (the log of a ratio of two proportions, Katz's
  interval).

* with ``recommendations`` on, HR@K and MRR@K (in %) of each user's list
  as served before the next click, next to POP and S-POP measured the same
  way (``recommendations_report``).

``--json PATH`` writes ``{"models": {...}, "baselines": {...}, "segments":
{...}, "lift": {...}}``, and ``"recommendations": {...}`` when that model ran.
"""

from __future__ import annotations

import json
import math
import sys
import uuid
from pathlib import Path

Z95 = 1.959963984540054


def lift(converted: int, entries: int, base_converted: int, base_entries: int) -> dict:
    """Rate, base rate, lift and its 95% interval (None where undefined).

    >>> lift(30, 100, 100, 1000)["lift"], lift(30, 100, 100, 1000)["ci95"]
    (3.0, [2.1089, 4.2676])
    """
    rate = converted / entries if entries else None
    base = base_converted / base_entries if base_entries else None
    out = {"entries": entries, "converted": converted, "rate": rate, "base_rate": base}
    if not rate or not base:
        return {**out, "lift": 0.0 if rate == 0 and base else None, "ci95": None}
    ratio = rate / base
    se = math.sqrt(1 / converted - 1 / entries + 1 / base_converted - 1 / base_entries)
    low, high = ratio * math.exp(-Z95 * se), ratio * math.exp(Z95 * se)
    return {**out, "lift": round(ratio, 4), "ci95": [round(low, 4), round(high, 4)]}


def _by_prefix(totals: dict, prefix: str) -> dict:
    return {k.removeprefix(prefix): v for k, v in totals.items() if k.startswith(prefix)}


def report(client, namespace: str, config, totals: dict) -> dict:
    """The evaluation, from the replay's counters and what it left in Redis."""
    from models.learning import combine
    from transforms.redis_sink import key

    models, baselines, recommendations = {}, {}, None
    shards = config.models.shards
    for name in config.models.enabled:
        names = [name] if shards == 1 else [f"{name}:{k}" for k in range(shards)]
        raws = [client.hget(key(namespace, "model", n), "summary") for n in names]
        found_summaries = [json.loads(raw) for raw in raws if raw is not None]
        if not found_summaries:
            continue
        if found_summaries[0].get("kind") == "recommender":
            recommendations = recommendations_report(found_summaries)
            continue
        # A model run as several shards: their metrics weighted by examples.
        summary = combine(found_summaries)
        models[name] = {**summary["metrics"], "version": summary["version"]}
        if shards > 1:
            models[name]["shards"] = len(found_summaries)
        for baseline, metrics in (summary.get("baselines") or {}).items():
            baselines[f"{name}.{baseline}"] = metrics
    segments = {}
    for name, spec in config.segments.items():
        meta = client.hgetall(key(namespace, "segment", f"{name}:meta"))
        size = int(meta.get(b"size", 0))
        segments[name] = {"size": size, "min_size": spec.min_size, "active": size >= spec.min_size}
    visits, visits_converted = totals.get("visits", 0), totals.get("visits_converted", 0)
    found = {}
    entries = _by_prefix(totals, "segment_entries.")
    converted = _by_prefix(totals, "segment_converted.")
    for name in config.segments:
        found[f"segment:{name}"] = lift(
            converted.get(name, 0), entries.get(name, 0), visits_converted, visits
        )
    matches = _by_prefix(totals, "matches.")
    pattern_converted = _by_prefix(totals, "converted.")
    for name in config.patterns:
        found[f"pattern:{name}"] = lift(
            pattern_converted.get(name, 0), matches.get(name, 0), visits_converted, visits
        )
    out = {"models": models, "baselines": baselines, "segments": segments, "lift": found}
    if recommendations is not None:
        out["recommendations"] = recommendations
    return out


def recommendations_report(summaries: list[dict]) -> dict:
    """HR@K and MRR@K (in %) of the lists as served, with POP and S-POP, over the shards.

    The clicks of a marked test period (``properties.split`` = ``test``) when
    the events marked one, else every click scored (``evaluate_share``).
    Shards are combined weighted by their predictions; ``size`` is what all
    copies hold together.

    >>> one = {"k": 2, "algorithm": "a", "samples": 9, "size": {"sessions": 3},
    ...        "metrics": {"hr_at_2": 50.0, "mrr_at_2": 25.0, "predictions": 2},
    ...        "baselines": {"pop": {"hr_at_2": 0.0, "mrr_at_2": 0.0, "predictions": 2}}}
    >>> two = {**one, "metrics": {"hr_at_2": 100.0, "mrr_at_2": 100.0, "predictions": 6}}
    >>> found = recommendations_report([one, two])
    >>> found["hr_at_2"], found["mrr_at_2"], found["predictions"], found["size"]
    (87.5, 81.25, 8, {'sessions': 6})
    """
    k = summaries[0]["k"]
    test = any("test" in (s.get("by_period") or {}) for s in summaries)

    def view(summary: dict) -> dict:
        return summary["by_period"].get("test", {}) if test else summary

    def mean(reports: list[dict]) -> dict:
        n = sum(r.get("predictions") or 0 for r in reports)
        out = {"predictions": n}
        for name in (f"hr_at_{k}", f"mrr_at_{k}"):
            pairs = [(r[name], r["predictions"]) for r in reports if r.get(name) is not None]
            out[name] = round(sum(v * w for v, w in pairs) / n, 2) if n else None
        return out

    views = [view(s) for s in summaries]
    found = mean([v.get("metrics") or {} for v in views])
    names = sorted({b for v in views for b in v.get("baselines") or {}})
    baselines = {
        name: mean([v["baselines"][name] for v in views if name in (v.get("baselines") or {})])
        for name in names
    }
    replicated = any(s.get("replicated") for s in summaries)
    size: dict = {}
    for summary in summaries:
        for name, value in (summary.get("size") or {}).items():
            size[name] = size.get(name, 0) + value
    out = {
        "algorithm": summaries[0]["algorithm"],
        "k": k,
        "clicks_scored": "test period" if test else "all (a share of users)",
        **found,
        "baselines": baselines,
        # Replicated copies each learned every click; other shards, their own users' clicks.
        "clicks": (max if replicated else sum)(s["samples"] for s in summaries),
        "shards": len(summaries),
        **({"replicated": True} if replicated else {}),
        "size": size,
    }
    within = [s["within_segments"] for s in summaries if s.get("within_segments")]
    if within:
        # The scored clicks (of any period) whose list was served within a rule segment.
        out["within_segments"] = mean(within)
    return out


def cell(value) -> str:
    """A number for a table: None as -, floats to 4 places."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def format_report(found: dict) -> str:
    """The evaluation as aligned tables."""
    names = [*found["models"], *(f"baseline {n}" for n in found["baselines"])]
    names += [*found["segments"], *found["lift"]]
    width = max([24, *map(len, names)])
    lines = [
        "models (progressive)",
        f"  {'model':<{width}} {'roc_auc':>8} {'log_loss':>9} {'silh.':>7}",
    ]
    rows = [(name, m) for name, m in found["models"].items()]
    rows += [(f"baseline {name}", m) for name, m in found["baselines"].items()]
    for name, m in rows:
        lines.append(
            f"  {name:<{width}} {cell(m.get('roc_auc')):>8} {cell(m.get('log_loss')):>9} "
            f"{cell(m.get('silhouette')):>7}"
        )
    sharded = {name: m["shards"] for name, m in found["models"].items() if m.get("shards")}
    if sharded:
        counts = ", ".join(f"{name} {n}" for name, n in sharded.items())
        lines.append(
            f"  (shards: {counts}; each metric is the shards' mean weighted by their examples, "
            "so ROC AUC compares no pair across shards)"
        )
    recs = found.get("recommendations")
    if recs:
        k = recs["k"]
        lines += [
            "",
            f"recommendations ({recs['algorithm']}, top {k}, clicks scored: "
            f"{recs['clicks_scored']}; each list as served before the next click)",
            f"  {'list':<{width}} {f'HR@{k}':>8} {f'MRR@{k}':>8} {'predictions':>12}",
        ]
        rows = [(recs["algorithm"], recs)]
        rows += [(f"baseline {name}", m) for name, m in recs["baselines"].items()]
        if recs.get("within_segments"):
            rows.append(("served within a segment", recs["within_segments"]))
        for name, m in rows:
            lines.append(
                f"  {name:<{width}} {cell(m.get(f'hr_at_{k}')):>8} "
                f"{cell(m.get(f'mrr_at_{k}')):>8} {m['predictions']:>12}"
            )
    lines += [
        "",
        "segments (size: members at the end of the replay)",
        f"  {'segment':<{width}} {'size':>7} {'min_size':>9}  status",
    ]
    for name, s in found["segments"].items():
        status = "active" if s["active"] else "too small"
        lines.append(f"  {name:<{width}} {s['size']:>7} {s['min_size']:>9}  {status}")
    lines += [
        "",
        "purchase within the attribution window: after an entry vs after any visit",
        "(entries: every time a user joined the segment or matched the pattern, so a user",
        " who left and joined again counts again; base: the rate after any visit)",
        f"  {'who':<{width}} {'entries':>8} {'rate':>7} {'base':>7} {'lift':>7}  95% CI",
    ]
    for name, row in found["lift"].items():
        ci = "-" if row["ci95"] is None else f"[{row['ci95'][0]:.2f}, {row['ci95'][1]:.2f}]"
        lines.append(
            f"  {name:<{width}} {row['entries']:>8} {cell(row['rate']):>7} "
            f"{cell(row['base_rate']):>7} {cell(row['lift']):>7}  {ci}"
        )
    return "\n".join(lines)


def run(args, redis_url: str, config, key_source) -> int:
    import redis

    from models.timeline import MODELS
    from runners import replay
    from transforms.redis_sink import delete_namespace

    if not config.models.enabled:
        config = config.model_copy(
            update={"models": config.models.model_copy(update={"enabled": list(MODELS)})}
        )
        print("models: none enabled in the config; evaluating all of them", file=sys.stderr)
    keep = args.namespace is not None
    namespace = args.namespace if keep else f"evaluate-{uuid.uuid4().hex[:12]}"
    request = replay.ReplayRequest.from_args(
        args, redis_url=redis_url, namespace=namespace, config=config, key_source=key_source
    )
    client = redis.Redis.from_url(redis_url)
    try:
        totals, _ = replay.run_counters(request)
        found = report(client, namespace, config, totals)
    except replay.InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if not keep:
            delete_namespace(client, namespace)
        client.close()
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(found, indent=2) + "\n")
    if keep:
        print(
            f"the replay's profiles, segments and scores stay in namespace {namespace!r} "
            f"(`microtarget erase --namespace {namespace}` erases users there)",
            file=sys.stderr,
        )
    print(format_report(found))
    return 0
