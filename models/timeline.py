"""The user timeline's ordering rule and dispatch, as plain functions.

A timeline item is a tuple ``(timestamp_ms, item_id, kind, payload)`` with
``kind`` one of ``EVENT`` or ``SESSION``. Items are applied in
``(timestamp_ms, item_id, kind)`` order, whatever order they arrived in: that
is what makes a replay of a recorded file give what the live run gave.

``advance`` is everything one release of a user's timeline does, for the
``UserTimeline`` DoFn to call: fold the items into the profile, feed events
to the pattern automaton (DetectPatterns), govern its matches into triggers
(GovernTriggers) and count which matches the user's later purchases convert.

The consent gate (``models.consent``) comes first: an event the user has not
allowed personalization for moves only counters, a session summary counts
only if personalization was allowed through all of it, a trigger is
suppressed (reason ``consent``) without marketing consent, and a withdrawal
or erasure request drops everything kept about the user but the consent
itself, and reports an erasure for the sinks to carry out.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from models import cep, outcomes
from models import consent as cons
from models import events as ev
from models import features as feat
from models import governance as gov
from models import profile as prof
from models import segments as seg

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


def _version(view: prof.View) -> int:
    # An absence fires after the user's last event: the later of the clock and the last match.
    seen = view.detector["matches"]
    return max([view.state["now"], *(last for _, last in seen.values())])


def _patterns(view: prof.View) -> dict:
    seen = view.detector["matches"]
    return {name: {"matches": n, "last": last} for name, (n, last) in sorted(seen.items())}


def _flags(view: prof.View) -> dict:
    flags = prof.FIELDS["flags"](view)
    version = view["version"]
    within = view.params.pattern_flag_within_ms
    for name, (_, last) in view.detector["matches"].items():
        flags[f"pattern:{name}"] = version - last <= within
    return flags


# The snapshot's fields when the patterns run: the profile's, and what the patterns found.
FIELDS = {**prof.FIELDS, "version": _version, "flags": _flags, "patterns": _patterns}


def view(params: prof.ProfileParams, state: dict, detector: dict | None = None) -> prof.View:
    """The snapshot (below) as a view whose fields are computed when read (``prof.View``)."""
    if detector is None:
        return prof.View(params, state)
    return prof.View(params, state, FIELDS, detector)


def snapshot(params: prof.ProfileParams, state: dict, detector: dict | None = None) -> dict:
    """The profile snapshot, with what the patterns found when they run.

    ``patterns`` holds each pattern's match count and last match time, and the
    flag ``pattern:NAME`` is set while the last match is within
    ``params.pattern_flag_within_ms`` of the snapshot's version. An absence
    fires after the user's last event, so the version is the later of the
    profile's clock and the last match.
    """
    return view(params, state, detector).materialize()


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
    consent: cons.ConsentParams = field(default_factory=cons.ConsentParams)
    retention_ms: int = 30 * 86_400_000
    # How long a withdrawn consent is remembered after the user's last event.
    consent_memory_ms: int = 400 * 86_400_000
    segments: tuple = ()  # compiled rule segments (models.segments), parents first
    models: frozenset = frozenset()  # online models fed from here (PURCHASE_INTENT, ...)
    churn_horizon_ms: int = 7 * 86_400_000  # no new session this long after one: churned
    # The recommender learns lists within rule segments (its clicks carry the user's).
    recommend_within_segments: bool = False
    # Score the open session for purchase intent at these of its events (1st, 3rd, ...),
    # before any purchase in it: what a shop would be served there (``microtarget
    # report``: the served-score AUC). Empty, the default: no probes.
    intent_probes: tuple = ()
    # Purchase intent also learns a session as of these of its events (before any
    # purchase), labelled at its close: the model is asked at every event, so it learns
    # from sessions cut where it is asked, not only from whole ones (``ModelsConfig``).
    intent_prefixes: tuple = ()
    # Event fields the report's audit records group users by, besides AUDIT_EVENT_FIELDS.
    audit_fields: tuple = ()


@dataclass
class Step:
    """What one release produced."""

    snapshot: dict | None = None
    triggers: list = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # counter name -> increment
    deadline: int | None = None  # the earliest absence deadline still open
    erasures: list = field(default_factory=list)  # erasure records for the sinks
    segment_changes: list = field(default_factory=list)  # schemas/segment_change.avsc
    model_inputs: list = field(default_factory=list)  # examples and requests (models.learning)


def new_user_state(user: str) -> dict:
    """All the pipeline keeps for one user."""
    state = {"consent": cons.new_state(), "seen": None}
    _forget(state, user)
    return state


def _forget(state: dict, user: str) -> None:
    # Everything personal goes; what the user allowed stays.
    state["profile"] = prof.new_state(user)
    state["patterns"] = cep.new_state()
    state["governance"] = gov.new_state()
    state["outcomes"] = outcomes.new_state()
    state["segments"] = {}  # segment -> joined at
    state["segment_outcomes"] = outcomes.new_state()  # entries and visits awaiting a purchase
    state["model"] = {"tail": None, "sessions": {}}  # sessions followed for the models


def expires_at(params: TimelineParams, state: dict) -> int:
    """When the user's state is dropped if nothing more happens.

    A withdrawn consent (any purpose stated ``false``) is remembered longer than
    a profile: an erased user must not be profiled again, nor a user who said
    no to marketing be sent triggers, on the default consent when they come back.
    """
    withdrawn = False in state["consent"]["purposes"].values()
    return state["seen"] + (
        max(params.consent_memory_ms, params.retention_ms) if withdrawn else params.retention_ms
    )


def upgrade(state: dict) -> dict:
    """A state kept by an older version, with what this one expects (mutated, returned)."""
    state.setdefault("consent", cons.new_state())
    state.setdefault("seen", state["profile"]["now"])
    state.setdefault("segments", {})
    state.setdefault("segment_outcomes", outcomes.new_state())
    state.setdefault("model", {"tail": None, "sessions": {}})
    return state


def late_consent(params: TimelineParams, state: dict, event: dict, released: int) -> Step:
    """Apply the consent of an event that came after the timeline was released past it.

    Such an event cannot be put in order any more, but a withdrawal or an
    erasure request must not be lost: it takes effect now, as of the
    released-up-to time (so everything written so far is erased).
    """
    step = Step()
    at = max(event["timestamp"], released)
    if cons.observe(params.consent, state["consent"], {**event, "timestamp": at}) == cons.ERASE:
        _forget(state, state["profile"]["user_id"])
        step.erasures.append(
            erasure_record(state["profile"]["user_id"], {**event, "timestamp": at})
        )
        step.counts["erasures"] += 1
    step.counts["late_consent_applied"] += 1
    state["seen"] = at if state["seen"] is None else max(state["seen"], at)
    return step


def erasure_record(user: str, event: dict) -> dict:
    """What the sinks need to erase a user: who, as of when, and why."""
    return {
        "user_id": user,
        "requested_at": event["timestamp"],
        "event_id": event["event_id"],
        "reason": event["event_type"],
    }


# What a user's audit record keeps of the counts: the A/B tests of triggers, segment lift.
AUDIT_COUNTS = (
    "matches.",
    "triggers.",
    "triggers_holdout.",
    "converted_treatment.",
    "converted_control.",
    "segment_entries.",
    "segment_converted.",
    "visits",
)
AUDIT_EVENT_FIELDS = ("device", "country", "region")


def audit_record(
    user: str,
    events: list,
    counts: dict,
    snapshot: dict | None,
    fields: tuple = (),
    marketing: bool = True,
) -> dict:
    """One user's share of a run, for the report (``microtarget report``): the counts
    it added (``AUDIT_COUNTS``) and the groups it falls in (its most frequent device,
    country and region in the events, and of ``fields``, ties by name; price band and
    new or returning from its last profile snapshot), and whether marketing was allowed.

    >>> events = [{"device": "mobile", "country": "DE"}, {"device": "desktop"},
    ...           {"device": "mobile"}]
    >>> record = audit_record("u1", events, {"visits": 2, "items_released": 3},
    ...                       {"price_band": "low", "flags": {"returning": True}})
    >>> record["counts"]
    {'visits': 2}
    >>> record["groups"]
    {'device': 'mobile', 'country': 'DE', 'price_band': 'low', 'visitor': 'returning'}
    """
    groups: dict = {}
    for name in dict.fromkeys(AUDIT_EVENT_FIELDS + tuple(fields)):
        seen: dict = {}
        for event in events:
            value = event.get(name)
            if value is not None:
                seen[value] = seen.get(value, 0) + 1
        if seen:
            groups[name] = min(seen, key=lambda value: (-seen[value], value))
    if snapshot is not None:
        if snapshot.get("price_band") is not None:
            groups["price_band"] = snapshot["price_band"]
        returning = (snapshot.get("flags") or {}).get("returning")
        groups["visitor"] = "returning" if returning else "new"
    kept = {name: n for name, n in sorted(counts.items()) if n and name.startswith(AUDIT_COUNTS)}
    return {"user_id": user, "counts": kept, "groups": groups, "marketing": marketing}


def advance(params: TimelineParams, state: dict, ready: list, now: int) -> Step:
    """Apply released items (sorted here) and fire pattern deadlines up to ``now``.

    ``now`` is the released-up-to time: every item at or before it is in
    ``ready`` or was released before. Mutates ``state``.
    """
    step = Step()
    user = state["profile"]["user_id"]
    consent = state["consent"]
    dropped = state["patterns"]["dropped"]
    touched = False  # the profile or the patterns changed: a snapshot is due
    applied = False  # an item changed the profile
    for item in sorted(ready, key=order):
        ts, _, kind, payload = item
        state["seen"] = ts if state["seen"] is None else max(state["seen"], ts)
        if params.patterns:
            # Deadlines before the item fire first (under the consent as it was then), so
            # what the item sees does not depend on where a release happened to end.
            due = cep.expire(params.patterns, state["patterns"], ts - 1)
            _govern(params, state, user, due, step)
            touched = touched or bool(due)
        if kind == EVENT:
            if cons.observe(params.consent, consent, payload) == cons.ERASE:
                _forget(state, user)
                dropped, touched = 0, False
                # Not published yet, and no longer allowed to be.
                step.counts["triggers_dropped_erasure"] += len(step.triggers)
                step.triggers = []
                step.erasures.append(erasure_record(user, payload))
                step.counts["erasures"] += 1
                if RECOMMENDATIONS in params.models:
                    # The recommender holds the user's sessions: they go too.
                    x = {"user": user}
                    _input(step, RECOMMENDATIONS, "forget", user, ts, x, ident=payload["event_id"])
            if not cons.allows(params.consent, consent, cons.PERSONALIZATION):
                step.counts["consent_blocked"] += 1
                continue
        elif not cons.continuous(params.consent, consent, payload["start"]):
            step.counts["sessions_consent_blocked"] += 1
            continue
        elif state["profile"]["now"] is None:
            # A session none of whose events reached the profile (they came too late for
            # it, or a runner released the summary first): there is nothing to summarize.
            step.counts["sessions_without_events"] += 1
            continue
        touched = applied = True
        if params.models:
            _follow(params, state, item, step)
        if kind == EVENT and (params.segments or params.patterns):
            _lift(params, state, payload, step)
        apply(params.profile, state["profile"], item)
        if not params.patterns or kind != EVENT:
            _evaluate_segments(params, state, step)
            continue
        detector = state["patterns"]
        event = cep.view(detector, payload, params.session_gap_ms)
        matches = cep.advance(params.patterns, detector, event)
        # Deadlines before this event fire before it; what it completes, after it.
        earlier = [m for m in matches if m["event_time"] < ts]
        _govern(params, state, user, earlier, step)
        for pattern, group in outcomes.observe(state["outcomes"], event):
            step.counts[f"converted.{pattern}"] += 1
            if group != outcomes.SUPPRESSED:
                step.counts[f"converted_{group}.{pattern}"] += 1
        _govern(params, state, user, matches[len(earlier) :], step)
        _evaluate_segments(params, state, step)
    detector = state["patterns"]
    if params.patterns:
        expired = cep.expire(params.patterns, detector, now)
        _govern(params, state, user, expired, step)
        touched = touched or bool(expired)
        step.deadline = cep.deadline(params.patterns, detector)
        step.counts["partial_matches_dropped"] += detector["dropped"] - dropped
    if touched:
        step.snapshot = snapshot(
            params.profile, state["profile"], detector if params.patterns else None
        )
        if params.segments:
            step.snapshot["segments"] = dict(sorted(state["segments"].items()))
        if params.models and applied:
            # Only when an item changed the user: a release for a deadline alone comes
            # later than the profile's clock, too late for the learners' order.
            _requests(params, state, step)
    return step


PURCHASE_INTENT = "purchase_intent"
INTENT_PROBES = (1, 3, 5)  # the events of a session the report scores (intent_probes)
CHURN_RISK = "churn_risk"
CLUSTERS = "clusters"
RECOMMENDATIONS = "recommendations"
MODELS = (PURCHASE_INTENT, CHURN_RISK, CLUSTERS, RECOMMENDATIONS)


def _input(step: Step, model: str, kind: str, user: str, at: int, x: dict, y=None, ident=""):
    step.model_inputs.append(
        {"model": model, "kind": kind, "user_id": user, "at": at, "x": x, "y": y, "id": ident}
    )


def _follow(params: TimelineParams, state: dict, item: tuple, step: Step) -> None:
    """Feed the models' sessions with one item, before it is applied to the profile."""
    ts, _, kind, payload = item
    followed = state["model"]
    user = state["profile"]["user_id"]
    if kind == EVENT:
        tail = followed["tail"]
        # No open session: a runner released this session's summary before this event
        # (Prism cuts session windows apart); the event opens a session of its own.
        if tail is None or ts - tail >= params.session_gap_ms or not followed["sessions"]:
            fresh = state["profile"]["now"] is None
            before = {} if fresh else prof.View(params.profile, state["profile"])
            if tail is not None and CHURN_RISK in params.models:
                churned = ts - tail > params.churn_horizon_ms
                x = feat.user_features(before)
                _input(step, CHURN_RISK, "example", user, ts, x, churned, f"{user}:{tail}")
            followed["sessions"][ts] = followed["latest"] = feat.new_session(payload, before)
        followed["tail"] = ts if tail is None else max(tail, ts)
        start = max(followed["sessions"])
        current = followed["sessions"][start]
        feat.add(current, payload)
        if (
            params.intent_probes
            and not current["frozen"]
            and current["events"] in params.intent_probes
            and PURCHASE_INTENT in params.models
        ):
            # The session's score as of this event, for the report (never written to Redis).
            x = feat.session_features(current)
            _input(
                step,
                PURCHASE_INTENT,
                "probe",
                user,
                ts,
                x,
                ident=f"{user}:{start}:{current['events']}",
            )
        if (
            params.intent_prefixes
            and not current["frozen"]
            and current["events"] in params.intent_prefixes
            and PURCHASE_INTENT in params.models
        ):
            # Learned when the session closes, with its outcome: the values only (the
            # names are those of every session's features, in their order).
            values = tuple(feat.session_features(current).values())
            current["prefixes"].append((current["events"], values))
        product = payload.get("product_id")
        if RECOMMENDATIONS in params.models and product is not None:
            # A click for the recommender; a marked period (a data set's test part) with it.
            x = {
                "user": user,
                "item": product,
                "bought": payload["event_type"] == ev.PURCHASE,
                "period": (payload.get("properties") or {}).get("split"),
            }
            if params.recommend_within_segments and state["segments"]:
                # The rule segments the user is in, for lists learned within them.
                x["segments"] = sorted(state["segments"])
            _input(step, RECOMMENDATIONS, "example", user, ts, x, ident=payload["event_id"])
        return
    # A closed session: what it was before any purchase, and whether it ended in one.
    start = payload["start"]
    for begun in [b for b in followed["sessions"] if b <= start]:
        session = followed["sessions"].pop(begun)
        if begun != start:
            continue  # cut differently (events kept out by consent): not learned
        bought = session["purchased"] or bool(payload.get("purchases"))
        if PURCHASE_INTENT in params.models:
            # The session as of its k-th events and whole (up to a purchase): one example
            # each (a prefix as long as the whole is the whole's).
            whole = feat.session_features(session)
            for k, values in session.get("prefixes", ()):
                if k < session["events"]:
                    x = dict(zip(whole, values, strict=True))
                    ident = f"{user}:{start}#{k}"
                    _input(step, PURCHASE_INTENT, "prefix", user, ts, x, bought, ident)
            _input(step, PURCHASE_INTENT, "example", user, ts, whole, bought, f"{user}:{start}")
    if CLUSTERS in params.models:
        x = feat.user_features(prof.View(params.profile, state["profile"]))
        _input(step, CLUSTERS, "example", user, ts, x, None, f"{user}:{start}")


