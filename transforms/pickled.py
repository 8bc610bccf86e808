"""State cells and bags that hold pickled bytes, read and written as Python objects.

A stateful DoFn declares the cell with ``BytesCoder`` (``CODER``) and wraps
the state parameter: ``cell(user).read()`` gives the object back,
``bag(buffer).add(item)`` pickles the item.

Why not Beam's ``PickleCoder``: the SDK worker's state cache keeps the
decoded value of every cell and weighs it with ``objsize`` each time it is
put back (every commit, every bag append), walking every object in it in
Python. For a user's profile state that walk cost more than the pickling
itself. Holding bytes, the cache weighs one object, and the object graph is
built only when a step reads the cell. The bytes are what ``PickleCoder``
writes (``pickle`` at its highest protocol), so state written with either
reads with the other.
"""

from __future__ import annotations

import pickle

from apache_beam.coders import BytesCoder

CODER = BytesCoder()
PROTOCOL = pickle.HIGHEST_PROTOCOL


def dumps(value) -> bytes:
    return pickle.dumps(value, PROTOCOL)


class PickledCell:
    """A ReadModifyWrite state of pickled bytes, as objects."""

    __slots__ = ("_state",)

    def __init__(self, state):
        self._state = state

    def read(self):
        raw = self._state.read()
        return None if raw is None else pickle.loads(raw)

    def holds(self) -> bool:
        """Whether the cell holds a value (without unpickling it)."""
        return self._state.read() is not None

    def write(self, value) -> None:
        self._state.write(dumps(value))

    def clear(self) -> None:
        self._state.clear()


class PickledBag:
    """A Bag state of pickled bytes, as objects."""

    __slots__ = ("_state",)

    def __init__(self, state):
        self._state = state

    def read(self) -> list:
        return [pickle.loads(raw) for raw in self._state.read()]

    def add(self, value) -> None:
        self._state.add(dumps(value))

    def clear(self) -> None:
        self._state.clear()


def cell(state) -> PickledCell:
    return PickledCell(state)


def bag(state) -> PickledBag:
    return PickledBag(state)
