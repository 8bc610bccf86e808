"""The personalization pipeline: one graph, whatever the source, sinks and runner.

``build(raw_records, config)`` takes the raw records of any source (see
``transforms.sources``) and returns the pipeline's outputs by name; the
runners wire sources and sinks around it. ``python -m pipelines.personalize``
runs it with the standard Beam flags plus the options in
``pipelines.options``.
"""

from __future__ import annotations

import sys

import apache_beam as beam

from pipelines.config import Config
from pipelines.keys import KeySource
from transforms.dedupe import DeduplicateEvents
from transforms.learners import LearnOnline
from transforms.privacy import Pseudonymize
from transforms.sessions import SummarizeSessions
from transforms.sources import DecodeEvents
from transforms.timeline import UserTimeline
from transforms.trending import TrendingItems


def _analytics_allowed(keyed) -> bool:
    return (keyed[1].get("consent") or {}).get("analytics") is not False


def build(
    raw_records: beam.PCollection,
    config: Config,
    key_source: KeySource,
    streaming: bool = False,
    learner_lateness_ms: int = 0,
    correct_any_late_input: bool = False,
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
        ``dead_letters`` (``schemas/dead_letter.avsc``).
    """
    lateness = config.timeline.allowed_lateness
    decoded = raw_records | "DecodeEvents" >> DecodeEvents()
    # Pseudonyms before anything is keyed by user; the consent gate is in UserTimeline.
    protected = decoded.events | "Pseudonymize" >> Pseudonymize(
        config.privacy_params(b""), key_source
    )
    # Unique events, keyed by user.
    keyed = protected | "Deduplicate" >> DeduplicateEvents(config.dedupe.horizon, lateness)
    sessions = keyed | "SummarizeSessions" >> SummarizeSessions(config.sessions.gap, lateness)
    # Trending items are aggregates without users; an event that says no to analytics
    # is not counted even there (inherited consent is known only in the timeline).
    counted = keyed | "AnalyticsConsent" >> beam.Filter(_analytics_allowed).with_output_types(
        tuple[str, dict]
    )
    trending = counted | "TrendingItems" >> TrendingItems(
        config.rolling.size, config.rolling.period, config.rolling.trending_top, lateness
    )
    # The profile, DetectPatterns and GovernTriggers share the user's event-time order.
    timeline = (keyed, sessions) | "UserTimeline" >> UserTimeline(
        config.profile_params(),
        lateness,
        config.timeline.retention,
        config.patterns,
        config.sessions.gap,
        config.governance_params(),
        config.triggers.attribution_window,
        config.consent.params(),
        config.consent.memory,
        config.segments,
        frozenset(config.models.enabled),
        config.models.churn_horizon,
    )
    specs = config.models.specs()
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
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m pipelines.personalize``."""
    from runners.replay import run_from_argv

    return run_from_argv(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
