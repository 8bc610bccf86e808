"""The CEP automaton: one user's partial matches of every pattern, advanced event by event.

Pure core behind ``DetectPatterns`` (inside ``UserTimeline``), written by hand
because Beam Python has no CEP library. The timeline hands events over in
event-time order (timestamp, then id); the automaton never reads a clock:

* ``advance(patterns, state, event) -> matches`` first fires every deadline
  before the event's time (``expire``), then moves each partial match (a
  *run*) of each pattern;
* ``expire(patterns, state, now) -> matches`` fires absence patterns whose
  deadline is at or before ``now`` (the caller knows every event up to
  ``now`` has been seen) and prunes runs that can no longer finish;
* ``deadline(patterns, state)`` is the earliest time at which ``expire`` has something
  to fire, for an event-time timer, so "A not followed by B within T" fires
  even when the user sends nothing more.

Semantics, in Flink CEP's terms:

* a new run starts at every event that satisfies the first stage (and has
  every ``same`` field set); the run's key is those fields' values, and every
  later event it takes or that cancels it must carry the same key;
* contiguity between stages is skip-till-next-match: a run waiting under
  ``followed_by`` takes the first event that fits and ignores the others; under
  ``next`` the fitting event must be the very next one of the user, else that
  way is closed. Inside a repeated stage events may be apart unless the stage
  is ``consecutive``;
* where an event fits both "one more of this stage" and "the next stage", the
  run branches in two;
* a match is emitted as soon as it is complete (the shortest match):
  ``at_least N`` as the last stage fires at its Nth event, trailing optional
  stages never delay it;
* a negated stage cancels the run when a fitting event comes between the
  stages it sits between (``not_followed_by``), or as the very next event
  (``not_next``). As the last stage it turns the pattern into an absence:
  the match fires at ``start + within`` (``not_followed_by``), or at the next
  event if it does not fit (``not_next``; at ``start + within`` if no event
  comes before then);
* ``within`` bounds the time from a run's first event to its last;
* after a match, ``skip_past_last_event`` discards every run that started at
  or before the match's last event (of runs that complete on the same event,
  only the oldest matches); ``no_skip`` keeps them all.

State (a plain dict, picklable): the previous event's time and the session
start (for the derived fields ``gap_ms`` and ``session_start``), the runs of
each pattern (at most ``max_partials`` per pattern: the oldest are dropped and
counted), and per pattern the number of matches and the last match time.
"""

from __future__ import annotations

from typing import NamedTuple

from models.patterns import Pattern


class Run(NamedTuple):
    """One partial match."""

    stage: int  # index of the positive stage it is in
    count: int  # events taken in that stage
    ids: tuple  # matched event ids, in order
    start: int  # time of the first event
    first: str  # id of the first event
    last: int  # time of the last event taken
    key: tuple  # values of the pattern's ``same`` fields
    fresh: bool  # the run took the user's previous event (for ``next`` and ``not_next``)
    waiting: bool  # every positive stage is done: only the trailing negation is left


def new_state() -> dict:
    """An empty detector state for one user."""
    return {"last_ts": None, "session_start": None, "runs": {}, "matches": {}, "dropped": 0}


def view(state: dict, event: dict, session_gap_ms: int) -> dict:
    """The event as conditions see it: its fields plus ``gap_ms``, ``session_start``, ``discount``.

    Moves the state's clock to the event (call once per event, in order).

    >>> s = new_state()
    >>> view(s, {"timestamp": 0, "price": 8.0, "list_price": 10.0}, 1000)["discount"]
    0.2
    >>> v = view(s, {"timestamp": 5000}, 1000)
    >>> v["gap_ms"], v["session_start"], v["discount"]
    (5000, 5000, None)
    """
    ts = event["timestamp"]
    last = state["last_ts"]
    gap = None if last is None else ts - last
    if gap is None or gap >= session_gap_ms:
        state["session_start"] = ts
    state["last_ts"] = ts if last is None else max(last, ts)
    price, list_price = event.get("price"), event.get("list_price")
    discount = None
    if price is not None and list_price:
        discount = round(1.0 - price / list_price, 9)
    return {**event, "gap_ms": gap, "session_start": state["session_start"], "discount": discount}


def _match(pattern: Pattern, run: Run, at: int) -> dict:
    return {
        "pattern": pattern.name,
        "pattern_version": pattern.version,
        "matched_event_ids": list(run.ids),
        "first_event_id": run.first,
        "start": run.start,
        "event_time": at,
        "keys": {name: str(value) for name, value in zip(pattern.same, run.key)},
    }


def _key(pattern: Pattern, event: dict) -> tuple | None:
    if not pattern.same:
        return ()
    key = tuple(get(event) for get in pattern.same_getters)
    return None if any(value is None for value in key) else key


def _finishes(pattern: Pattern, stage: int, count: int) -> bool:
    stages = pattern.stages
    return count >= stages[stage].low and all(s.low == 0 for s in stages[stage + 1 :])


def _took(pattern: Pattern, run: Run, stage: int, count: int, event_id: str, ts: int):
    """The run after taking an event into ``stage``: (run, completed)."""
    taken = run._replace(stage=stage, count=count, ids=run.ids + (event_id,), last=ts, fresh=True)
    if not _finishes(pattern, stage, count):
        return taken, False
    if pattern.trailing:
        return taken._replace(waiting=True), False
    return taken, True


