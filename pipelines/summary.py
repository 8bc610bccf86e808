"""The run summary, read back from a finished pipeline's metrics.

The counts reconcile: ``events_read == valid + invalid`` and
``valid == unique + duplicates``. ``verdict`` says when a run failed on its
input, ``format_summary`` prints the summary as a small table.
"""

from __future__ import annotations

from apache_beam.metrics.metric import MetricsFilter

from transforms.metrics import NAMESPACE


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
        # The A/B test of each pattern: triggers held out (control) and the conversions of
        # the sent (treatment) and held-out ones within the attribution window.
        "triggers_holdout_by_pattern": _by_prefix(totals, "triggers_holdout."),
        "converted_treatment_by_pattern": _by_prefix(totals, "converted_treatment."),
        "converted_control_by_pattern": _by_prefix(totals, "converted_control."),
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
