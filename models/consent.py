"""A user's consent, followed in event-time order: what each event may be used for.

Pure core of the consent gate inside ``UserTimeline`` (the one place where a
user's events are already in event-time order, which inheriting the last
known consent needs). Three purposes are known:

``analytics``        aggregate counting (trending items, pipeline counters)
``personalization``  the profile, segments, patterns and scores
``marketing``        triggers published for action

An event that carries ``consent`` (a map purpose -> bool) updates what is
known; purposes it does not mention keep their last known value, and a
purpose never stated follows ``consent.default`` of the config. Two event
types change consent without a map: ``consent_revoked`` withdraws every
purpose (with a map, only the ones it names), and ``erasure_requested``
withdraws every purpose and asks for the user's data to be deleted.

On every ``erasure_requested``, on a ``consent_revoked`` that leaves
personalization withdrawn, and when an event first states personalization
``false``, ``observe`` answers ``ERASE``: the timeline drops the user's
profile, patterns and governance and the sinks delete the user's keys
(even a user the timeline had forgotten may still have keys in Redis).
Consent withdrawn stays withdrawn (stated, not defaulted) until an event
grants it again, so an erased user is not profiled again on the default.
"""

from __future__ import annotations

from dataclasses import dataclass

from models import events as ev

ANALYTICS = "analytics"
PERSONALIZATION = "personalization"
MARKETING = "marketing"
PURPOSES = (ANALYTICS, PERSONALIZATION, MARKETING)
ERASE = "erase"
CONSENT_EVENTS = frozenset({ev.CONSENT_CHANGE, ev.CONSENT_REVOKED, ev.ERASURE_REQUESTED})


@dataclass(frozen=True)
class ConsentParams:
    """``consent.default``: what a purpose never stated by the user is."""

    default: bool = True


def new_state() -> dict:
    """Nothing stated yet; ``since`` is when personalization last changed."""
    return {"purposes": {}, "since": None, "erased_at": None}


def allows(params: ConsentParams, state: dict, purpose: str) -> bool:
    """Whether ``purpose`` is allowed now."""
    return state["purposes"].get(purpose, params.default)


def states_consent(event: dict) -> bool:
    """Whether the event says anything about consent (a map, or a consent event type)."""
    return bool(event.get("consent")) or event["event_type"] in CONSENT_EVENTS


def observe(params: ConsentParams, state: dict, event: dict) -> str | None:
    """Fold one event's consent information in; ``ERASE`` if the user's data must go.

    >>> params, state = ConsentParams(default=True), new_state()
    >>> observe(params, state, {"event_type": "product_view", "timestamp": 1})
    >>> observe(params, state, {"event_type": "consent_revoked", "timestamp": 5})
    'erase'
    >>> allows(params, state, PERSONALIZATION), state["since"]
    (False, 5)
    >>> observe(params, state, {"event_type": "product_view", "timestamp": 6,
    ...                          "consent": {"personalization": True}})
    >>> allows(params, state, PERSONALIZATION), allows(params, state, MARKETING)
    (True, False)
    """
    kind = event["event_type"]
    stated = event.get("consent") or {}
    if kind == ev.ERASURE_REQUESTED or kind == ev.CONSENT_REVOKED and not stated:
        stated = dict.fromkeys(PURPOSES, False)
    if not stated:
        return None
    before = allows(params, state, PERSONALIZATION)
    already_withdrawn = state["purposes"].get(PERSONALIZATION) is False
    state["purposes"].update(stated)
    after = allows(params, state, PERSONALIZATION)
    ts = event["timestamp"]
    if before != after:
        state["since"] = ts
    # A withdrawal erases even when the state forgot the user (after retention): Redis
    # may still hold what was written before. Repeating a withdrawal erases nothing more.
    withdrawn = stated.get(PERSONALIZATION) is False and not already_withdrawn
    if kind == ev.ERASURE_REQUESTED or (kind == ev.CONSENT_REVOKED and not after) or withdrawn:
        state["erased_at"] = ts
        return ERASE
    return None


def continuous(params: ConsentParams, state: dict, start: int) -> bool:
    """Whether personalization has been allowed without a break since ``start``."""
    if not allows(params, state, PERSONALIZATION):
        return False
    return state["since"] is None or state["since"] <= start
