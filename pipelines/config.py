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
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from models import consent as cons
from models import governance as gov
from models import privacy
from models import profile as prof
from models.durations import parse_duration
from models.patterns import PatternSpec
from models.segments import SegmentError, SegmentSpec, compile_segments, reads
from models.timeline import TimelineParams


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the field."""


Duration = Annotated[int, BeforeValidator(parse_duration)]
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


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
    pattern_flag_within: Duration = Field(
        default=86_400_000, gt=0, description="A pattern's flag stays set this long."
    )
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
            pattern_flag_within_ms=self.pattern_flag_within,
            price_bands=tuple(sorted(self.price_bands.items(), key=lambda kv: kv[1])),
        )


_DEFAULT_TTL_MS = {
    "profile": 90 * 86_400_000,
    "recent": 30 * 86_400_000,
    "trending": 86_400_000,
    "triggers": 7 * 86_400_000,
    "erased": 400 * 86_400_000,
}
TTL_KINDS = frozenset(_DEFAULT_TTL_MS)


class RedisConfig(_Section):
    ttl: dict[str, Duration] = Field(
        default_factory=lambda: dict(_DEFAULT_TTL_MS),
        description="Time to live per key kind (kinds left out keep their default); 0: forever.",
    )
    retry_for: Duration = Field(
        default=60_000,
        ge=0,
        description="How long a sink retries a write while Redis cannot be reached (a restart, "
        "a failover), waits of 0.1 s doubling to 2 s, before the job fails; 0: fail at once.",
    )

    @model_validator(mode="after")
    def _known_kinds(self):
        unknown = set(self.ttl) - TTL_KINDS
        if unknown:
            raise ValueError(f"ttl has unknown key kinds: {sorted(unknown)}")
        return self

    def ttl_seconds(self) -> dict[str, int]:
        merged = {**_DEFAULT_TTL_MS, **self.ttl}
        return {kind: ms // 1000 for kind, ms in merged.items()}


class ConsentConfig(_Section):
    """What events without consent information may be used for, and how long a no is kept."""

    default: Literal["granted", "denied"] = Field(
        default="denied",
        description="Purposes a user never stated: granted or denied (production: denied).",
    )
    memory: Duration = Field(
        default=400 * 86_400_000,
        gt=0,
        description="A withdrawn consent is remembered this long after the user's last event.",
    )

    def params(self) -> cons.ConsentParams:
        return cons.ConsentParams(default=self.default == "granted")


class PrivacyConfig(_Section):
    """How personal data is stripped before anything is keyed by user."""

    redact_properties: list[str] = Field(
        default_factory=lambda: list(privacy.DEFAULT_REDACT_PROPERTIES),
        description="Property names whose values are always replaced by <redacted>.",
    )
    geo_table: str | None = Field(
        default=None,
        description="CSV of network,country[,region] for coarse geo from truncated IPs.",
    )


class TriggersConfig(_Section):
    """Governance of pattern matches, and where triggers go."""

    cooldown: Duration = Field(default=3_600_000, description="Per user and pattern.")
    daily_cap: int = Field(default=5, ge=1, le=10_000, description="Per user and UTC day.")
    holdout: float = Field(
        default=0.1, ge=0, le=1, description="Share of (user, pattern) held out."
    )
    holdout_salt: str = Field(default="microtarget", min_length=1, max_length=200)
    remember: Duration = Field(default=7 * 86_400_000, gt=0, description="Ids kept for send-once.")
    attribution_window: Duration = Field(
        default=7 * 86_400_000, gt=0, description="A purchase this soon after a match converts it."
    )
    log_size: int = Field(default=50, ge=1, le=10_000, description="Per-user trigger log length.")
    stream_maxlen: int = Field(default=100_000, ge=1, description="Approximate cap of the stream.")

    def params(self, patterns: dict[str, PatternSpec]) -> gov.GovernanceParams:
        """The governance core's parameters, with each pattern's overrides."""
        return gov.GovernanceParams(
            cooldown_ms=self.cooldown,
            daily_cap=self.daily_cap,
            holdout=self.holdout,
            remember_ms=self.remember,
            salt=self.holdout_salt,
            cooldowns={n: p.cooldown for n, p in patterns.items() if p.cooldown is not None},
            holdouts={n: p.holdout for n, p in patterns.items() if p.holdout is not None},
        )


class ModelsConfig(_Section):
    """The online models (``models.learning``) and what they learn from."""

    enabled: list[Literal["purchase_intent", "churn_risk", "clusters", "recommendations"]] = Field(
        default_factory=list,
        description="Models to run; none by default. recommendations: each user's list of "
        "products (settings in the recommendations section).",
    )
    churn_horizon: Duration = Field(
        default=7 * 86_400_000, gt=0, description="No new session this long after one: churned."
    )
    intent_prefixes: list[Annotated[int, Field(ge=1, le=10_000)]] = Field(
        default_factory=lambda: [3],
        max_length=32,
        description="purchase_intent also learns each session as of these of its events "
        "(before any purchase), with the session's outcome, as well as whole: it is asked at "
        "every event, so it learns sessions cut where it is asked. Empty: whole sessions only.",
    )
    clusters: int = Field(default=4, ge=2, le=50, description="Clusters of the clusters model.")
    learning_rate: float = Field(default=0.05, gt=0, le=1)
    optimizer: Literal["adagrad", "sgd"] = Field(
        default="adagrad",
        description="The classifiers' optimizer: adagrad (each weight's step shrinks as its "
        "gradients add up: steadier scores) or sgd (a constant step of learning_rate).",
    )
    l2: float = Field(default=0.0001, ge=0)
    drift_delta: float = Field(default=0.002, gt=0, lt=1, description="ADWIN's delta.")
    allowed_lateness: Duration = Field(
        default=5 * 60_000,
        ge=0,
        description="How far behind the watermark the learners stay, to keep their order.",
    )
    shards: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Independent copies of each model, the users spread over them by a hash of "
        "their pseudonym: a model's work spreads over that many keys (and workers), and each "
        "copy learns from about 1/shards of the examples.",
    )
    correction_horizon: Duration = Field(
        default=0,
        ge=0,
        description="How far back an input later than allowed_lateness is still learned in "
        "order: the learner goes back to a checkpoint and learns again from there, and the "
        "scores it gave since are issued again. 0: such inputs are dropped and counted.",
    )

    def specs(self, recommender: tuple = (), replicated: bool = False) -> dict:
        """The models' specs; ``recommender``: the recommendations model's settings, and
        ``replicated`` whether its copies all learn every click (``Config.model_specs``
        passes them)."""
        from models.learning import ModelSpec

        kinds = {"clusters": "clusterer", "recommendations": "recommender"}
        return {
            name: ModelSpec(
                name=name,
                kind=kinds.get(name, "classifier"),
                learning_rate=self.learning_rate,
                optimizer=self.optimizer,
                l2=self.l2,
                clusters=self.clusters,
                drift_delta=self.drift_delta,
                shards=self.shards,
                recommender=recommender if name == "recommendations" else (),
                replicated=replicated and name == "recommendations",
            )
            for name in self.enabled
        }


class RecommendationsConfig(_Section):
    """Each user's recommended products (``models.recommend``), learned from the clicks."""

    algorithm: Literal["session_knn", "item_knn", "session_popular", "popular"] = Field(
        default="session_knn",
        description="session_knn: items of the most similar recent sessions, later clicks "
        "weighing more; item_knn: items most often in the same sessions as the last one; "
        "session_popular: the session's own items, then the most clicked; popular: the most "
        "clicked.",
    )
    size: int = Field(default=20, ge=1, le=200, description="Items in each user's list.")
    recommend_purchased: bool = Field(
        default=False, description="Whether items the user bought can be recommended again."
    )
    neighbours: int = Field(
        default=100, ge=1, le=10_000, description="session_knn: neighbour sessions used."
    )
    sample: int = Field(
        default=250,
        ge=1,
        le=100_000,
        description="session_knn: the most recent sessions with an item of the user's session "
        "that are compared (also the sessions remembered per item).",
    )
    max_sessions: int = Field(
        default=100_000, ge=1, description="session_knn: past sessions kept (the oldest go)."
    )
    item_neighbours: int = Field(
        default=200, ge=1, le=10_000, description="item_knn: co-occurring items kept per item."
    )
    smoothing: float = Field(default=20.0, ge=0, description="item_knn: the cosine's smoothing.")
    half_life: Duration | None = Field(
        default=None, gt=0, description="item_knn: co-occurrence counts halve in this time."
    )
    max_users: int = Field(
        default=100_000, ge=1, description="Users whose open session is kept (the least recent go)."
    )
    evaluate_share: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Share of users whose every click is checked against the list served "
        "before it (HR and MRR); clicks of a marked period (properties.split) always are.",
    )
    segment_weight: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Weight of the list learned among the members of the user's most "
        "specific rule segment (session_knn: neighbour sessions of members only; the others: "
        "the members' most clicked items), blended with the global list; 0: global only. A "
        "segment that has seen fewer than its min_size members click gives way to its parent.",
    )
    reminders: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Weight of the session's own items (most clicked, then latest), blended "
        "with the list (users come back to what they viewed); 0: none.",
    )
    replicated: bool = Field(
        default=True,
        description="With models.shards above 1: every copy learns every click and serves "
        "only its own users, so the lists are those of one model and the serving spreads over "
        "the copies (memory and learning paid once per copy); false: each copy learns only "
        "its own users' clicks (less memory, lower quality).",
    )
    similar_items: bool = Field(
        default=True,
        description="session_knn and item_knn: write each clicked product's similar items "
        "(mt:NS:similar:PRODUCT) as of its last click.",
    )

    def params(self, gap_ms: int, segments: tuple = ()) -> tuple:
        """``models.recommend.SessionRecommender``'s keyword arguments, as sorted pairs.

        ``segments``: the compiled rule segments (``models.segments``), parents first.
        """
        params = {
            "algorithm": self.algorithm,
            "k": self.size,
            "gap_ms": gap_ms,
            "recommend_purchased": self.recommend_purchased,
            "max_users": self.max_users,
            "evaluate_share": self.evaluate_share,
        }
        if not self.similar_items:
            params["similar_items"] = False
        if self.reminders:
            params["reminders"] = self.reminders
        if self.segment_weight and segments:
            params["segment_weight"] = self.segment_weight
            params["segments"] = tuple((s.name, s.parent, s.min_size) for s in segments)
        if self.algorithm == "session_knn":
            params.update(neighbours=self.neighbours, sample=self.sample)
            params["max_sessions"] = self.max_sessions
        elif self.algorithm == "item_knn":
            params.update(
                smoothing=self.smoothing,
                neighbours=self.item_neighbours,
                half_life_ms=self.half_life,
            )
        return tuple(sorted(params.items()))


