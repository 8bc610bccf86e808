"""The pipeline's configuration file: parsed and validated before anything runs.

A config is YAML (or JSON). Every section is optional; what is left out takes
the defaults below (``examples/config.yaml`` spells them all out). Unknown
keys are errors, and every error names the field, e.g.
``sessions.gap: duration must be positive``.

Durations are written ``500ms``, ``30s``, ``10m``, ``2h``, ``7d`` (or a bare
number of seconds) and held as integer milliseconds.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from models import profile as prof

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the field."""


def parse_duration(value: Any) -> int:
    """A duration in milliseconds.

    >>> parse_duration("30m"), parse_duration("500ms"), parse_duration(2)
    (1800000, 500, 2000)
    """
    if isinstance(value, bool):
        raise ValueError("duration must be like 30s, 10m, 2h or 7d")
    if isinstance(value, int | float):
        millis = value * 1000
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        millis = float(match.group(1)) * _UNITS_MS[match.group(2) or "s"]
    else:
        raise ValueError(f"duration must be like 30s, 10m, 2h or 7d, not {value!r}")
    if millis < 0:
        raise ValueError("duration must not be negative")
    return int(millis)


Duration = Annotated[int, BeforeValidator(parse_duration)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SessionsConfig(_Section):
    gap: Duration = Field(default=30 * 60_000, gt=0, description="Inactivity that ends a session.")


class RollingConfig(_Section):
    size: Duration = Field(default=10 * 60_000, gt=0, description="Sliding window length.")
    period: Duration = Field(default=60_000, gt=0, description="How often a window starts.")
    trending_top: int = Field(default=10, ge=1, le=1000, description="Items kept per category.")

    @model_validator(mode="after")
    def _period_divides_size(self):
        if self.period > self.size or self.size % self.period:
            raise ValueError("period must divide size (e.g. size 10m, period 1m)")
        return self


class DedupeConfig(_Section):
    horizon: Duration = Field(
        default=60 * 60_000, gt=0, description="Event-time span over which an id is remembered."
    )


class TimelineConfig(_Section):
    allowed_lateness: Duration = Field(
        default=0, description="How long after the watermark an event may still arrive in order."
    )
    retention: Duration = Field(
        default=30 * 86_400_000,
        gt=0,
        description="Inactivity after which a user's state is dropped.",
    )


class ProfileConfig(_Section):
    affinity_half_life: Duration = Field(default=7 * 86_400_000, gt=0)
    engagement_half_life: Duration = Field(default=3 * 86_400_000, gt=0)
    recent_items: int = Field(default=20, ge=1, le=1000)
    affinity_top: int = Field(default=20, ge=1, le=1000)
    event_weights: dict[str, float] = Field(
        default_factory=lambda: dict(prof.DEFAULT_EVENT_WEIGHTS)
    )
    engagement_scale: float = Field(default=20.0, gt=0)
    high_engagement: float = Field(default=0.7, ge=0, le=1)
    abandoned_cart_after: Duration = Field(default=30 * 60_000, gt=0)
    recently_viewed_within: Duration = Field(default=86_400_000, gt=0)
    price_bands: dict[str, float] = Field(
        default_factory=lambda: {"budget": 0.0, "mid": 25.0, "premium": 100.0, "luxury": 500.0},
        description="Band name -> lowest mean price in the band.",
    )

    @model_validator(mode="after")
    def _weights_not_negative(self):
        for kind, weight in self.event_weights.items():
            if weight < 0:
                raise ValueError(f"event_weights.{kind} must not be negative")
        return self

    def params(self) -> prof.ProfileParams:
        """The pure core's parameters."""
        return prof.ProfileParams(
            affinity_half_life_ms=self.affinity_half_life,
            engagement_half_life_ms=self.engagement_half_life,
            recent_items=self.recent_items,
            affinity_top=self.affinity_top,
            event_weights=dict(self.event_weights),
            engagement_scale=self.engagement_scale,
            high_engagement=self.high_engagement,
            abandoned_cart_after_ms=self.abandoned_cart_after,
            recently_viewed_within_ms=self.recently_viewed_within,
            price_bands=tuple(sorted(self.price_bands.items(), key=lambda kv: kv[1])),
        )


class RedisConfig(_Section):
    ttl: dict[str, Duration] = Field(
        default_factory=lambda: {
            "profile": 90 * 86_400_000,
            "recent": 30 * 86_400_000,
            "trending": 86_400_000,
        },
        description="Time to live per key kind; 0 keeps keys forever.",
    )

    @model_validator(mode="after")
    def _known_kinds(self):
        unknown = set(self.ttl) - {"profile", "recent", "trending"}
        if unknown:
            raise ValueError(f"ttl has unknown key kinds: {sorted(unknown)}")
        return self

    def ttl_seconds(self) -> dict[str, int]:
        return {kind: ms // 1000 for kind, ms in self.ttl.items()}


class Config(_Section):
    """The whole configuration."""

    sessions: SessionsConfig = SessionsConfig()
    rolling: RollingConfig = RollingConfig()
    dedupe: DedupeConfig = DedupeConfig()
    timeline: TimelineConfig = TimelineConfig()
    profile: ProfileConfig = ProfileConfig()
    redis: RedisConfig = RedisConfig()

    def profile_params(self) -> prof.ProfileParams:
        """The profile core's parameters, rolling windows included."""
        return dataclasses.replace(
            self.profile.params(),
            rolling_size_ms=self.rolling.size,
            rolling_period_ms=self.rolling.period,
        )


def _describe(exc: ValidationError, origin: str) -> str:
    lines = [f"invalid config {origin}:"]
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)


def parse_config(data: Any, origin: str = "(inline)") -> Config:
    """Validate a config given as plain data; raises ConfigError naming the field.

    >>> parse_config({"sessions": {"gap": "45m"}}).sessions.gap
    2700000
    >>> parse_config({"sessions": {"gapp": "45m"}})
    Traceback (most recent call last):
    ...
    pipelines.config.ConfigError: invalid config (inline):
      sessions.gapp: Extra inputs are not permitted
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {origin}: the top level must be a mapping")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin)) from None


def load_config(path: str | Path | None) -> Config:
    """Read and validate a config file (``None`` gives the defaults)."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid config {path}: not valid YAML: {exc}") from None
    return parse_config(data, str(path))
