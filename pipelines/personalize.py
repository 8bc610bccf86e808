"""The personalization pipeline: one graph, whatever the source, sinks and runner.

``build(raw_records, config)`` takes the raw records of any source (see
``transforms.sources``) and returns the pipeline's outputs by name; the
runners wire sources and sinks (``pipelines.sinks``) around it.

``python -m pipelines.personalize --input FILES --redis URL [Beam flags]``
runs it on recorded files in batch, with the standard Beam flags plus the
options in ``pipelines.options``: the FnApiRunner unless ``--runner`` names
another. It prints the run summary (``pipelines.summary``) and exits with 2
when its input, options or endpoints are wrong, 1 when nothing valid was
read. It starts no local server: ``--redis`` is required (``microtarget
replay`` starts an embedded Redis when none is given).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from models.timeline import INTENT_PROBES, PURCHASE_INTENT
from pipelines.checks import InputError, check_inputs, check_redis
from pipelines.config import Config, ConfigError, load_config
from pipelines.keys import KeySource, PseudonymKeyError, resolve
from pipelines.options import PersonalizeOptions, unknown_flags
from pipelines.sinks import attach_sinks, beam_temp_dirs, dead_letters_prefix
from pipelines.summary import counters, format_summary, summarize, verdict
from transforms.dedupe import DeduplicateEvents, by_user, each_event
from transforms.learners import LearnOnline
from transforms.privacy import Pseudonymize
from transforms.sources import DecodeEvents, ReadEvents
from transforms.timeline import UserTimeline
from transforms.trending import TrendingItems


def _is_intent_input(model_input: dict) -> bool:
    """Purchase intent's examples, and its probes' features (for the report)."""
    kinds = ("example", "prefix", "probe")
    return model_input["model"] == PURCHASE_INTENT and model_input["kind"] in kinds


def _analytics_allowed(keyed) -> bool:
    return (keyed[1].get("consent") or {}).get("analytics") is not False


def build(
    raw_records: beam.PCollection,
    config: Config,
    key_source: KeySource,
    streaming: bool = False,
    learner_lateness_ms: int = 0,
    correct_any_late_input: bool = False,
    audit: bool = False,
) -> dict[str, beam.PCollection]:
    """Wire the personalization graph.

    ``key_source`` says where workers read the pseudonym key (``pipelines.keys``).
    ``learner_lateness_ms``: how far at least the learners stay behind the
    watermark (a streaming replay passes its watermark step).
    ``correct_any_late_input``: the learners correct for a late input however
    late (a replay's input is finite), not only within
    ``models.correction_horizon``.

    Returns:
        ``profiles`` (snapshot dicts), ``trending`` (per category and window),
        ``triggers`` (governed pattern matches, ``schemas/trigger.avsc``; empty
        without patterns), ``erasures`` (``models.timeline.erasure_record``),
        ``dead_letters`` (``schemas/dead_letter.avsc``), and with ``audit`` (a
        bounded input in batch only) ``audit``: one record per user
        (``models.timeline.audit_record``), else None.
    """
    if audit and (streaming or not raw_records.is_bounded):
        raise ValueError("audit records come from a bounded input in batch only")
    lateness = config.timeline.allowed_lateness
    decoded = raw_records | "DecodeEvents" >> DecodeEvents()
    # Pseudonyms before anything is keyed by user; the consent gate is in UserTimeline.
    protected = decoded.events | "Pseudonymize" >> Pseudonymize(
        config.privacy_params(b""), key_source
    )
    # Sessions, the profile, DetectPatterns and GovernTriggers share the user's event-time
    # order. A bounded input in batch is grouped by user once, in Deduplicate: the timeline
    # takes the groups, the steps of single events each event of them. Otherwise the
    # timeline's one stateful step per user drops the copies too, and gives the unique
    # events for the steps of single events.
    batch = not streaming and protected.is_bounded
    timeline_args = dict(
        patterns=config.patterns,
        segments=config.segments,
        allowed_lateness_ms=lateness,
        streaming=streaming,
    )
    if batch:
        unique = protected | "Deduplicate" >> DeduplicateEvents(config.dedupe.horizon, lateness)
        keyed = unique | "EachEvent" >> beam.FlatMap(each_event).with_output_types(tuple[str, dict])
        params = config.timeline_params()
        if audit:  # and the report's probes of purchase intent
            params = dataclasses.replace(
                params,
                intent_probes=INTENT_PROBES,
                audit_fields=tuple(config.audit.attributes),
            )
        timeline = unique | "UserTimeline" >> UserTimeline(
            params, grouped=True, audit=audit, **timeline_args
        )
    else:
        keyed_events = protected | "KeyByUser" >> beam.Map(by_user).with_output_types(
            tuple[str, dict]
        )
        timeline = keyed_events | "UserTimeline" >> UserTimeline(
            config.timeline_params(), dedupe_horizon_ms=config.dedupe.horizon, **timeline_args
        )
        keyed = timeline.unique
    # Trending items are aggregates without users; an event that says no to analytics
    # is not counted even there (inherited consent is known only in the timeline).
    counted = keyed | "AnalyticsConsent" >> beam.Filter(_analytics_allowed).with_output_types(
        tuple[str, dict]
    )
    trending = counted | "TrendingItems" >> TrendingItems(
        config.rolling.size, config.rolling.period, config.rolling.trending_top, lateness
    )
    specs = config.model_specs()
    behind = max(lateness, config.models.allowed_lateness, learner_lateness_ms)
    horizon = None if correct_any_late_input else config.models.correction_horizon
    learned = timeline.model_inputs | "LearnOnline" >> LearnOnline(
        specs, behind, streaming, horizon
    )
    dead_letters = (
        decoded.dead_letters,
        timeline.dead_letters,
    ) | "AllDeadLetters" >> beam.Flatten()
    return {
        "profiles": timeline.profiles,
        "trending": trending,
        "triggers": timeline.triggers,
        "erasures": timeline.erasures,
        "segment_changes": timeline.segment_changes,
        "model_inputs": timeline.model_inputs,
        "scores": learned.scores,
        "model_summaries": learned.summaries,
        "model_drifts": learned.drifts,
        "dead_letters": dead_letters,
        # One record per user (models.timeline.audit_record), only when asked (batch).
        "audit": timeline.audit if batch and audit else None,
        # The scores of the intent probes (only with audit), and purchase intent's inputs:
        # the sessions' outcomes and the probes' features.
        "probes": learned.probes,
        "intent_inputs": (
            timeline.model_inputs | "IntentInputs" >> beam.Filter(_is_intent_input)
            if batch and audit
            else None
        ),
    }


DEFAULT_DEAD_LETTERS = ".microtarget/dead-letters"  # the CLI's default folder too


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _run(argv: list[str], mine: PersonalizeOptions, config: Config, key_source: KeySource) -> dict:
    """Read ``--input``, run the graph and its sinks to the end; the run summary."""
    # Without --runner, the FnApiRunner: it runs every transform here, timers included.
    given = PipelineOptions(argv).view_as(StandardOptions).runner
    options = PipelineOptions(([] if given else ["--runner=FnApiRunner"]) + argv)
    letters = mine.dead_letters or DEFAULT_DEAD_LETTERS
    started = time.perf_counter()
    pipeline = beam.Pipeline(options=options)
    raw = pipeline | "ReadEvents" >> ReadEvents(list(mine.input))
    outputs = build(raw, config, key_source)
    attach_sinks(
        outputs, config, mine.redis, mine.namespace, dead_letters_prefix(letters, None), False
    )
    before = beam_temp_dirs(letters)
    try:
        result = pipeline.run()
        result.wait_until_finish()
    except BaseException:
        # A failed run leaves the dead-letter sink's temporary folder: nothing in it is final.
        for path in beam_temp_dirs(letters) - before:
            shutil.rmtree(path, ignore_errors=True)
        raise
    return summarize(counters(result), time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m pipelines.personalize``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    mine = PipelineOptions(argv).view_as(PersonalizeOptions)
    if not mine.input:
        return _fail("--input is required (a file, a glob, repeatable)")
    if not mine.redis:
        return _fail(
            "--redis is required (redis:// or rediss:// URL); `microtarget replay` "
            "starts an embedded Redis when it is not given"
        )
    try:
        config = load_config(mine.config)
        key_source = resolve(mine.pseudonym_key_file, mine.insecure_dev_key)
        check_inputs(mine.input)
        check_redis(mine.redis)
        config.geo_table()  # a bad table fails now, naming privacy.geo_table
        unknown = unknown_flags(argv)
        if unknown:
            raise InputError(f"unknown Beam option: {', '.join(unknown)}")
    except (ConfigError, PseudonymKeyError, InputError) as exc:
        return _fail(str(exc))
    summary = _run(argv, mine, config, key_source)
    if mine.summary_json:
        Path(mine.summary_json).write_text(json.dumps(summary, indent=2) + "\n")
    print(format_summary(summary))
    failed = verdict(summary)
    if failed:
        print(f"error: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # Run this module under its own name: what the graph pickles (DoFns, functions)
    # then refers to pipelines.personalize, as on any worker, not to __main__.
    from pipelines import personalize

    sys.exit(personalize.main())
