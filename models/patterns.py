"""Behavioural patterns as configs say them: a checked spec, compiled for ``models.cep``.

The vocabulary is Flink CEP's, so its users feel at home: a pattern is a
sequence of named stages; each stage has a condition (``where``, in the
language of ``models.conditions``), a quantifier (once by default, ``times``,
``at_least``, ``optional``), and says how it follows the stage before it
(``follows``): ``next`` (strict contiguity: the very next event),
``followed_by`` (relaxed: other events may come between), or negated,
``not_next`` / ``not_followed_by`` ("A not followed by B within T" fires when
the deadline passes with no B). A pattern has ``within`` (the longest time
from its first to its last event, and the deadline of a trailing negation),
``same`` (fields that every stage's event must share with the first, e.g. the
category) and ``skip``, the after-match skip strategy (``no_skip``,
``skip_past_last_event``).

Validated with pydantic before anything runs; every error names the pattern
and the field (``patterns.high_intent.stages.0.where: dwel_ms: unknown field``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from models import conditions as cond
from models.durations import parse_duration
from models.validation import FIELDS

Duration = Annotated[int, BeforeValidator(parse_duration)]

NEXT = "next"
FOLLOWED_BY = "followed_by"
NOT_NEXT = "not_next"
NOT_FOLLOWED_BY = "not_followed_by"
NO_SKIP = "no_skip"
SKIP_PAST_LAST_EVENT = "skip_past_last_event"

_AVRO_KINDS = {"string": cond.STRING, "long": cond.NUMBER, "int": cond.NUMBER}
_AVRO_KINDS |= {"double": cond.NUMBER, "float": cond.NUMBER, "boolean": cond.BOOLEAN}


def _event_fields() -> dict[str, str]:
    fields = {}
    for name, kind, _ in FIELDS:
        if kind.startswith("map<"):
            fields[name] = cond.map_of(_AVRO_KINDS[kind[len("map<") : -1]])
        else:
            fields[name] = _AVRO_KINDS[kind]
    fields["dwell_ms"] = cond.DURATION
    return fields


# What a stage's condition can read: the event's fields and three the detector derives.
EVENT_FIELDS = {
    **_event_fields(),
    "gap_ms": cond.DURATION,  # time since the user's previous event (absent for the first)
    "session_start": cond.NUMBER,  # when the user's current session began (sessions.gap)
    "discount": cond.NUMBER,  # 1 - price / list_price, when both are known
}


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StageSpec(_Spec):
    """One stage of a pattern."""

    name: str = Field(min_length=1, max_length=64)
    where: dict[str, Any]
    follows: Literal["next", "followed_by", "not_next", "not_followed_by"] = FOLLOWED_BY
    times: int | None = Field(default=None, ge=1, le=100, description="Exactly this many events.")
    at_least: int | None = Field(default=None, ge=1, le=100, description="This many or more.")
    optional: bool = False
    consecutive: bool = Field(
        default=False, description="Events of a repeated stage must follow each other directly."
    )

    @field_validator("where")
    @classmethod
    def _condition_compiles(cls, where):
        try:
            cond.compile_condition(where, EVENT_FIELDS)
        except cond.ConditionError as exc:
            raise ValueError(str(exc)) from None
        return where

    @model_validator(mode="after")
    def _quantifier(self):
        if self.times is not None and self.at_least is not None:
            raise ValueError("give times or at_least, not both")
        if self.negated and (self.times or self.at_least or self.optional or self.consecutive):
            raise ValueError(f"a negated stage ({self.follows}) takes no quantifier")
        return self

    @property
    def negated(self) -> bool:
        return self.follows in (NOT_NEXT, NOT_FOLLOWED_BY)

    def bounds(self) -> tuple[int, int | None]:
        """(fewest, most) events the stage takes; most is None for no limit."""
        if self.times is not None:
            low, high = self.times, self.times
        elif self.at_least is not None:
            low, high = self.at_least, None
        else:
            low, high = 1, 1
        return (0 if self.optional else low), high


class PatternSpec(_Spec):
    """One pattern, as written under ``patterns.NAME`` in the config."""

    version: str = "1"
    description: str = ""
    stages: list[StageSpec] = Field(min_length=1, max_length=16)
    within: Duration | None = Field(default=None, gt=0)
    same: list[str] = Field(default_factory=list)
    skip: Literal["no_skip", "skip_past_last_event"] = NO_SKIP
    max_partials: int = Field(default=32, ge=1, le=10_000, description="Per user; oldest dropped.")
    cooldown: Duration | None = Field(default=None, description="Overrides triggers.cooldown.")
    holdout: float | None = Field(default=None, ge=0, le=1, description="Overrides the default.")

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value):
        return (
            str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
        )

    @field_validator("same", mode="before")
    @classmethod
    def _same_list(cls, value):
        return [value] if isinstance(value, str) else value

    @field_validator("same")
    @classmethod
    def _same_known(cls, value):
        for name in value:
            if cond.kind_of(EVENT_FIELDS, name) is None:
                raise ValueError(f"unknown field {name!r}")
        return value

    @model_validator(mode="after")
    def _shape(self):
        first = self.stages[0]
        if first.negated:
            raise ValueError(
                f"stages.0 ({first.name}): the first stage cannot be negated "
                f"(follows: {first.follows})"
            )
        if first.optional:
            raise ValueError(f"stages.0 ({first.name}): the first stage cannot be optional")
        if first.follows == NEXT:
            raise ValueError(f"stages.0 ({first.name}): the first stage follows nothing")
        names = [stage.name for stage in self.stages]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"stages.{i}: the stage name {name!r} is used twice")
        if self.stages[-1].follows == NOT_FOLLOWED_BY and self.within is None:
            raise ValueError(
                f"stages.{len(self.stages) - 1} ({self.stages[-1].name}): a pattern that ends "
                "with not_followed_by needs within (the deadline)"
            )
        for i, stage in enumerate(self.stages[1:], 1):
            if stage.negated and self.stages[i - 1].negated:
                raise ValueError(f"stages.{i} ({stage.name}): two negated stages in a row")
        return self


@dataclass(frozen=True)
class Stage:
    """A positive stage, compiled."""

    name: str
    test: Callable
    low: int
    high: int | None
    strict: bool  # entered only on the event right after the previous stage's last one
    consecutive: bool
    guards: tuple  # ((test, strict), ...): negations between the stage before and this one


@dataclass(frozen=True)
class Pattern:
    """A pattern compiled for ``models.cep``: positive stages with their guards."""

    name: str
    version: str
    stages: tuple[Stage, ...]
    trailing: tuple  # ((test, strict), ...): negations after the last positive stage
    within: int | None
    same: tuple[str, ...]
    same_getters: tuple  # value of each ``same`` field (dotted names reach into maps)
    skip: str
    max_partials: int
    cooldown: int | None
    holdout: float | None


def compile_pattern(name: str, spec: PatternSpec) -> Pattern:
    """The automaton's form of a checked spec."""
    stages: list[Stage] = []
    guards: list = []
    for stage in spec.stages:
        test = cond.compile_condition(stage.where, EVENT_FIELDS)
        if stage.negated:
            guards.append((test, stage.follows == NOT_NEXT))
            continue
        low, high = stage.bounds()
        stages.append(
            Stage(
                name=stage.name,
                test=test,
                low=low,
                high=high,
                strict=stage.follows == NEXT,
                consecutive=stage.consecutive,
                guards=tuple(guards),
            )
        )
        guards = []
    return Pattern(
        name=name,
        version=spec.version,
        stages=tuple(stages),
        trailing=tuple(guards),
        within=spec.within,
        same=tuple(spec.same),
        same_getters=tuple(cond.getter(name) for name in spec.same),
        skip=spec.skip,
        max_partials=spec.max_partials,
        cooldown=spec.cooldown,
        holdout=spec.holdout,
    )
