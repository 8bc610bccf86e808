"""EraseUsers: carry out erasures in Redis, and keep the audit trail.

Written by hand (Beam has no Redis sink for Python). The same code serves the
pipeline (erasure records from ``UserTimeline``: a ``consent_revoked`` or
``erasure_requested`` event, or personalization withdrawn) and the
``microtarget erase`` command (requests from outside the stream).

For each erasure, in this order:

1. ``erase_user.lua`` deletes, in one atomic step, every key of the user in
   the namespace: the profile hash and the recent items, the trigger log
   entries matched up to the erasure (and their send-once guards), the user's
   membership in every segment (``mt:NS:segments:USER`` lists the segments;
   the user is removed from each ``mt:NS:segment:NAME`` sorted set). It leaves
   the tombstone ``mt:NS:erased:SUBJECT`` (the erased-at time, ms) that the
   profile and trigger writers check, so a write that raced the erasure cannot
   bring the data back. Data newer than the erasure (the user granted consent
   again) stays.
2. The user's entries on the trigger stream (``mt:NS:topic:triggers``) up to
   the erasure are deleted with XDEL (and their send-once guards): one pass
   over the stream per batch of erasures. Triggers published after the
   tombstone cannot be the user's old ones, so the pass misses nothing.
3. An entry is appended to the audit stream ``mt:NS:audit:erasures``
   (append-only: never trimmed by microtarget) with ``subject``, ``reason``,
   ``source``, ``requested_at`` and what went (``keys_deleted``,
   ``memberships_removed``, ``log_entries_removed``, ``stream_entries_removed``).
   It is written last, so an audit entry means the erasure is complete; a
   retried bundle erases again (nothing is left) and appends again.

``SUBJECT`` is the hex SHA-256 of the user's pseudonym
(``transforms.redis_sink.subject``): the erased user's pseudonym is nowhere
in Redis afterwards, and whoever knows it can still find the audit entry.
"""

from __future__ import annotations

import json
from pathlib import Path

import apache_beam as beam
import redis

from transforms import metrics
from transforms.redis_sink import (
    RETRY_FOR_S,
    BatchedRedisFn,
    RedisSinkError,
    key,
    redact_url,
    run_batch,
    tombstone_key,
)
from transforms.redis_sink import subject as subject_of

SCRIPT = (Path(__file__).parent / "erase_user.lua").read_text()
AUDIT = "audit"
SCAN_CHUNK = 1000
FLUSH_EVERY = 500


def audit_key(namespace: str) -> str:
    """The append-only audit stream of erasures."""
    return key(namespace, AUDIT, "erasures")


# Topic streams an erasure cleans: (name, field with the JSON, field with the id, guard kind).
TOPICS = (
    ("triggers", b"trigger", b"trigger_id", "trigger"),
    ("segments", b"change_json", b"change_id", "segment-change"),
)


def _stream_entries(
    client: redis.Redis, stream: str, body: bytes, id_field: bytes, erased: dict[str, int]
) -> list[tuple]:
    """``(entry id, user, message id)`` of erased users' entries from before the erasure."""
    found = []
    start = "-"
    while True:
        entries = client.xrange(stream, min=start, count=SCAN_CHUNK)
        for entry_id, fields in entries:
            user = fields.get(b"user")
            if user is None:
                continue
            at = erased.get(user.decode())
            if at is None:
                continue
            try:
                message = json.loads(fields[body])
                first = message.get("first_event_time", message["event_time"])
            except (KeyError, ValueError, TypeError, AttributeError):
                first = at  # unreadable: it is the user's, so it goes
            if first <= at:
                found.append((entry_id, user.decode(), fields.get(id_field)))
        if len(entries) < SCAN_CHUNK:
            return found
        start = "(" + entries[-1][0].decode()


