"""The report's numbers, from what a replay recorded (``runners.replay.RECORDS``).

Each function takes plain records and gives the JSON of one top-level key of
``report.json``; ``runners.report.page`` draws them. The unit of the A/B tests
and of lift is the user: governance holds a user out of a pattern for good (a
hash of the user and the pattern), so a user's triggers of a pattern are all in
one group, and a user's visits are not independent trials.
"""

from __future__ import annotations

from runners.report import stats

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def triggers(audit: list[dict], patterns: list[str], summary: dict) -> dict:
    """Per pattern: the users sent a trigger (treatment) against the users held out
    (control), each converted when a purchase followed one of their triggers within the
    attribution window; with the same test counted by trigger, from the run's counters."""
    found = {}
    for pattern in patterns:
        groups = {"treatment": [0, 0], "control": [0, 0]}  # [users, converted users]
        for record in audit:
            counts = record["counts"]
            if not counts.get(f"triggers.{pattern}"):
                continue
            held = counts.get(f"triggers_holdout.{pattern}", 0) > 0
            group = groups["control" if held else "treatment"]
            group[0] += 1
            converted = counts.get(f"converted_{'control' if held else 'treatment'}.{pattern}")
            group[1] += 1 if converted else 0
        sent = summary.get("triggers_by_pattern", {}).get(pattern, 0)
        held_out = summary.get("triggers_holdout_by_pattern", {}).get(pattern, 0)
        found[pattern] = {
            "matches": summary.get("matches_by_pattern", {}).get(pattern, 0),
            "by_user": stats.ab_test(
                groups["treatment"][1],
                groups["treatment"][0],
                groups["control"][1],
                groups["control"][0],
            ),
            "by_trigger": stats.ab_test(
                summary.get("converted_treatment_by_pattern", {}).get(pattern, 0),
                sent - held_out,
                summary.get("converted_control_by_pattern", {}).get(pattern, 0),
                held_out,
            ),
        }
    return found


def _bucket_ms(span_ms: int) -> int:
    """A bucket of about a hundredth of the span: an hour, six hours or a day (or more)."""
    for size in (HOUR_MS, 6 * HOUR_MS, DAY_MS, 7 * DAY_MS):
        if span_ms / size <= 200:
            return size
    return 30 * DAY_MS


