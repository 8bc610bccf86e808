"""runners.beam_patches: each patch applies to this Beam, only to it, and answers as Beam does."""

from __future__ import annotations

import logging

import apache_beam as beam
import pytest
from apache_beam.coders import PickleCoder, VarIntCoder
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.runners.worker import bundle_processor
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.window import TimestampedValue

from models import timeline
from runners import beam_patches
from transforms.learners import _LearnFn
from transforms.timeline import _TimelineFn


@pytest.fixture(autouse=True)
def beams_own_code():
    """Each test starts and ends with Beam's own code (later replays apply what they need)."""
    beam_patches.restore_all()
    yield
    beam_patches.restore_all()


def test_every_patch_fits_the_beam_installed_here():
    # Fails when a Beam upgrade changes the code a patch replaces: re-measure it, then
    # add the version to its list or drop the patch.
    for name, patch in beam_patches.PATCHES.items():
        assert patch.applies() is None, name
        assert patch.apply(), name
        assert patch.applied


def test_another_beam_version_keeps_beams_own_code(monkeypatch, caplog):
    from apache_beam.runners.worker import bundle_processor, statecache

    own_commit = bundle_processor.FnApiUserStateContext.commit
    own_size = statecache.get_deep_size
    monkeypatch.setattr(beam_patches, "BEAM", "9.99.0")
    with caplog.at_level(logging.WARNING, logger="runners.beam_patches"):
        assert beam_patches.apply_worker() == {
            "state_cache_sizing": False,
            "pipelined_commits": False,
        }
    assert bundle_processor.FnApiUserStateContext.commit is own_commit
    assert statecache.get_deep_size is own_size
    assert "written and tested for Beam 2.77.0, this is 9.99.0" in caplog.text


def test_changed_beam_code_keeps_beams_own_code(monkeypatch, caplog):
    from apache_beam.runners.worker import bundle_processor

    patch = beam_patches.PATCHES["pipelined_commits"]
    own = bundle_processor.FnApiUserStateContext.commit
    monkeypatch.setattr(patch, "expects", lambda: (own, frozenset({"_renamed_states"})))
    with caplog.at_level(logging.WARNING, logger="runners.beam_patches"):
        assert not patch.apply()
    assert bundle_processor.FnApiUserStateContext.commit is own
    assert "no longer uses ['_renamed_states']" in caplog.text


def test_patches_can_be_turned_off_for_a_measurement(monkeypatch):
    monkeypatch.setenv(beam_patches.ENV, "none")
    assert beam_patches.apply_worker() == {"state_cache_sizing": False, "pipelined_commits": False}
    monkeypatch.setenv(beam_patches.ENV, "pipelined_commits")
    assert beam_patches.apply_worker() == {"state_cache_sizing": False, "pipelined_commits": True}


def _user_states() -> list:
    """State values as the pipeline caches them: a timeline's user state, dedupe memory."""
    state = timeline.new_user_state("u1")
    items = [
        timeline.event_item(
            {
                "event_id": f"e{i}",
                "user_id": "u1",
                "event_type": "product_view",
                "timestamp": i * 60_000,
                "product_id": f"p{i % 7}",
                "category": f"c{i % 3}",
                "price": 9.5 + i,
            }
        )
        for i in range(40)
    ]
    timeline.advance(timeline.TimelineParams(), state, items, 40 * 60_000)
    return [state, {f"e{i}": i * 1000 for i in range(500)}, items, "x" * 1000, 12345]


def test_state_cache_sizing_weighs_plain_data_as_beam_does():
    from apache_beam.runners.worker import statecache

    values = _user_states()
    beams = statecache.get_deep_size
    own = [beams(value) for value in values]
    assert beam_patches.apply("state_cache_sizing")["state_cache_sizing"]
    assert statecache.get_deep_size is not beams  # the patched function is in place
    assert [statecache.get_deep_size(value) for value in values] == own


def test_specs_cache_gives_the_specs_beam_inspects():
    from apache_beam.runners.direct import transform_evaluator

    fns = [_TimelineFn(timeline.TimelineParams(), {}, 0, 1), _LearnFn({}, 0), _Sum()]
    own = [userstate.get_dofn_specs(fn) for fn in fns]
    assert beam_patches.apply("dofn_specs_cache")["dofn_specs_cache"]
    assert transform_evaluator.get_dofn_specs is userstate.get_dofn_specs
    assert [userstate.get_dofn_specs(fn) for fn in fns] == own
    assert [userstate.get_dofn_specs(fn) for fn in fns] == own  # from the cache now
    assert all(userstate.is_stateful_dofn(fn) for fn in fns)