def _step(pattern: Pattern, run: Run, event: dict, key, event_id: str, ts: int):
    """(successor runs, completed runs) of one run for one event."""
    if run.waiting:
        ((test, strict),) = pattern.trailing
        if key == run.key and (run.fresh or not strict) and test(event):
            return [], []  # the absence did not hold
        if strict and run.fresh:
            return [], [run._replace(last=ts)]  # the next event was not the negated one
        return [run._replace(fresh=False)], []
    stages = pattern.stages
    stage = stages[run.stage]
    successors, completed = [], []
    room = stage.high is None or run.count < stage.high  # may take one more of this stage
    relaxed = room and not stage.consecutive
    if key == run.key:
        if run.count >= stage.low:
            for j in range(run.stage + 1, len(stages)):
                for test, strict in stages[j].guards:
                    if (run.fresh or not strict) and test(event):
                        return [], []  # a negated stage fitted: the run is cancelled
                if stages[j].low > 0:
                    break
        if room and (run.fresh or not stage.consecutive) and stage.test(event):
            took, done = _took(pattern, run, run.stage, run.count + 1, event_id, ts)
            (completed if done else successors).append(took)
    if run.count >= stage.low:
        for j in range(run.stage + 1, len(stages)):
            following = stages[j]
            relaxed = relaxed or not following.strict
            if key == run.key and (run.fresh or not following.strict) and following.test(event):
                took, done = _took(pattern, run, j, 1, event_id, ts)
                (completed if done else successors).append(took)
            if following.low > 0:
                break
    if not successors and not completed and relaxed:
        successors.append(run._replace(fresh=False))
    return successors, completed


def _advance_one(pattern: Pattern, runs: list, event: dict, event_id: str, ts: int):
    """(runs, matches, dropped) of one pattern after one event."""
    key = _key(pattern, event)
    within = pattern.within
    skip_past = pattern.skip == "skip_past_last_event"
    kept, matches = [], []
    for run in runs:
        if within is not None and not run.waiting and ts - run.start > within:
            continue
        successors, completed = _step(pattern, run, event, key, event_id, ts)
        kept.extend(successors)
        matches.extend(_match(pattern, done, ts) for done in completed)
        if matches and skip_past:
            break  # every other run started at or before this event: all are discarded
    if matches and skip_past:
        kept, matches = [], matches[:1]
    elif key is not None and pattern.stages[0].test(event):
        start = Run(0, 0, (), ts, event_id, ts, key, False, False)
        took, done = _took(pattern, start, 0, 1, event_id, ts)
        if done:
            matches.append(_match(pattern, took, ts))
            if skip_past:
                kept = []
        else:
            kept.append(took)
    dropped = max(0, len(kept) - pattern.max_partials)
    return kept[dropped:], matches, dropped


def _record(state: dict, matches: list) -> None:
    for match in matches:
        seen = state["matches"].setdefault(match["pattern"], [0, None])
        seen[0] += 1
        seen[1] = match["event_time"]


def advance(patterns: tuple[Pattern, ...], state: dict, event: dict) -> list[dict]:
    """Feed one event (as ``view`` made it) to every pattern; returns the matches, in order.

    Mutates ``state``. Deadlines before the event fire first.
    """
    ts = event["timestamp"]
    event_id = event["event_id"]
    matches = expire(patterns, state, ts - 1)
    found = []
    all_runs = state["runs"]
    for pattern in patterns:
        runs, matched, dropped = _advance_one(
            pattern, all_runs.get(pattern.name, ()), event, event_id, ts
        )
        if runs:
            all_runs[pattern.name] = runs
        else:
            all_runs.pop(pattern.name, None)
        state["dropped"] += dropped
        found.extend(matched)
    _record(state, found)
    return matches + found


def expire(patterns: tuple[Pattern, ...], state: dict, now: int) -> list[dict]:
    """Fire absences whose deadline is at or before ``now``; drop runs past ``within``."""
    matches = []
    all_runs = state["runs"]
    for pattern in patterns:
        runs = all_runs.get(pattern.name)
        if not runs or pattern.within is None:
            continue
        within = pattern.within
        kept = [run for run in runs if run.start + within > now]
        if len(kept) == len(runs):
            continue
        fired = [run for run in runs if run.waiting and run.start + within <= now]
        mark = None
        for run in fired:
            if mark is not None and run.start <= mark:
                continue  # discarded by the match before it
            matches.append(_match(pattern, run, run.start + within))
            if pattern.skip == "skip_past_last_event":
                mark = run.last
                kept = [other for other in kept if other.start > mark]
        if kept:
            all_runs[pattern.name] = kept
        else:
            all_runs.pop(pattern.name, None)
    _record(state, matches)
    return matches


def deadline(patterns: tuple[Pattern, ...], state: dict) -> int | None:
    """The earliest time at which ``expire`` fires an absence, or None."""
    due = None
    by_name = {pattern.name: pattern for pattern in patterns}
    for name, runs in state["runs"].items():
        pattern = by_name.get(name)
        if pattern is None or pattern.within is None:
            continue
        for run in runs:
            if run.waiting:
                at = run.start + pattern.within
                due = at if due is None else min(due, at)
    return due