def erase_users(
    client: redis.Redis,
    script,
    namespace: str,
    erasures: list[dict],
    tombstone_ttl_s: int,
    url: str,
) -> list[dict]:
    """Erase each ``{user_id, requested_at, reason, event_id?}``; the audit entries written."""
    if not erasures:
        return []
    calls = []
    for erasure in erasures:
        user = erasure["user_id"]
        keys = [
            key(namespace, "profile", user),
            key(namespace, "recent", user),
            key(namespace, "triggers", user),
            key(namespace, "segments", user),
            tombstone_key(namespace, user),
            key(namespace, "scores", user),
        ]
        args = [user, erasure["requested_at"], tombstone_ttl_s, key(namespace, "segment", "")]
        args.append(key(namespace, "trigger", ""))
        calls.append((keys, args))
    results = run_batch(client, script, calls, url)
    latest: dict[str, int] = {}
    for erasure in erasures:
        user = erasure["user_id"]
        latest[user] = max(latest.get(user, erasure["requested_at"]), erasure["requested_at"])
    try:
        per_user: dict[str, int] = {}
        guards: dict[str, int] = {}
        for topic, body, id_field, guard in TOPICS:
            stream = key(namespace, "topic", topic)
            gone = _stream_entries(client, stream, body, id_field, latest)
            for start in range(0, len(gone), SCAN_CHUNK):
                chunk = gone[start : start + SCAN_CHUNK]
                client.xdel(stream, *(entry_id for entry_id, _, _ in chunk))
                pipe = client.pipeline(transaction=False)
                for _, user, message_id in chunk:
                    per_user[user] = per_user.get(user, 0) + 1
                    pipe.delete(key(namespace, guard, (message_id or b"").decode()))
                for (_, user, _), deleted in zip(chunk, pipe.execute()):
                    guards[user] = guards.get(user, 0) + deleted
        audits = []
        pipe = client.pipeline(transaction=False)
        for erasure, (keys_deleted, members, log_entries) in zip(erasures, results):
            user = erasure["user_id"]
            entry = {
                "subject": subject_of(user),
                "reason": erasure["reason"],
                "source": erasure.get("event_id") or "request",
                "requested_at": str(erasure["requested_at"]),
                "keys_deleted": str(keys_deleted + guards.pop(user, 0)),
                "memberships_removed": str(members),
                "log_entries_removed": str(log_entries),
                "stream_entries_removed": str(per_user.pop(user, 0)),
            }
            pipe.xadd(audit_key(namespace), entry)
            audits.append(entry)
        pipe.execute()
    except redis.exceptions.RedisError as exc:
        raise RedisSinkError(
            f"erasing {len(erasures)} users at {redact_url(url)} failed: {exc}"
        ) from exc
    return audits


class _EraseFn(BatchedRedisFn):
    """Buffer one bundle's erasures and carry them out together."""

    flush_every = FLUSH_EVERY

    def __init__(
        self, url: str, namespace: str, tombstone_ttl_s: int, retry_for_s: float = RETRY_FOR_S
    ):
        super().__init__(url, SCRIPT, retry_for_s)
        self._namespace = namespace
        self._ttl = tombstone_ttl_s
        self._erased = metrics.counter("erasures_done")
        self._keys = metrics.counter("erasure_keys_deleted")

    def write(self, batch):
        audits = erase_users(
            self._client, self._script, self._namespace, batch, self._ttl, self._url
        )
        self._erased.inc(len(audits))
        self._keys.inc(sum(int(audit["keys_deleted"]) for audit in audits))


class EraseUsers(beam.PTransform):
    """Erasure records -> the users' keys deleted, a tombstone, an audit entry each."""

    def __init__(
        self, url: str, namespace: str, tombstone_ttl_s: int, retry_for_s: float = RETRY_FOR_S
    ):
        super().__init__()
        self._fn = _EraseFn(url, namespace, tombstone_ttl_s, retry_for_s)

    def expand(self, erasures):
        return erasures | "Erase" >> beam.ParDo(self._fn)


def read_audit(client: redis.Redis, namespace: str) -> list[tuple[str, dict]]:
    """The audit stream, oldest first: ``[(entry id, fields)]``."""
    return [
        (entry_id.decode(), {k.decode(): v.decode() for k, v in fields.items()})
        for entry_id, fields in client.xrange(audit_key(namespace))
    ]
