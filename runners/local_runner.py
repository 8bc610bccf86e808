"""Run replays on Beam's local runners, tuned for this job's state.

Why the FnApiRunner, named explicitly: ``DirectRunner`` picks its engine per
pipeline, and any processing-time timer (Beam's ``DeduplicatePerKey``, which
deduplication once used, declares one) sends the whole pipeline to the legacy
bundle-based runner: several times slower, and it loses the counters of steps
fed by timers. The FnApiRunner runs every transform here, timers included.

Why the patch: the FnApiRunner's in-process worker caches user state and
weighs each cached value with ``objsize.get_deep_size``, whose default walks
the globals of every loaded module on every call to exclude them. With one
state cell per event id (deduplication was keyed by id then) that walk was
80% of a replay's time (py-spy, 10,000 Taobao events: 18.0 s with it, 3.7 s
without). The patch keeps Beam's own size, referents and filter functions and only turns the
module-globals walk off (state values here are plain data, so the sizes are
the same). It applies to Beam 2.77's ``statecache`` module and is skipped,
with a warning, if that module ever stops matching.

Streaming replays need ``TestStream``, which only the bundle-based
DirectRunner runs. That runner asks ``userstate.get_dofn_specs`` for every
bundle of every stateful step, and each call inspects the signature of every
method of the DoFn: half of a streaming replay's time (py-spy, 3,000 events).
The specs are class attributes, so ``speed_up_bundle_runner`` keeps them per
DoFn class.

``pipeline_state_commits`` changes how Beam's SDK worker ends a bundle: it
sends the writes of all state cells before waiting for any, instead of one
round trip per cell. It matters on Flink, where each is a call to the runner
(live runs apply it to their in-process workers); replays apply it too, so
every replay test runs the same commit path.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)
_patched = False


def speed_up_state_cache() -> bool:
    """Turn off objsize's per-call module-globals walk in Beam's state cache (idempotent)."""
    global _patched
    if _patched:
        return True
    try:
        import objsize
        from apache_beam.runners.worker import statecache

        size_func = statecache._size_func
        referents_func = statecache._get_referents_func
        filter_func = statecache._filter_func
    except (ImportError, AttributeError) as exc:
        log.warning("state cache sizing left as is (Beam internals changed: %s)", exc)
        return False

    def get_deep_size(*objs):
        return objsize.get_deep_size(
            *objs,
            get_size_func=size_func,
            get_referents_func=referents_func,
            filter_func=filter_func,
            exclude_modules_globals=False,
        )

    statecache.get_deep_size = get_deep_size
    _patched = True
    return True


_bundle_patched = False


def speed_up_bundle_runner() -> bool:
    """Keep each DoFn class's state and timer specs instead of inspecting them per bundle."""
    global _bundle_patched
    if _bundle_patched:
        return True
    try:
        # direct_runner and direct_userstate call through ``userstate``, patched below.
        from apache_beam.runners.direct import transform_evaluator
        from apache_beam.transforms import userstate

        inspect_specs = userstate.get_dofn_specs
    except (ImportError, AttributeError) as exc:
        log.warning("bundle runner left as is (Beam internals changed: %s)", exc)
        return False
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

    for module in (userstate, transform_evaluator):
        module.get_dofn_specs = get_dofn_specs
        module.is_stateful_dofn = is_stateful_dofn
    _bundle_patched = True
    return True


_commit_patched = False


def pipeline_state_commits() -> bool:
    """Send all of a bundle's state writes before waiting for any (idempotent).

    At the end of a bundle Beam's SDK worker commits each state cell of each
    key in turn and waits for the runner's answer before the next: one round
    trip per cell. On Flink a release of the user timeline writes several
    cells per user, so the bundle's end, and with it the stage's watermark,
    waited on hundreds of round trips in a row (py-spy: 43% of the worker's
    bundle time in ``commit``). Here every cell's clear and append requests go
    out first, in the same order per cell as Beam sends them, and the commit
    then waits for all. Cells that are not bags (sets, ordered lists) keep
    Beam's own commit.
    """
    global _commit_patched
    if _commit_patched:
        return True
    try:
        from apache_beam.runners.worker import bundle_processor

        bag_type = bundle_processor.SynchronousBagRuntimeState
        context_type = bundle_processor.FnApiUserStateContext
        if not {
            "_cleared",
            "_added_elements",
            "_state_handler",
            "_state_key",
            "_value_coder",
        } <= set(bag_type.__init__.__code__.co_names):
            raise AttributeError("SynchronousBagRuntimeState's fields changed")
    except (ImportError, AttributeError) as exc:
        log.warning("state commits left as is (Beam internals changed: %s)", exc)
        return False

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

    context_type.commit = commit
    _commit_patched = True
    return True
