"""Write profiles and trending items to Redis: versioned, idempotent, one batch per bundle.

Written by hand because Beam has no Redis sink for Python. Each write is a
compare-and-set in Lua (``cas_write.lua``): a record replaces what is stored
only if its version is newer, so an older snapshot never overwrites a newer
one and a retried bundle changes nothing. Every key of one record (the hash
and its companion list or sorted set) is replaced in the same script, so a
reader never sees half of an update.

Key layout (``NS`` is ``--namespace``; documented for consumers in the README):

``mt:NS:profile:USER`` (hash)
    ``user_id``, ``version``, ``first_seen``, ``last_seen``, ``events``,
    ``sessions``, ``top_category``, ``top_brand``, ``engagement``, ``ltv``,
    ``price_band``, ``flags`` (the set flags, comma separated) and
    ``snapshot`` (the whole profile as canonical JSON). Fields whose value is
    unknown are absent. ``version`` is the profile's event-time clock (ms).
``mt:NS:recent:USER`` (list)
    recently viewed product ids, newest first.
``mt:NS:trending:CATEGORY`` (sorted set) and ``mt:NS:trending:CATEGORY:meta`` (hash)
    the most viewed products of the category in its current sliding window
    (score = views); the meta hash holds ``version`` (event time of the newest
    view counted), ``window_start``, ``window_end`` and ``category``.

A profile is not written if its user was erased (``mt:NS:erased:SUBJECT``,
see ``transforms.erasure``) at or after the profile's ``first_seen``: a
snapshot that raced the erasure must not bring the erased data back.

The client is created in ``setup``; records are buffered per bundle (the
newest per key wins) and written in one pipelined batch in
``finish_bundle`` (or when the buffer is full). Counters ``redis_writes_applied``,
``redis_writes_stale`` and ``redis_writes_erased`` count the outcome of every
compare-and-set.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import time
from pathlib import Path

import apache_beam as beam
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from transforms import metrics, progress

FLUSH_EVERY = 2000
SCRIPT = (Path(__file__).parent / "cas_write.lua").read_text()

PROFILE_FIELDS = (
    "user_id",
    "version",
    "first_seen",
    "last_seen",
    "events",
    "sessions",
    "top_category",
    "top_brand",
    "engagement",
    "ltv",
    "price_band",
)

log = logging.getLogger(__name__)


class RedisSinkError(RuntimeError):
    """A batch could not be written (the message says which keys and why)."""


def key(namespace: str, kind: str, name: str) -> str:
    """The Redis key of one record.

    >>> key("shop1", "profile", "u42")
    'mt:shop1:profile:u42'
    """
    return f"mt:{namespace}:{kind}:{name}"


def canonical_json(value) -> str:
    """JSON with sorted keys and no spaces: equal values give equal bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _text(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def subject(user: str) -> str:
    """A stand-in for a user that does not contain the user's id: hex SHA-256 of it.

    Erasure tombstones and audit entries use it, so an erased user's id is
    nowhere in Redis, yet whoever knows the id can check the erasure.
    """
    return hashlib.sha256(user.encode("utf-8")).hexdigest()


def tombstone_key(namespace: str, user: str) -> str:
    """``mt:NS:erased:SUBJECT``: when the user was last erased (ms)."""
    return key(namespace, "erased", subject(user))


def profile_write(
    namespace: str, snapshot: dict, ttl: dict[str, int], min_sizes: dict | None = None
) -> tuple[list, list]:
    """KEYS and ARGV of the compare-and-set that stores one profile snapshot.

    With ``segments`` in the snapshot, the user's memberships change in the same
    write (``min_sizes``: segment -> the size from which it is active).
    """
    min_sizes = min_sizes or {}
    user = snapshot["user_id"]
    pairs = []
    for name in PROFILE_FIELDS:
        value = snapshot.get(name)
        if value is not None:
            pairs += [name, _text(value)]
    flags = ",".join(sorted(name for name, on in snapshot.get("flags", {}).items() if on))
    pairs += ["flags", flags, "snapshot", canonical_json(snapshot)]
    recent = [str(item) for item in snapshot.get("recent_items", [])]
    keys = [
        key(namespace, "profile", user),
        tombstone_key(namespace, user),
        key(namespace, "recent", user),
    ]
    oldest = snapshot.get("first_seen")
    since = "" if oldest is None else oldest
    args = [snapshot["version"], since, ttl.get("profile", 0), len(pairs) // 2, *pairs]
    args += ["list", ttl.get("recent", 0), len(recent), *recent]
    members = snapshot.get("segments")
    if members is not None:
        # The segment memberships change with the profile, in the same versioned write.
        keys.append(key(namespace, "segments", user))
        args += [
            "members",
            ttl.get("profile", 0),
            len(members),
            user,
            f"mt:{namespace}:",
        ]
        for name, joined in sorted(members.items()):
            args += [name, joined, min_sizes.get(name, 0)]
    return keys, args


def trending_write(namespace: str, record: dict, ttl: dict[str, int]) -> tuple[list, list]:
    """KEYS and ARGV of the compare-and-set that stores one category's trending items."""
    category = record["category"]
    meta = [
        "version",
        record["version"],
        "window_start",
        record["window_start"],
        "window_end",
        record["window_end"],
        "category",
        category,
    ]
    members = []
    for item, count in record["items"]:
        members += [count, item]
    meta_key = key(namespace, "trending", f"{category}:meta")
    keys = [meta_key, meta_key, key(namespace, "trending", category)]
    seconds = ttl.get("trending", 0)
    args = [record["version"], "", seconds, len(meta) // 2, *meta]
    args += ["zset", seconds, len(members) // 2, *members]
    return keys, args


# How long a sink keeps trying while Redis cannot be reached (a restart, a failover)
# before the job fails: waits of 0.1 s doubling up to 2 s between tries.
RETRY_FOR_S = 60.0


def retries_for(seconds: float, cap: float = 2.0, base: float = 0.05) -> int:
    """How many tries of ``ExponentialBackoff(cap, base)`` wait about ``seconds`` in all.

    >>> retries_for(60), retries_for(0)
    (34, 0)
    """
    waited, tries = 0.0, 0
    while waited < seconds:
        tries += 1
        waited += min(cap, base * 2**tries)
    return tries


def connect(url: str, retry_for_s: float = RETRY_FOR_S) -> redis.Redis:
    """A client for a sink: long timeouts, retries with exponential backoff on connection
    errors for about ``retry_for_s`` seconds (a sink's writes are idempotent)."""
    retry = Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=retries_for(retry_for_s))
    return redis.Redis.from_url(
        url,
        socket_timeout=30,
        socket_connect_timeout=10,
        retry=retry,
        retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
    )


def run_batch(client: redis.Redis, script, calls: list[tuple[list, list]], url: str) -> list:
    """Run ``script`` once per ``(keys, args)`` in one pipelined round trip; the results.

    A server that restarted while the batch was sent has lost its scripts: the batch
    is sent again once (the pipeline loads the script first; the writes are idempotent).
    """
    try:
        try:
            return _pipelined(client, script, calls)
        except redis.exceptions.NoScriptError:
            return _pipelined(client, script, calls)
    except redis.exceptions.RedisError as exc:
        raise RedisSinkError(
            f"writing {len(calls)} records to {redact_url(url)} failed "
            f"(first key {calls[0][0][0]!r}): {exc}"
        ) from exc


def _pipelined(client: redis.Redis, script, calls: list[tuple[list, list]]) -> list:
    pipe = client.pipeline(transaction=False)
    for keys, args in calls:
        script(keys=keys, args=args, client=pipe)
    return pipe.execute()


class BatchedRedisFn(beam.DoFn):
    """A Redis sink DoFn: one client and script per worker, one pipelined batch per bundle.

    Subclasses implement ``write(batch)``; elements are buffered per bundle and
    written in ``finish_bundle``, or as soon as ``flush_every`` are held.
    """

    flush_every = 1000

    def __init__(self, url: str, script_text: str, retry_for_s: float = RETRY_FOR_S):
        self._url = url
        self.retry_for_s = retry_for_s  # how long writes are retried while Redis is away
        self._script_text = script_text
        self._client = None
        self._script = None
        self._buffer: list = []

    def setup(self):
        self._client = connect(self._url, self.retry_for_s)
        self._script = self._client.register_script(self._script_text)

    def start_bundle(self):
        self._buffer = []

    def process(self, element):
        self._buffer.append(element)
        if len(self._buffer) >= self.flush_every:
            self._flush()

    def finish_bundle(self):
        self._flush()

    def _flush(self):
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        self.write(batch)

    def write(self, batch: list) -> None:
        raise NotImplementedError

    def teardown(self):
        if self._client is not None:
            self._client.close()


class _CasWriteFn(BatchedRedisFn):
    """Buffer records per bundle, newest version per key, and write them in one batch."""

    flush_every = FLUSH_EVERY

    def __init__(
        self,
        url: str,
        namespace: str,
        ttl: dict[str, int],
        to_write,
        tally: str = "",
        latency: str = "",
        retry_for_s: float = RETRY_FOR_S,
    ):
        super().__init__(url, SCRIPT, retry_for_s)
        self._tally = tally  # the name under which transforms.progress counts the writes
        # The sink label of the event time to write latency (versions are event times).
        self._latency = latency
        self._namespace = namespace
        self._ttl = dict(ttl)
        self._to_write = to_write
        self._applied = metrics.counter("redis_writes_applied")
        self._stale = metrics.counter("redis_writes_stale")
        self._erased = metrics.counter("redis_writes_erased")
        self._held: dict = {}

    def start_bundle(self):
        self._held = {}

    def process(self, record):
        keys, args = self._to_write(self._namespace, record, self._ttl)
        held = self._held.get(keys[0])
        if held is None or held[1][0] < args[0]:
            self._held[keys[0]] = (keys, args)
        else:
            # An older snapshot of the same key in this bundle: the CAS would skip it too.
            self._stale.inc()
        if len(self._held) >= self.flush_every:
            self._flush()

    def _flush(self):
        if self._held:
            batch, self._held = list(self._held.values()), {}
            self.write(batch)

    def write(self, batch):
        results = run_batch(self._client, self._script, batch, self._url)
        applied = sum(1 for result in results if result == 1)
        erased = sum(1 for result in results if result == 2)
        if self._tally:
            progress.add(self._tally, len(results))
        if self._latency and applied:
            now = time.time()
            metrics.write_latencies(
                self._latency,
                (now - args[0] / 1000 for (_, args), result in zip(batch, results) if result == 1),
            )
        self._applied.inc(applied)
        self._erased.inc(erased)
        self._stale.inc(len(results) - applied - erased)


def redact_url(url: str) -> str:
    """The URL without its user, password or secret parameters, for messages and logs.

    Everything between ``://`` and the last ``@`` goes, so a password holding
    ``/``, ``?`` or ``#`` goes too.

    >>> redact_url("rediss://mt:s3cret@10.0.0.5:6380/0?ssl_ca_certs=/ca.pem&password=x")
    'rediss://***@10.0.0.5:6380/0?ssl_ca_certs=/ca.pem&password=***'
    >>> redact_url("redis://mt:Zm9v/YmF?y#z@127.0.0.1:6399/0")
    'redis://***@127.0.0.1:6399/0'
    """
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return _SECRET_PARAM.sub(r"\1***", f"{scheme}://{rest}")


_SECRET_PARAM = re.compile(r"([?&](?:password|username|ssl_password)=)[^&]*")


class WriteProfilesToRedis(beam.PTransform):
    """Profile snapshots -> ``mt:NS:profile:USER``, ``mt:NS:recent:USER`` and, with
    segments, ``mt:NS:segments:USER`` and ``mt:NS:segment:NAME`` (+ ``:seen``, ``:meta``)."""

    def __init__(
        self,
        url: str,
        namespace: str,
        ttl_seconds: dict[str, int],
        min_sizes: dict[str, int] | None = None,
        retry_for_s: float = RETRY_FOR_S,
    ):
        super().__init__()
        write = functools.partial(profile_write, min_sizes=dict(min_sizes or {}))
        self._fn = _CasWriteFn(
            url, namespace, ttl_seconds, write, "profiles_written", "profiles", retry_for_s
        )

    def expand(self, snapshots):
        return snapshots | "CasWrite" >> beam.ParDo(self._fn)


class WriteTrendingToRedis(beam.PTransform):
    """Trending records -> ``mt:NS:trending:CATEGORY`` (+ ``:meta``), latest window wins."""

    def __init__(
        self,
        url: str,
        namespace: str,
        ttl_seconds: dict[str, int],
        retry_for_s: float = RETRY_FOR_S,
    ):
        super().__init__()
        self._fn = _CasWriteFn(
            url, namespace, ttl_seconds, trending_write, latency="trending", retry_for_s=retry_for_s
        )

    def expand(self, records):
        return records | "CasWrite" >> beam.ParDo(self._fn)


def read_profile(client: redis.Redis, namespace: str, user: str) -> dict | None:
    """The stored profile snapshot of one user, or None."""
    raw = client.hget(key(namespace, "profile", user), "snapshot")
    return None if raw is None else json.loads(raw)


def read_trending(client: redis.Redis, namespace: str, category: str) -> list[tuple[str, int]]:
    """The trending items of one category, most viewed first."""
    pairs = client.zrange(key(namespace, "trending", category), 0, -1, withscores=True)
    return sorted(((member.decode(), int(score)) for member, score in pairs), key=_by_count)


def _by_count(pair):
    return -pair[1], pair[0]


def delete_namespace(client: redis.Redis, namespace: str, chunk: int = 1000) -> int:
    """Delete every key of ``namespace`` (``mt:NS:*``); returns how many went.

    For namespaces a command made for itself (``microtarget evaluate``), so that no
    copy of a user's data outlives the command.
    """
    deleted = 0
    batch = []
    for name in client.scan_iter(match=f"mt:{namespace}:*", count=chunk):
        batch.append(name)
        if len(batch) >= chunk:
            deleted += client.unlink(*batch)
            batch = []
    if batch:
        deleted += client.unlink(*batch)
    return deleted
