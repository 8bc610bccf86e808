"""Event-time ordered release, shared by the stateful DoFns that need their input in order.

Items are tuples whose first element is their event time in ms. A DoFn
``hold``s each item in a bag state and keeps one watermark timer at the
earliest ``time + allowed_lateness`` it has not yet released; when the timer
fires at ``T``, ``release`` hands back every held item at or before
``T - allowed_lateness`` and re-arms the timer at the latest item still held,
so a bounded replay fires a handful of times per key, not once per item.
An item at or before what was already released can no longer be put in
order: ``hold`` says so and the caller decides (dead letter, counter).

The released-up-to time and the timer's due time live in one state cell
(``clock``, or ``Fields`` with a step's own values).
"""

from __future__ import annotations

from apache_beam.coders import NullableCoder, TupleCoder, VarIntCoder
from apache_beam.utils.timestamp import Timestamp


def at(ms: int) -> Timestamp:
    """A Beam timestamp at ``ms`` (exact: no float on the way)."""
    return Timestamp(micros=ms * 1000)


def hold(item, buffer, released, pending, release, lateness_ms: int) -> int | None:
    """Buffer ``item`` and arm the release timer; returns the released-up-to time if too late."""
    ts = item[0]
    released_until = released.read()
    if released_until is not None and ts <= released_until:
        return released_until
    buffer.add(item)
    arm(ts + lateness_ms, pending, release)
    return None


def arm(due: int, pending, release) -> None:
    """Make the release timer fire by ``due`` (it only ever moves earlier here)."""
    pending_at = pending.read()
    if pending_at is None or due < pending_at:
        release.set(at(due))
        pending.write(due)


def release(fired, buffer, released, pending, timer, lateness_ms: int) -> list:
    """Held items at or before ``fired - lateness`` (unsorted); the rest stay held.

    A runner may fire one key's timers out of order (the FnApiRunner fires all
    of a bounded input's timers at once): the released-up-to time never moves
    back, so a timer older than what was released hands back nothing.
    """
    cutoff = fired.micros // 1000 - lateness_ms
    released_until = released.read()
    if released_until is not None and cutoff < released_until:
        cutoff = released_until
    ready, rest = [], []
    for item in buffer.read():
        (ready if item[0] <= cutoff else rest).append(item)
    buffer.clear()
    for item in rest:
        buffer.add(item)
    if rest:
        due = max(item[0] for item in rest) + lateness_ms
        timer.set(at(due))
        pending.write(due)
    else:
        pending.clear()
    released.write(cutoff)
    return ready


class Fields:
    """A ReadModifyWrite state cell holding a tuple, each element read and written alone.

    Steps keep several small values of a key (the released-up-to time, the
    pending timer's due time, ...) in one cell rather than one cell each:
    every cell is a state read, a write and, on a remote runner, a message
    at each commit. Each of ``fields()`` has the ``read``/``write``/``clear`` of a
    cell of its own; the cell is cleared when every field is None.
    """

    __slots__ = ("_state", "_size")

    def __init__(self, state, size: int):
        self._state = state
        self._size = size

    def fields(self) -> tuple[_Field, ...]:
        return tuple(_Field(self, index) for index in range(self._size))

    def read(self) -> tuple:
        value = self._state.read()
        return (None,) * self._size if value is None else value

    def write(self, value: tuple) -> None:
        if all(v is None for v in value):
            self._state.clear()
        else:
            self._state.write(value)


class _Field:
    __slots__ = ("_cell", "_index")

    def __init__(self, cell: Fields, index: int):
        self._cell = cell
        self._index = index

    def read(self):
        return self._cell.read()[self._index]

    def write(self, value) -> None:
        values = list(self._cell.read())
        values[self._index] = value
        self._cell.write(tuple(values))

    def clear(self) -> None:
        self.write(None)


CLOCK_CODER = TupleCoder([NullableCoder(VarIntCoder()), NullableCoder(VarIntCoder())])


def clock(state) -> tuple[_Field, _Field]:
    """``(released, pending)`` of a key, in one cell declared with ``CLOCK_CODER``."""
    return Fields(state, 2).fields()