class _Sum(beam.DoFn):
    """Cells of several kinds per key, written in one bundle and read back in the next ones.

    Elements, then the timers at their times, then the report timers, each come in
    bundles of their own; with no state cache every read after the first bundle
    returns what the commits sent to the runner.
    """

    TOTAL = userstate.ReadModifyWriteStateSpec("total", VarIntCoder())
    SEEN = userstate.BagStateSpec("seen", PickleCoder())
    KINDS = userstate.SetStateSpec("kinds", PickleCoder())
    LAST = userstate.ReadModifyWriteStateSpec("last", PickleCoder())
    FLUSH = userstate.TimerSpec("flush", TimeDomain.WATERMARK)
    REPORT = userstate.TimerSpec("report", TimeDomain.WATERMARK)

    def process(
        self,
        keyed,
        ts=beam.DoFn.TimestampParam,
        total=beam.DoFn.StateParam(TOTAL),
        seen=beam.DoFn.StateParam(SEEN),
        kinds=beam.DoFn.StateParam(KINDS),
        last=beam.DoFn.StateParam(LAST),
        flush=beam.DoFn.TimerParam(FLUSH),
    ):
        from apache_beam.runners.worker import bundle_processor

        _, value = keyed
        total.write((total.read() or 0) + value)
        seen.add(value)
        kinds.add(value % 3)
        commit = bundle_processor.FnApiUserStateContext.commit
        last.write({"value": value, "commit": commit.__module__})
        flush.set(ts)

    @userstate.on_timer(FLUSH)
    def on_flush(
        self,
        fired=beam.DoFn.TimestampParam,
        total=beam.DoFn.StateParam(TOTAL),
        seen=beam.DoFn.StateParam(SEEN),
        kinds=beam.DoFn.StateParam(KINDS),
        report=beam.DoFn.TimerParam(REPORT),
    ):
        kept = sorted(seen.read())
        seen.clear()  # a clear and appends of the same cell in one bundle
        seen.add(sum(kept))
        seen.add(len(kept))
        kinds.add(9)
        total.write(total.read() * 2)
        report.set(fired + 1000)

    @userstate.on_timer(REPORT)
    def on_report(
        self,
        key=beam.DoFn.KeyParam,
        total=beam.DoFn.StateParam(TOTAL),
        seen=beam.DoFn.StateParam(SEEN),
        kinds=beam.DoFn.StateParam(KINDS),
        last=beam.DoFn.StateParam(LAST),
    ):
        latest = last.read()
        yield (
            key,
            total.read(),
            sorted(seen.read()),
            sorted(kinds.read()),
            latest["value"],
            latest["commit"],
        )


_ROWS: list = []


def _keep(row) -> None:
    _ROWS.append(row)  # the FnApiRunner's worker runs in this process


def _sums(patched: bool) -> list:
    _ROWS.clear()
    data = [(f"k{i % 13}", i, 0) for i in range(400)]
    # No state cache: every read in a later bundle comes back from the runner's store.
    options = PipelineOptions(["--max_cache_memory_usage_mb=0"])
    with beam.Pipeline(runner=FnApiRunner(), options=options) as pipeline:
        out = (
            pipeline
            | beam.Create(data)
            | beam.Map(lambda row: TimestampedValue((row[0], row[1]), row[2])).with_output_types(
                tuple[str, int]
            )
            | beam.ParDo(_Sum())
        )
        out | beam.Map(_keep)
        module = "runners.beam_patches" if patched else bundle_processor.__name__
        assert_that(out | beam.Map(lambda row: row[-1]) | beam.Distinct(), equal_to([module]))
    return sorted(row[:-1] for row in _ROWS)


def test_pipelined_commits_leave_the_state_beams_commits_leave():
    own = _sums(patched=False)
    assert beam_patches.apply("pipelined_commits")["pipelined_commits"]
    assert _sums(patched=True) == own
    assert len(own) == 13  # one report per key
