"""State layouts the stateful steps share: ``transforms.ordering.Fields``, ``transforms.pickled``.

Beam's state objects exist only inside a running bundle; here the wrappers
get plain objects with the same read/write/clear/add surface, and the tests
check what each wrapper hands Beam. The steps using them run on real runners
in the replay tests.
"""

from __future__ import annotations

from apache_beam.coders import PickleCoder

from transforms import ordering, pickled


class _Cell:
    def __init__(self):
        self.value, self.writes, self.clears = None, 0, 0

    def read(self):
        return self.value

    def write(self, value):
        self.value, self.writes = value, self.writes + 1

    def clear(self):
        self.value, self.clears = None, self.clears + 1


class _Bag:
    def __init__(self):
        self.items = []

    def read(self):
        return list(self.items)

    def add(self, item):
        self.items.append(item)

    def clear(self):
        self.items = []


def test_fields_share_one_cell_and_clear_it_when_all_are_none():
    cell = _Cell()
    released, pending = ordering.Fields(cell, 2).fields()
    assert (released.read(), pending.read()) == (None, None)
    pending.write(5)
    released.write(3)
    assert cell.value == (3, 5)
    pending.clear()
    assert cell.value == (3, None) and (released.read(), pending.read()) == (3, None)
    released.clear()
    assert cell.value is None and cell.clears == 1


def test_the_clock_coder_round_trips_unset_fields():
    for value in ((None, None), (3, None), (None, 7), (1_700_000_000_000, -1)):
        assert ordering.CLOCK_CODER.decode(ordering.CLOCK_CODER.encode(value)) == value


def test_pickled_state_reads_what_pickle_coder_wrote_and_the_other_way():
    state = {"profile": {"events": 3, "recent": ["p1", "p2"]}, "now": 10}
    cell = _Cell()
    cell.write(pickled.CODER.decode(PickleCoder().encode(state)))  # written by PickleCoder
    assert pickled.cell(cell).read() == state
    pickled.cell(cell).write(state)
    assert isinstance(cell.value, bytes)  # what the state cache holds and weighs
    assert PickleCoder().decode(pickled.CODER.encode(cell.value)) == state
    assert pickled.cell(_Cell()).read() is None and not pickled.cell(_Cell()).holds()


def test_pickled_bag_keeps_items_as_bytes_in_order():
    raw = _Bag()
    bag = pickled.bag(raw)
    for item in [(3, "e1", 0, {"a": 1}), (1, "e2", 0, {})]:
        bag.add(item)
    assert all(isinstance(item, bytes) for item in raw.items)
    assert bag.read() == [(3, "e1", 0, {"a": 1}), (1, "e2", 0, {})]
    bag.clear()
    assert bag.read() == []
