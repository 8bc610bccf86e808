"""Every change this project makes to Beam's internals, each guarded, measured and undoable.

A patch here is the last resort: Beam has no option for what it does, and a
profile showed it paying. Each one

* applies only on the Beam versions it was written and tested for
  (``Patch.versions``); on any other it logs a warning and Beam's own code runs;
* checks that the code it replaces is still the code it was written against
  (the names that code uses, ``Patch.expects``), and otherwise also leaves Beam
  as it is, with a warning naming what changed;
* can be undone (``restore``), which the tests use to compare its result with
  Beam's own on the same input (``tests/runners/test_beam_patches.py``);
* can be turned off for a measurement: ``MICROTARGET_BEAM_PATCHES=none``, or a
  comma-separated list of the names to keep (``bench/replay.py --patches``).

The patches (``PATCHES``):

``state_cache_sizing``
    Beam's SDK worker weighs each value it caches with ``objsize.get_deep_size``,
    which by default walks the globals of every loaded module on every call to
    leave them out. The patch keeps Beam's own size, referents and filter
    functions and only turns that walk off (state values here are plain data,
    so the sizes are the same, which the test checks).
``dofn_specs_cache``
    The bundle-based DirectRunner (streaming replays) asks
    ``userstate.get_dofn_specs`` for every bundle of every stateful step, and
    each call inspects the signature of every method of the DoFn. Specs are
    class attributes: the patch keeps them per DoFn class.
``pipelined_commits``
    At the end of a bundle Beam's SDK worker commits each bag state cell in
    turn and waits for the runner's answer before the next: one round trip per
    cell. The patch sends every cell's clear and append requests first, in the
    order Beam sends them per cell, then waits for all. Cells that are not bags
    keep Beam's own commit. It matters where a state write is a call to another
    process: live workers on Flink apply it (p50 latency 6.9 to 4.8 s at
    100 events/s when it came); replays do not, where it bought nothing.
``worker_pool``
    Beam's worker pool (an EXTERNAL environment) starts its workers without
    the job's options, so their state cache is 0. ``runners.local.worker_pool``
    subclasses Beam's pool servicer and replaces how it starts a worker; it
    relies on the servicer's ``_worker_processes`` map and constructor. Without
    the patch the pool is Beam's own.

What each buys is measured with ``bench/replay.py --patches`` (bench/RESULTS.md):
on replays, the state cache sizing 3.7 times the Taobao file's rate and 8 times
a many-user file's; the DoFn specs cache about 4 times a streaming replay's.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import apache_beam

log = logging.getLogger(__name__)
BEAM = apache_beam.__version__
ENV = "MICROTARGET_BEAM_PATCHES"


@dataclass
class Patch:
    """One change to Beam: ``install()`` makes it and returns the function that undoes it."""

    name: str
    versions: tuple[str, ...]
    install: Callable[[], Callable[[], None]]
    expects: Callable[[], tuple[object, frozenset[str]]]  # (Beam's code, names it uses)
    applied: bool = False
    _undo: Callable[[], None] | None = field(default=None, repr=False)

    def applies(self) -> str | None:
        """Why the patch cannot apply to the Beam here, or None if it can."""
        if BEAM not in self.versions:
            return f"written and tested for Beam {', '.join(self.versions)}, this is {BEAM}"
        try:
            code, names = self.expects()
        except (ImportError, AttributeError) as exc:
            return f"Beam's code it replaces is gone ({exc})"
        used = set(getattr(code, "__code__", code).co_names)
        if not names <= used:
            return f"Beam's code it replaces changed (no longer uses {sorted(names - used)})"
        return None

    def apply(self) -> bool:
        """Make the change unless it is made, turned off, or does not fit this Beam."""
        if self.applied:
            return True
        if not enabled(self.name):
            return False
        why = self.applies()
        if why is not None:
            log.warning("Beam patch %s not applied: %s; Beam's own code runs", self.name, why)
            return False
        self._undo = self.install()
        self.applied = True
        return True

    def restore(self) -> None:
        """Undo the change (Beam's own code runs again)."""
        if self.applied and self._undo is not None:
            self._undo()
        self.applied = False
        self._undo = None


def enabled(name: str) -> bool:
    """Whether ``$MICROTARGET_BEAM_PATCHES`` (default ``all``) keeps the patch ``name``."""
    chosen = os.environ.get(ENV, "all").strip()
    if chosen in ("", "all"):
        return True
    if chosen == "none":
        return False
    return name in {part.strip() for part in chosen.split(",")}


def _swap(owner, attribute: str, value) -> Callable[[], None]:
    """Set ``owner.attribute`` and return what puts the old value back."""
    old = getattr(owner, attribute)
    setattr(owner, attribute, value)
    return lambda: setattr(owner, attribute, old)


# state_cache_sizing ------------------------------------------------------------------


def _statecache_expects():
    from apache_beam.runners.worker import statecache

    return statecache.get_deep_size, frozenset({"objsize", "get_deep_size"})


def _statecache_install():
    import objsize
    from apache_beam.runners.worker import statecache

    size_func = statecache._size_func
    referents_func = statecache._get_referents_func
    filter_func = statecache._filter_func

    def get_deep_size(*objs):
        return objsize.get_deep_size(
            *objs,
            get_size_func=size_func,
            get_referents_func=referents_func,
            filter_func=filter_func,
            exclude_modules_globals=False,
        )

    return _swap(statecache, "get_deep_size", get_deep_size)


# dofn_specs_cache --------------------------------------------------------------------


def _specs_expects():
    from apache_beam.runners.direct import transform_evaluator  # noqa: F401 (must exist)
    from apache_beam.transforms import userstate

    return userstate.is_stateful_dofn, frozenset({"get_dofn_specs"})


def _specs_install():
    # direct_runner and direct_userstate call through ``userstate``, patched below.
    from apache_beam.runners.direct import transform_evaluator
    from apache_beam.transforms import userstate

    inspect_specs = userstate.get_dofn_specs
    known: dict = {}

    def get_dofn_specs(dofn):
        kind = type(dofn)
        specs = known.get(kind)
        if specs is None:
            specs = known[kind] = inspect_specs(dofn)
        return specs

    def is_stateful_dofn(dofn) -> bool:
        state_specs, timer_specs = get_dofn_specs(dofn)
        return bool(state_specs or timer_specs)

    replacements = {"get_dofn_specs": get_dofn_specs, "is_stateful_dofn": is_stateful_dofn}
    undo = [
        _swap(module, name, value)
        for module in (userstate, transform_evaluator)
        for name, value in replacements.items()
        if hasattr(module, name)
    ]
    return lambda: [step() for step in reversed(undo)]


# pipelined_commits -------------------------------------------------------------------

_BAG_FIELDS = frozenset(
    {"_cleared", "_added_elements", "_state_handler", "_state_key", "_value_coder"}
)


def _commits_expects():
    from apache_beam.runners.worker import bundle_processor

    bag = bundle_processor.SynchronousBagRuntimeState
    if not set(bag.__init__.__code__.co_names) >= _BAG_FIELDS:
        raise AttributeError("SynchronousBagRuntimeState's fields changed")
    if set(bag.commit.__code__.co_names) < {"clear", "extend", "get_impl", "get"}:
        raise AttributeError("SynchronousBagRuntimeState.commit changed")
    return bundle_processor.FnApiUserStateContext.commit, frozenset({"_all_states", "commit"})


def _commits_install():
    from apache_beam.runners.worker import bundle_processor

    bag_type = bundle_processor.SynchronousBagRuntimeState

    def commit(self) -> None:
        waiting = []
        for state in self._all_states.values():
            bag = getattr(state, "_underlying_bag_state", state)
            if type(bag) is not bag_type:
                state.commit()
                continue
            future = None
            if bag._cleared:
                future = bag._state_handler.clear(bag._state_key)
            if bag._added_elements:
                future = bag._state_handler.extend(
                    bag._state_key, bag._value_coder.get_impl(), bag._added_elements
                )
            if future is not None:
                waiting.append(future)
        for future in waiting:
            future.get()

    commit.__module__ = __name__
    return _swap(bundle_processor.FnApiUserStateContext, "commit", commit)


# worker_pool -------------------------------------------------------------------------


def _pool_expects():
    from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer

    return BeamFnExternalWorkerPoolServicer.__init__, frozenset({"_worker_processes"})


PATCHES = {
    patch.name: patch
    for patch in (
        Patch("state_cache_sizing", ("2.77.0",), _statecache_install, _statecache_expects),
        Patch("dofn_specs_cache", ("2.77.0",), _specs_install, _specs_expects),
        Patch("pipelined_commits", ("2.77.0",), _commits_install, _commits_expects),
        # Installed by runners.local.worker_pool (it subclasses the servicer); nothing to swap here.
        Patch("worker_pool", ("2.77.0",), lambda: lambda: None, _pool_expects),
    )
}
# What an SDK worker in this process or a pool's worker gets.
WORKER = ("state_cache_sizing", "pipelined_commits")


def apply(*names: str) -> dict[str, bool]:
    """Apply the named patches (idempotent); which of them are in effect."""
    return {name: PATCHES[name].apply() for name in names}


def apply_worker() -> dict[str, bool]:
    """The patches of an SDK worker (state cache sizing, pipelined commits)."""
    return apply(*WORKER)


def restore_all() -> None:
    """Undo every patch (tests)."""
    for patch in PATCHES.values():
        patch.restore()
