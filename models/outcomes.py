"""Outcomes of pattern matches: did the user buy afterwards?

Pure core behind the conversion counters of ``UserTimeline``. Every match is
remembered for ``window_ms`` after its event time, with its group: ``control``
or ``treatment`` if it became a trigger (held out or not), ``suppressed`` if
governance did not send it. A later purchase of the same user *converts* each
remembered match whose keys it fits (a match keyed by ``product_id`` or
``category`` needs a purchase with the same value; other keys are ignored)
and that has not converted yet; each match converts at most once.

So "what share of abandoned carts were bought later" is
``converted / matches`` of ``cart_abandonment``, and the lift of acting on a
pattern is the conversion rate of ``treatment`` against ``control``.

State per user: a list of open matches (oldest first), at most ``cap``
(the oldest are dropped first), each dropped once its window has passed.
"""

from __future__ import annotations

from models import events as ev

TREATMENT = "treatment"
CONTROL = "control"
SUPPRESSED = "suppressed"
KEYED_FIELDS = ("product_id", "category")


def new_state() -> list:
    """Open matches of one user: ``[pattern, keys, until, group]`` entries."""
    return []


def track(state: list, match: dict, group: str, window_ms: int, cap: int = 200) -> None:
    """Remember a match (mutates ``state``)."""
    keys = {k: v for k, v in match["keys"].items() if k in KEYED_FIELDS}
    state.append([match["pattern"], keys, match["event_time"] + window_ms, group])
    del state[: max(0, len(state) - cap)]


def observe(state: list, event: dict) -> list[tuple[str, str]]:
    """``(pattern, group)`` of every open match this event converts; expired ones are dropped.

    >>> s = new_state()
    >>> track(s, {"pattern": "cart", "keys": {"product_id": "p1"}, "event_time": 0}, "control", 10)
    >>> observe(s, {"event_type": "purchase", "product_id": "p2", "timestamp": 5})
    []
    >>> observe(s, {"event_type": "purchase", "product_id": "p1", "timestamp": 6})
    [('cart', 'control')]
    >>> s
    []
    """
    now = event["timestamp"]
    state[:] = [entry for entry in state if entry[2] >= now]
    if event["event_type"] != ev.PURCHASE or not state:
        return []
    converted, kept = [], []
    for entry in state:
        pattern, keys, _, group = entry
        if all(event.get(name) == value for name, value in keys.items()):
            converted.append((pattern, group))
        else:
            kept.append(entry)
    state[:] = kept
    return converted
