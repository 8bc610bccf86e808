"""WriteSegmentChanges: segment enter and exit events to the topic, once each.

Written by hand (Beam has no Redis sink for Python). The memberships
themselves are written with the profile, in its versioned compare-and-set
(``transforms.redis_sink``): ``mt:NS:segments:USER`` (the user's segments)
and ``mt:NS:segment:NAME`` (members scored by when they joined), so they
always agree with the stored profile. This sink publishes the changes
(``schemas/segment_change.avsc``: the rule, its version and the values that
decided) on the topic stream ``mt:NS:topic:segments`` with fields
``change_id``, ``segment``, ``change``, ``user`` and ``change_json``. The
change id guard (``mt:NS:segment-change:ID``) makes a replay publish nothing
twice, and a change of a user erased since is not published.
"""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam

from transforms import metrics
from transforms.redis_sink import (
    RETRY_FOR_S,
    BatchedRedisFn,
    canonical_json,
    key,
    run_batch,
    tombstone_key,
)

SCRIPT = (Path(__file__).parent / "publish_change.lua").read_text()


def topic_key(namespace: str) -> str:
    """The stream segment changes are published on."""
    return key(namespace, "topic", "segments")


class _PublishChangesFn(BatchedRedisFn):
    def __init__(
        self,
        url: str,
        namespace: str,
        ttl_seconds: int,
        maxlen: int,
        mirror=None,
        retry_for_s: float = RETRY_FOR_S,
    ):
        super().__init__(url, SCRIPT, retry_for_s)
        self._namespace = namespace
        self._ttl = ttl_seconds
        self._maxlen = maxlen
        self._mirror = mirror
        self._mirrored = metrics.counter("segment_changes_mirrored")
        self._unmirrored = metrics.counter("segment_changes_not_mirrored")
        self._published = metrics.counter("segment_changes_published")
        self._erased = metrics.counter("segment_changes_refused_erased")

    def write(self, batch):
        stream = topic_key(self._namespace)
        calls = []
        for change in batch:
            user = change["user_id"]
            keys = [
                key(self._namespace, "segment-change", change["change_id"]),
                tombstone_key(self._namespace, user),
                stream,
            ]
            args = [self._ttl, self._maxlen, change["event_time"]]
            args += ["change_id", change["change_id"], "segment", change["segment"]]
            args += ["change", change["change"], "user", user, "change_json"]
            args.append(canonical_json(change))
            calls.append((keys, args))
        results = run_batch(self._client, self._script, calls, self._url)
        self._published.inc(sum(1 for result in results if result == 1))
        self._erased.inc(sum(1 for result in results if result == 2))
        if self._mirror is not None:
            messages = [
                (change["change_id"], canonical_json(change))
                for change, result in zip(batch, results)
                if result == 1
            ]
            if messages:
                failed = self._mirror.publish(messages, kind="segment_change")
                self._mirrored.inc(len(messages) - failed)
                self._unmirrored.inc(failed)


class WriteSegmentChanges(beam.PTransform):
    """Segment changes -> ``mt:NS:topic:segments``, each once (and to ``mirror``, if given)."""

    def __init__(
        self,
        url: str,
        namespace: str,
        ttl_seconds: int,
        maxlen: int = 100_000,
        mirror=None,
        retry_for_s: float = RETRY_FOR_S,
    ):
        super().__init__()
        self._fn = _PublishChangesFn(url, namespace, ttl_seconds, maxlen, mirror, retry_for_s)

    def expand(self, changes):
        return changes | "Publish" >> beam.ParDo(self._fn)
