"""The user timeline's ordering rule and dispatch, as plain functions.

A timeline item is a tuple ``(timestamp_ms, item_id, kind, payload)`` with
``kind`` one of ``EVENT`` or ``SESSION``. Items are applied in
``(timestamp_ms, item_id, kind)`` order, whatever order they arrived in: that
is what makes a replay of a recorded file give what the live run gave.

``advance`` is everything one release of a user's timeline does, for the
``UserTimeline`` DoFn to call: fold the items into the profile, feed events
to the pattern automaton (DetectPatterns), govern its matches into triggers
(GovernTriggers) and count which matches the user's later purchases convert.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from models import cep, outcomes
from models import governance as gov
from models import profile as prof

EVENT = "e"
SESSION = "s"


def event_item(event: dict) -> tuple:
    """A timeline item for a raw event."""
    return (event["timestamp"], event["event_id"], EVENT, event)


def session_item(summary: dict, closed_at: int) -> tuple:
    """A timeline item for a session summary; it takes effect when the session closed."""
    return (closed_at, summary["session_id"], SESSION, summary)


def order(item: tuple) -> tuple:
    """The sort key of timeline items: timestamp, then id, then kind."""
    return item[0], item[1], item[2]


def snapshot(params: prof.ProfileParams, state: dict, detector: dict | None = None) -> dict:
    """The profile snapshot, with what the patterns found when they run.

    ``patterns`` holds each pattern's match count and last match time, and the
    flag ``pattern:NAME`` is set while the last match is within
    ``params.pattern_flag_within_ms`` of the snapshot's version. An absence
    fires after the user's last event, so the version is the later of the
    profile's clock and the last match.
    """
    snap = prof.snapshot(params, state)
    if detector is None:
        return snap
    seen = detector["matches"]
    version = max([snap["version"], *(last for _, last in seen.values())])
    snap["version"] = version
    snap["patterns"] = {
        name: {"matches": n, "last": last} for name, (n, last) in sorted(seen.items())
    }
    for name, (_, last) in seen.items():
        snap["flags"][f"pattern:{name}"] = version - last <= params.pattern_flag_within_ms
    return snap


def apply(params: prof.ProfileParams, state: dict, item: tuple) -> dict:
    """Fold one timeline item into a profile state."""
    ts, _, kind, payload = item
    if kind == EVENT:
        return prof.apply_event(params, state, payload)
    if kind == SESSION:
        return prof.apply_session(params, state, payload, ts)
    raise ValueError(f"unknown timeline item kind {kind!r}")


@dataclass(frozen=True)
class TimelineParams:
    """Everything a user's timeline needs to know (patterns already compiled)."""

    profile: prof.ProfileParams = field(default_factory=prof.ProfileParams)
    patterns: tuple = ()
    session_gap_ms: int = 30 * 60_000
    governance: gov.GovernanceParams = field(default_factory=gov.GovernanceParams)
    attribution_ms: int = 7 * 86_400_000


@dataclass
class Step:
    """What one release produced."""

    snapshot: dict | None = None
    triggers: list = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # counter name -> increment
    deadline: int | None = None  # the earliest absence deadline still open


def new_user_state(user: str) -> dict:
    """All the pipeline keeps for one user."""
    return {
        "profile": prof.new_state(user),
        "patterns": cep.new_state(),
        "governance": gov.new_state(),
        "outcomes": outcomes.new_state(),
    }


def advance(params: TimelineParams, state: dict, ready: list, now: int) -> Step:
    """Apply released items (sorted here) and fire pattern deadlines up to ``now``.

    ``now`` is the released-up-to time: every item at or before it is in
    ``ready`` or was released before. Mutates ``state``.
    """
    step = Step()
    user = state["profile"]["user_id"]
    detector = state["patterns"]
    dropped = detector["dropped"]
    found_any = False
    for item in sorted(ready, key=order):
        apply(params.profile, state["profile"], item)
        if not params.patterns or item[2] != EVENT:
            continue
        event = cep.view(detector, item[3], params.session_gap_ms)
        matches = cep.advance(params.patterns, detector, event)
        # Deadlines before this event fire before it; what it completes, after it.
        ts = event["timestamp"]
        earlier = [m for m in matches if m["event_time"] < ts]
        _govern(params, state, user, earlier, step)
        for pattern, group in outcomes.observe(state["outcomes"], event):
            step.counts[f"converted.{pattern}"] += 1
            if group != outcomes.SUPPRESSED:
                step.counts[f"converted_{group}.{pattern}"] += 1
        _govern(params, state, user, matches[len(earlier) :], step)
        found_any = found_any or bool(matches)
    if params.patterns:
        expired = cep.expire(params.patterns, detector, now)
        _govern(params, state, user, expired, step)
        found_any = found_any or bool(expired)
        step.deadline = cep.deadline(params.patterns, detector)
        step.counts["partial_matches_dropped"] += detector["dropped"] - dropped
    if ready or found_any:
        step.snapshot = snapshot(
            params.profile, state["profile"], detector if params.patterns else None
        )
    return step


def _govern(params: TimelineParams, state: dict, user: str, matches: list, step: Step) -> None:
    # Each batch is later than the one before; inside one, deadlines of several patterns
    # can interleave: govern in event time (then trigger id), not pattern order.
    for match in sorted(matches, key=lambda m: gov.order(m, user)):
        pattern = match["pattern"]
        step.counts[f"matches.{pattern}"] += 1
        trigger, reason = gov.decide(params.governance, state["governance"], user, match)
        if trigger is None:
            step.counts[f"triggers_suppressed_{reason}"] += 1
            group = outcomes.SUPPRESSED
        else:
            step.counts["triggers"] += 1
            step.counts[f"triggers.{pattern}"] += 1
            group = outcomes.CONTROL if trigger["holdout"] else outcomes.TREATMENT
            if trigger["holdout"]:
                step.counts["triggers_holdout"] += 1
            step.triggers.append(trigger)
        outcomes.track(state["outcomes"], match, group, params.attribution_ms)
    if matches:
        newest = max(match["event_time"] for match in matches)
        gov.prune(params.governance, state["governance"], newest)