def _requests(params: TimelineParams, state: dict, step: Step) -> None:
    """The user's current scores are wanted: one request per model, as of the profile's clock."""
    user = state["profile"]["user_id"]
    at = state["profile"]["now"]
    if at is None:
        return
    # The latest session, open or closed: the same at the end of any run, however its
    # releases fell (a closed session stays the user's latest until another begins).
    latest = state["model"].get("latest")
    if PURCHASE_INTENT in params.models and latest is not None:
        x = feat.session_features(latest)
        _input(step, PURCHASE_INTENT, "request", user, at, x, ident=f"{user}:{at}")
    x = feat.user_features(step.snapshot)
    for model in (CHURN_RISK, CLUSTERS):
        if model in params.models:
            _input(step, model, "request", user, at, x, ident=f"{user}:{at}")
    if RECOMMENDATIONS in params.models:
        _input(step, RECOMMENDATIONS, "request", user, at, {"user": user}, ident=f"{user}:{at}")


def _evaluate_segments(params: TimelineParams, state: dict, step: Step) -> None:
    # After every item (event or closed session), never at a release boundary: releases
    # fall differently in batch and streaming, items do not, so neither do memberships.
    # An absence that fires between items shows at the user's next item.
    if not params.segments:
        return
    # Only the fields the rules read are computed, each once.
    fields = view(params.profile, state["profile"], state["patterns"] if params.patterns else None)
    changes = seg.evaluate(params.segments, fields, state["segments"], state["profile"]["now"])
    for change in changes:
        if change["change"] == seg.ENTER:
            step.counts[f"segment_entries.{change['segment']}"] += 1
            entry = {"pattern": change["segment"], "keys": {}, "event_time": change["event_time"]}
            outcomes.track(state["segment_outcomes"], entry, "entered", params.attribution_ms)
    step.segment_changes += changes


