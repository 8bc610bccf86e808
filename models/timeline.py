"""The user timeline's ordering rule and dispatch, as plain functions.

A timeline item is a tuple ``(timestamp_ms, item_id, kind, payload)`` with
``kind`` one of ``EVENT`` or ``SESSION``. Items are applied in
``(timestamp_ms, item_id, kind)`` order, whatever order they arrived in: that
is what makes a replay of a recorded file give what the live run gave.
"""

from __future__ import annotations

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


def apply(params: prof.ProfileParams, state: dict, item: tuple) -> dict:
    """Fold one timeline item into a profile state."""
    ts, _, kind, payload = item
    if kind == EVENT:
        return prof.apply_event(params, state, payload)
    if kind == SESSION:
        return prof.apply_session(params, state, payload, ts)
    raise ValueError(f"unknown timeline item kind {kind!r}")