class AuditConfig(_Section):
    """The bias audit of ``microtarget report``: which groups, and when to flag one."""

    attributes: list[str] = Field(
        default_factory=list,
        description="Event fields to audit by (each user's most frequent value), besides "
        "device, country, region, price_band and new against returning.",
    )
    sensitive: list[str] = Field(
        default_factory=lambda: ["country", "region"],
        description="Fields that are only audited: no pattern or segment may read them.",
    )
    allow_sensitive_in_rules: bool = Field(
        default=False, description="Let patterns and segments read the sensitive fields."
    )
    min_ratio: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="A group is flagged when its rate is below this share of the highest "
        "group's (0.8: the four-fifths rule).",
    )
    max_equalized_odds_difference: float = Field(
        default=0.1, gt=0, le=1, description="Flag purchase intent above this difference."
    )
    min_group: int = Field(
        default=20, ge=1, description="Groups of fewer users are shown but never flagged."
    )


class Config(_Section):
    """The whole configuration."""

    sessions: SessionsConfig = SessionsConfig()
    rolling: RollingConfig = RollingConfig()
    dedupe: DedupeConfig = DedupeConfig()
    timeline: TimelineConfig = TimelineConfig()
    profile: ProfileConfig = ProfileConfig()
    redis: RedisConfig = RedisConfig()
    patterns: dict[str, PatternSpec] = Field(
        default_factory=dict, description="Behavioural patterns by name (or a YAML file of them)."
    )
    triggers: TriggersConfig = TriggersConfig()
    consent: ConsentConfig = ConsentConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    models: ModelsConfig = ModelsConfig()
    recommendations: RecommendationsConfig = RecommendationsConfig()
    audit: AuditConfig = AuditConfig()

    segments: dict[str, SegmentSpec] = Field(
        default_factory=dict, description="Rule segments by name (or a YAML file of them)."
    )

    @field_validator("patterns", "segments", mode="before")
    @classmethod
    def _names(cls, value, info):
        if isinstance(value, dict):
            for name in value:
                if not isinstance(name, str) or not _NAME.match(name):
                    raise ValueError(f"{info.field_name} name {name!r} must match {_NAME.pattern}")
        return value

    @model_validator(mode="after")
    def _segments_compile(self):
        try:
            compile_segments(self.segments)
        except SegmentError as exc:
            raise ValueError(str(exc)) from None
        return self

    @model_validator(mode="after")
    def _sensitive_only_audited(self):
        if self.audit.allow_sensitive_in_rules:
            return self
        sensitive = set(self.audit.sensitive)
        places = []
        for name, pattern in self.patterns.items():
            for place, stage in enumerate(pattern.stages):
                places.append((f"patterns.{name}.stages[{place}].where", reads(stage.where)))
            places.append((f"patterns.{name}.same", pattern.same))
        for name, segment in self.segments.items():
            places.append((f"segments.{name}.where", reads(segment.where)))
        for where, fields in places:
            for read in fields:
                if read.rsplit(".", 1)[-1] in sensitive:
                    raise ValueError(
                        f"{where} reads {read!r}, which audit.sensitive lists: sensitive "
                        "fields are only audited (audit.allow_sensitive_in_rules: true lets "
                        "rules read them)"
                    )
        return self

    @model_validator(mode="after")
    def _patterns_fit_retention(self):
        for name, pattern in self.patterns.items():
            if pattern.within is not None and pattern.within >= self.timeline.retention:
                raise ValueError(
                    f"patterns.{name}.within must be shorter than timeline.retention "
                    "(a user's state, open matches included, is dropped after it)"
                )
        return self

    def privacy_params(self, key: bytes) -> privacy.PrivacyParams:
        """The stripping rules with the pseudonym key (the geo table already read)."""
        return privacy.PrivacyParams(
            key=key,
            redact_properties=frozenset(name.lower() for name in self.privacy.redact_properties),
            geo=self.geo_table(),
        )

    def geo_table(self) -> dict:
        """The coarse-geo table (``privacy.geo_table``), read now; ConfigError names the field."""
        path = self.privacy.geo_table
        if path is None:
            return {}
        try:
            with open(path, encoding="utf-8") as lines:
                return privacy.parse_geo_table(lines)
        except OSError as exc:
            raise ConfigError(f"privacy.geo_table: cannot read {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise ConfigError(f"privacy.geo_table: {path}: {exc}") from None

    def governance_params(self) -> gov.GovernanceParams:
        """The governance core's parameters."""
        return self.triggers.params(self.patterns)

    def profile_params(self) -> prof.ProfileParams:
        """The profile core's parameters, rolling windows included."""
        return dataclasses.replace(
            self.profile.params(),
            rolling_size_ms=self.rolling.size,
            rolling_period_ms=self.rolling.period,
        )

    def model_specs(self) -> dict:
        """The online models' specs (``models.learning.ModelSpec``) by name."""
        segments = compile_segments(self.segments)
        return self.models.specs(
            self.recommendations.params(self.sessions.gap, segments),
            replicated=self.recommendations.replicated,
        )

    def timeline_params(self) -> TimelineParams:
        """The timeline's parameters (``models.timeline``), patterns and segments left empty.

        ``transforms.timeline.UserTimeline`` takes the specs (``patterns``, ``segments``)
        next to them and compiles them on the workers.
        """
        return TimelineParams(
            profile=self.profile_params(),
            session_gap_ms=self.sessions.gap,
            governance=self.governance_params(),
            attribution_ms=self.triggers.attribution_window,
            consent=self.consent.params(),
            retention_ms=self.timeline.retention,
            consent_memory_ms=self.consent.memory,
            models=frozenset(self.models.enabled),
            churn_horizon_ms=self.models.churn_horizon,
            intent_prefixes=tuple(sorted(set(self.models.intent_prefixes))),
            recommend_within_segments=bool(
                "recommendations" in self.models.enabled
                and self.recommendations.segment_weight
                and self.segments
            ),
        )


def _describe(exc: ValidationError, origin: str) -> str:
    lines = [f"invalid config {origin}:"]
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        # A check across sections names its own fields at the start of its message.
        lines.append(f"  {where}: {message}" if where else f"  {message}")
    return "\n".join(lines)


def _include(data: dict, section: str, base: Path, origin: str) -> dict:
    """``SECTION: FILE`` reads that section from a YAML file next to the config."""
    where = data.get(section)
    if not isinstance(where, str):
        return data
    path = base / where
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(
            f"invalid config {origin}: {section}: cannot read {path}: {exc.strerror}"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"invalid config {origin}: {section}: {path} is not valid YAML: {exc}"
        ) from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"invalid config {origin}: {section}: {path} must hold a mapping")
    return {**data, section: loaded.get(section, loaded)}


def _resolve_geo_table(data: dict, base: Path) -> dict:
    """``privacy.geo_table`` is relative to the config's folder."""
    section = data.get("privacy")
    if isinstance(section, dict) and isinstance(section.get("geo_table"), str):
        section = {**section, "geo_table": str(base / section["geo_table"])}
        return {**data, "privacy": section}
    return data


def parse_config(data: Any, origin: str = "(inline)", base: Path | None = None) -> Config:
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
    for section in ("patterns", "segments"):
        data = _include(data, section, base or Path.cwd(), origin)
    data = _resolve_geo_table(data, base or Path.cwd())
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
    return parse_config(data, str(path), path.parent)