def segments(changes: list[dict], audit: list[dict], min_sizes: dict[str, int]) -> dict:
    """Per segment: entries, exits and members over event time (buckets of
    ``bucket_ms``), its ``min_size``, and its lift (conversion after an entry over
    conversion after any visit) with an interval from a bootstrap by user."""
    if changes:
        first = min(change["event_time"] for change in changes)
        last = max(change["event_time"] for change in changes)
        size = _bucket_ms(last - first)
        start = first // size * size
    found = {}
    for name in sorted(min_sizes):
        mine = sorted((c["event_time"], c["change"]) for c in changes if c["segment"] == name)
        series = []
        if mine:
            buckets = (last - start) // size + 1
            entries, exits = [0] * buckets, [0] * buckets
            for at, change in mine:
                (entries if change == "enter" else exits)[(at - start) // size] += 1
            members = 0
            for place in range(buckets):
                members += entries[place] - exits[place]
                series.append([start + place * size, entries[place], exits[place], members])
        found[name] = {
            "min_size": min_sizes[name],
            "bucket_ms": size if mine else None,
            "series": series,  # [bucket start, entries, exits, members at its end]
            "entries": sum(point[1] for point in series),
            "exits": sum(point[2] for point in series),
            "lift": _lift(audit, name),
        }
    return found


def _lift(audit: list[dict], name: str) -> dict:
    columns = ([], [], [], [])
    for record in audit:
        counts = record["counts"]
        columns[0].append(counts.get(f"segment_converted.{name}", 0))
        columns[1].append(counts.get(f"segment_entries.{name}", 0))
        columns[2].append(counts.get("visits_converted", 0))
        columns[3].append(counts.get("visits", 0))
    found = stats.bootstrap_ratio(*columns)
    found["entries"] = sum(columns[1])
    found["converted"] = sum(columns[0])
    found["rate"] = round(found["converted"] / found["entries"], 6) if found["entries"] else None
    visits = sum(columns[3])
    found["base_rate"] = round(sum(columns[2]) / visits, 6) if visits else None
    return found


def models(summaries: list[dict], drifts: list[dict]) -> dict:
    """Each model's final summary as the learner left it, and its drift events."""
    found = {}
    for summary in sorted(summaries, key=lambda s: (s["model"], s.get("shard") or 0)):
        name = (
            summary["model"]
            if summary.get("shard") is None
            else (f"{summary['model']}:{summary['shard']}")
        )
        found[name] = {
            "summary": summary,
            "drifts": sorted(d["at"] for d in drifts if d["model"] == summary["model"]),
        }
    return found


def _session_of(ident: str) -> tuple[str, int]:
    """An intent example's id -> (its session's id, the session's start).

    Whole sessions are ``USER:START``, their prefixes ``USER:START#K``
    (``models.timeline``); user ids may hold ``:``.
    """
    head, _, tail = ident.rpartition(":")
    start = tail.partition("#")[0]
    return f"{head}:{start}", int(start)


def outcomes(inputs: list[dict]) -> dict[str, bool]:
    """Session id -> whether it bought, from the whole sessions' examples."""
    return {e["id"]: bool(e["y"]) for e in inputs if e["kind"] == "example"}


def served_intent(probes: list[dict], inputs: list[dict], train_share: float = 0.7) -> dict:
    """The purchase-intent scores as served at the k-th event of a session (before any
    purchase in it), against whether the session went on to buy: ROC AUC per k, with a
    bootstrap by user, on the sessions of the last ``1 - train_share`` of the run by
    session start. Next to them, two references trained offline (scikit-learn's
    logistic regression) on the sessions of the first ``train_share``: one on the
    examples the online model learned (sessions as of their k-th events and whole),
    scored on the same test sessions as of their k-th event (``reference_by_event``);
    one on whole sessions only, scored at close (``reference``), where a buying
    session is cut at its purchase and another is whole, so the lengths tell the label.

    ``inputs``: the model inputs of purchase intent (``runners.replay`` records
    ``intent_inputs``): examples, and the probes' features.
    """
    outcome = outcomes(inputs)
    if not outcome:
        return {"sessions": 0, "by_event": {}, "reference": None, "reference_by_event": {}}
    starts = sorted((_session_of(ident)[1], ident) for ident in outcome)
    cut = starts[int(len(starts) * train_share)][0] if len(starts) > 1 else starts[0][0]
    test = {ident for start, ident in starts if start >= cut}
    by_event = {}
    probe_ks = sorted({int(p["probe"].rsplit(":", 1)[1]) for p in probes})
    for k in probe_ks:
        mine = []
        for probe in probes:
            session, _, event = probe["probe"].rpartition(":")
            if int(event) == k and session in test and session in outcome:
                mine.append((probe["score"], outcome[session], probe["user_id"]))
        found = stats.bootstrap_auc(*zip(*mine, strict=True)) if mine else {"auc": None}
        found["sessions_reaching"] = len(mine)
        by_event[str(k)] = found
    return {
        "sessions": len(outcome),
        "test_sessions": len(test),
        "test_from": cut,
        "buying_share": round(sum(outcome.values()) / len(outcome), 6),
        "learned_examples": sum(1 for e in inputs if e["kind"] in ("example", "prefix")),
        "by_event": by_event,
        "reference_by_event": _reference_by_event(inputs, outcome, cut, probe_ks),
        "reference": _offline_reference(inputs, outcome, cut),
    }


def _logistic(train_x, train_y):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return model.fit(train_x, train_y)


def _rows(inputs: list[dict], names: list[str]) -> list[list[float]]:
    return [[float(e["x"].get(name, 0.0)) for name in names] for e in inputs]


def _reference_by_event(inputs: list[dict], outcome: dict, cut: int, ks: list[int]) -> dict:
    examples = [e for e in inputs if e["kind"] in ("example", "prefix")]
    train = [e for e in examples if _session_of(e["id"])[1] < cut]
    if len({bool(e["y"]) for e in train}) < 2:
        return {}
    names = sorted({name for e in examples for name in e["x"]})
    model = _logistic(_rows(train, names), [bool(e["y"]) for e in train])
    found = {}
    for k in ks:
        probed = []
        for e in inputs:
            if e["kind"] != "probe":
                continue
            session, _, event = e["id"].rpartition(":")
            if int(event) == k and session in outcome and _session_of(session)[1] >= cut:
                probed.append(e)
        value = None
        if probed:
            scores = model.predict_proba(_rows(probed, names))[:, 1]
            value = stats.auc(scores, [outcome[e["id"].rpartition(":")[0]] for e in probed])
        found[str(k)] = {
            "auc": None if value is None else round(value, 6),
            "sessions_reaching": len(probed),
        }
    return {
        "model": "logistic regression (scikit-learn) on the examples the online model learned",
        "train_examples": len(train),
        "by_event": found,
    }


def _offline_reference(inputs: list[dict], outcome: dict, cut: int) -> dict | None:
    whole = [e for e in inputs if e["id"] in outcome and e["kind"] == "example"]
    names = sorted({name for e in whole for name in e["x"]})
    train = [e for e in whole if _session_of(e["id"])[1] < cut]
    test = [e for e in whole if _session_of(e["id"])[1] >= cut]
    if len({bool(e["y"]) for e in train}) < 2 or len({bool(e["y"]) for e in test}) < 2:
        return None
    model = _logistic(_rows(train, names), [bool(e["y"]) for e in train])
    scores = model.predict_proba(_rows(test, names))[:, 1]
    return {
        "model": "logistic regression (scikit-learn) on session features at close",
        "train_sessions": len(train),
        "test_sessions": len(test),
        "auc": round(stats.auc(scores, [bool(e["y"]) for e in test]), 6),
    }


GROUP_ORDER = ("device", "country", "region", "price_band", "visitor")


def bias(
    audit: list[dict],
    probes: list[dict],
    examples: list[dict],
    segment_names: list[str],
    settings,
) -> dict:
    """Per group attribute the users carry (``models.timeline.audit_record``), with
    Fairlearn's ``MetricFrame``: the rate of users sent a trigger (of users who allow
    marketing), each segment's membership rate, and the purchase-intent score served at
    a session's first event (mean, ROC AUC); demographic parity ratio and difference of
    each rate, equalized odds difference of intent (flagging as many sessions as bought).
    ``settings``: ``pipelines.config.AuditConfig``. Groups of fewer than ``min_group``
    users are shown but neither flagged nor counted in the ratios.
    """
    seen = {name for record in audit for name in record["groups"]}
    attributes = [a for a in GROUP_ORDER if a in seen]
    attributes += sorted(a for a in settings.attributes if a in seen and a not in attributes)
    by_user = {record["user_id"]: record for record in audit}
    outcome = outcomes(examples)
    first = [
        (p["user_id"], p["score"], outcome[p["probe"].rpartition(":")[0]])
        for p in probes
        if p["probe"].endswith(":1") and p["probe"].rpartition(":")[0] in outcome
    ]
    found = {"attributes": {}, "flags": [], "settings": settings.model_dump()}
    missing = [a for a in GROUP_ORDER if a not in seen]
    found["not_audited"] = missing  # the events and profiles carry no such value
    for attribute in attributes:
        rates = {}
        consenting = [r for r in audit if r["marketing"] and attribute in r["groups"]]
        rates["trigger_rate"] = _rates(
            [r["groups"][attribute] for r in consenting],
            [_sent(r["counts"]) for r in consenting],
            settings.min_group,
        )
        grouped = [r for r in audit if attribute in r["groups"]]
        for segment in segment_names:
            rates[f"segment:{segment}"] = _rates(
                [r["groups"][attribute] for r in grouped],
                [bool(r["counts"].get(f"segment_entries.{segment}")) for r in grouped],
                settings.min_group,
            )
        entry = {"rates": rates}
        sessions = [
            (by_user[user]["groups"][attribute], score, y, user)
            for user, score, y in first
            if user in by_user and attribute in by_user[user]["groups"]
        ]
        if sessions:
            entry["intent"] = _intent(sessions, settings.min_group)
        found["attributes"][attribute] = entry
        for metric, rate in rates.items():
            flag = _flag(attribute, metric, rate, settings)
            if flag:
                found["flags"].append(flag)
        eod = (entry.get("intent") or {}).get("equalized_odds_difference")
        if eod is not None and eod > settings.max_equalized_odds_difference:
            found["flags"].append(
                {
                    "attribute": attribute,
                    "metric": "purchase_intent",
                    "value": eod,
                    "sentence": (
                        f"Purchase-intent scores by {attribute} miss or wrongly flag buyers at "
                        f"rates that differ by {100 * eod:.0f} points between groups "
                        f"(equalized odds difference, above "
                        f"{100 * settings.max_equalized_odds_difference:.0f})."
                    ),
                }
            )
    return found


def _sent(counts: dict) -> bool:
    """Whether a user was sent (not held out of) any trigger."""
    sent = sum(n for name, n in counts.items() if name.startswith("triggers."))
    held = sum(n for name, n in counts.items() if name.startswith("triggers_holdout."))
    return sent > held


def _rates(groups: list, selected: list, min_group: int) -> dict:
    from fairlearn.metrics import (
        MetricFrame,
        count,
        demographic_parity_difference,
        demographic_parity_ratio,
        selection_rate,
    )

    if not groups:
        return {"by_group": {}, "users": {}}
    frame = MetricFrame(
        metrics={"rate": selection_rate, "users": count},
        y_true=selected,
        y_pred=selected,
        sensitive_features=groups,
    )
    table = frame.by_group
    users = {str(g): int(n) for g, n in table["users"].items()}
    out = {
        "by_group": {str(g): round(float(r), 6) for g, r in table["rate"].items()},
        "users": users,
    }
    kept = [i for i, g in enumerate(groups) if users[str(g)] >= min_group]
    if len({groups[i] for i in kept}) >= 2:
        picked = [selected[i] for i in kept]
        features = [groups[i] for i in kept]
        out["demographic_parity_ratio"] = round(
            float(demographic_parity_ratio(picked, picked, sensitive_features=features)), 6
        )
        out["demographic_parity_difference"] = round(
            float(demographic_parity_difference(picked, picked, sensitive_features=features)), 6
        )
    return out


def _flag(attribute: str, metric: str, rate: dict, settings) -> dict | None:
    ratio = rate.get("demographic_parity_ratio")
    min_ratio = settings.min_ratio
    if ratio is None or ratio >= min_ratio:
        return None
    eligible = {g: r for g, r in rate["by_group"].items() if rate["users"][g] >= settings.min_group}
    low = min(eligible, key=lambda g: (eligible[g], g))
    high = max(eligible, key=lambda g: (eligible[g], g))
    what = "sent triggers" if metric == "trigger_rate" else f"in {metric.split(':', 1)[1]}"
    share = eligible[low] / eligible[high] if eligible[high] else 0.0
    return {
        "attribute": attribute,
        "metric": metric,
        "value": ratio,
        "sentence": (
            f"Users with {attribute} {low} were {what} at {100 * share:.0f}% of the rate of "
            f"users with {attribute} {high} ({100 * eligible[low]:.1f}% of "
            f"{rate['users'][low]:,} against {100 * eligible[high]:.1f}% of "
            f"{rate['users'][high]:,}), below the {100 * min_ratio:.0f}% rule of thumb."
        ),
    }


def _intent(sessions: list[tuple], min_group: int) -> dict:
    import numpy as np
    from fairlearn.metrics import MetricFrame, count, equalized_odds_difference

    groups = [g for g, _, _, _ in sessions]
    scores = np.array([s for _, s, _, _ in sessions], dtype=float)
    bought = np.array([y for _, _, y, _ in sessions], dtype=bool)
    users: dict = {}
    for group, _, _, user in sessions:
        users.setdefault(str(group), set()).add(user)

    def mean_score(_y_true, y_pred):
        return float(np.mean(y_pred))

    def roc_auc(y_true, y_pred):
        value = stats.auc(y_pred, y_true)
        return float("nan") if value is None else value

    frame = MetricFrame(
        metrics={"mean_score": mean_score, "roc_auc": roc_auc, "sessions": count},
        y_true=bought,
        y_pred=scores,
        sensitive_features=groups,
    )
    table = frame.by_group
    out = {
        "by_group": {
            str(g): {
                "sessions": int(row["sessions"]),
                "users": len(users[str(g)]),
                "mean_score": round(float(row["mean_score"]), 6),
                "roc_auc": None if np.isnan(row["roc_auc"]) else round(float(row["roc_auc"]), 6),
            }
            for g, row in table.iterrows()
        }
    }
    # Flag as many sessions as bought: the threshold is the score at that quantile.
    threshold = float(np.quantile(scores, 1 - bought.mean())) if bought.any() else 1.0
    out["threshold"] = round(threshold, 6)
    # Groups of fewer than min_group users are shown, not compared (as the rates).
    kept = [i for i, g in enumerate(groups) if len(users[str(g)]) >= min_group]
    if len({groups[i] for i in kept}) >= 2 and bought[kept].any() and not bought[kept].all():
        flagged = scores[kept] >= threshold
        out["equalized_odds_difference"] = round(
            float(
                equalized_odds_difference(
                    bought[kept], flagged, sensitive_features=[groups[i] for i in kept]
                )
            ),
            6,
        )
    return out