VISIT = "*visit"


def _lift(params: TimelineParams, state: dict, event: dict, step: Step) -> None:
    """Purchases after segment entries, and after visits (the base rate), within the window.

    Counters ``segment_entries.NAME`` / ``segment_converted.NAME`` and ``visits`` /
    ``visits_converted``: the lift of a segment is its conversion rate over the visits'.
    """
    opened = state["segment_outcomes"]
    for name, _ in outcomes.observe(opened, event):
        step.counts["visits_converted" if name == VISIT else f"segment_converted.{name}"] += 1
    last = state["profile"]["last_seen"]
    ts = event["timestamp"]
    if last is None or ts - last >= params.session_gap_ms:
        step.counts["visits"] += 1
        visit = {"pattern": VISIT, "keys": {}, "event_time": ts}
        outcomes.track(opened, visit, "visit", params.attribution_ms)


def _govern(params: TimelineParams, state: dict, user: str, matches: list, step: Step) -> None:
    # Each batch is later than the one before; inside one, deadlines of several patterns
    # can interleave: govern in event time (then trigger id), not pattern order.
    for match in sorted(matches, key=lambda m: gov.order(m, user)):
        pattern = match["pattern"]
        step.counts[f"matches.{pattern}"] += 1
        if cons.allows(params.consent, state["consent"], cons.MARKETING):
            trigger, reason = gov.decide(params.governance, state["governance"], user, match)
        else:
            trigger, reason = None, "consent"
        if trigger is None:
            step.counts[f"triggers_suppressed_{reason}"] += 1
            group = outcomes.SUPPRESSED
        else:
            step.counts["triggers"] += 1
            step.counts[f"triggers.{pattern}"] += 1
            group = outcomes.CONTROL if trigger["holdout"] else outcomes.TREATMENT
            if trigger["holdout"]:
                step.counts["triggers_holdout"] += 1
                step.counts[f"triggers_holdout.{pattern}"] += 1
            step.triggers.append(trigger)
        outcomes.track(state["outcomes"], match, group, params.attribution_ms)
    if matches:
        newest = max(match["event_time"] for match in matches)
        gov.prune(params.governance, state["governance"], newest)
