"""Trigger governance: which pattern matches become triggers, and who is held out.

Pure core behind ``GovernTriggers``. Matches of one user are handed over in
event-time order (event time, then trigger id); ``decide`` turns each into a
trigger or says why not:

* **send once**: the trigger id is a hash of (pattern, user, first matched
  event id), so the same match found again (a replay, a second branch of the
  same run) is a ``duplicate``; ids are remembered for ``remember_ms`` of
  event time;
* **cooldown**: no second trigger of a pattern for a user within the
  pattern's cooldown of the last one (``cooldown``);
* **daily cap**: at most ``daily_cap`` triggers per user and UTC day of event
  time (``daily_cap``);
* **holdout**: a hash of (salt, user, pattern) puts each pair in the control
  group with probability ``holdout``; control triggers pass the same rules
  (so both groups are treated alike) and are recorded with ``holdout: true``
  but not published for action, so the lift of acting can be measured.

Every decision depends only on the matches and their event times, never on
the wall clock or arrival order, so a replay decides what the live run did.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from models.events import DAY_MS, HOUR_MS

DUPLICATE = "duplicate"
COOLDOWN = "cooldown"
DAILY_CAP = "daily_cap"


@dataclass(frozen=True)
class GovernanceParams:
    """Tuning of governance (validated by ``pipelines.config``)."""

    cooldown_ms: int = HOUR_MS
    daily_cap: int = 5
    holdout: float = 0.1
    remember_ms: int = 7 * DAY_MS
    salt: str = "microtarget"
    # Per pattern overrides of cooldown_ms and holdout.
    cooldowns: dict = field(default_factory=dict)
    holdouts: dict = field(default_factory=dict)


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\x1f".join(parts).encode()).digest()


def trigger_id(pattern: str, user: str, first_event_id: str) -> str:
    """The deterministic id of a trigger.

    >>> tid = trigger_id("cart_abandonment", "u1", "e9")
    >>> len(tid), tid == trigger_id("cart_abandonment", "u1", "e9")
    (32, True)
    """
    return _digest(pattern, user, first_event_id).hex()[:32]


def in_holdout(salt: str, user: str, pattern: str, rate: float) -> bool:
    """Whether (user, pattern) is in the control group; uniform over users for a rate.

    >>> in_holdout("s", "u1", "p", 0.0), in_holdout("s", "u1", "p", 1.0)
    (False, True)
    """
    draw = int.from_bytes(_digest(salt, user, pattern)[:8], "big") / 2.0**64
    return draw < rate


def new_state() -> dict:
    """Governance state of one user."""
    return {"sent": {}, "last": {}, "day": None, "today": 0}


def decide(params: GovernanceParams, state: dict, user: str, match: dict):
    """Govern one match: ``(trigger, None)`` or ``(None, reason)``. Mutates ``state``."""
    pattern = match["pattern"]
    at = match["event_time"]
    ident = trigger_id(pattern, user, match["first_event_id"])
    if ident in state["sent"]:
        return None, DUPLICATE
    cooldown = params.cooldowns.get(pattern, params.cooldown_ms)
    last = state["last"].get(pattern)
    if last is not None and at - last < cooldown:
        return None, COOLDOWN
    day = at // DAY_MS
    if state["day"] != day:
        state["day"], state["today"] = day, 0
    if state["today"] >= params.daily_cap:
        return None, DAILY_CAP
    state["today"] += 1
    state["sent"][ident] = at
    state["last"][pattern] = at
    rate = params.holdouts.get(pattern, params.holdout)
    trigger = {
        "trigger_id": ident,
        "user_id": user,
        "pattern": pattern,
        "pattern_version": match["pattern_version"],
        "matched_event_ids": list(match["matched_event_ids"]),
        "keys": dict(match["keys"]),
        "event_time": at,
        "first_event_time": match["start"],
        "holdout": in_holdout(params.salt, user, pattern, rate),
    }
    return trigger, None


def prune(params: GovernanceParams, state: dict, now: int) -> None:
    """Forget trigger ids older than ``remember_ms`` before ``now``."""
    horizon = now - params.remember_ms
    sent = state["sent"]
    for ident in [i for i, at in sent.items() if at < horizon]:
        del sent[ident]


def order(match: dict, user: str) -> tuple:
    """The order in which one user's matches are governed: event time, then trigger id."""
    return match["event_time"], trigger_id(match["pattern"], user, match["first_event_id"])
