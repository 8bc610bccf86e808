"""Pseudonymize: ids become pseudonyms and personal data is stripped, before any keying by user.

A thin DoFn around ``models.privacy.protect``: user and anonymous ids,
e-mail addresses and phone numbers become keyed HMAC-SHA256 pseudonyms, IP
addresses are truncated, turned into coarse geo and dropped, and personal
values in free text are masked. It runs right after ``DecodeEvents``, so
deduplication, sessions, the timeline, every sink and every dead letter
after it only ever see pseudonyms.

The consent decision itself (which purposes an event may serve, inherited
from the user's last known consent) needs each user's events in event-time
order, so it is made in ``UserTimeline`` (``models.consent``).

The key is not pickled with the DoFn: it is read from its source
(``pipelines.keys.KeySource``) in ``setup`` on each worker.
"""

from __future__ import annotations

import dataclasses

import apache_beam as beam
from apache_beam.transforms.window import TimestampedValue

from models import privacy
from transforms import metrics


class _ProtectFn(beam.DoFn):
    def __init__(self, params: privacy.PrivacyParams, key_source):
        self._params = dataclasses.replace(params, key=b"")
        self._source = key_source
        self._stripped_ip = metrics.counter("ip_addresses_dropped")

    def setup(self):
        self._params = dataclasses.replace(self._params, key=self._source.load())

    def process(self, event, timestamp=beam.DoFn.TimestampParam):
        if event.get("ip"):
            self._stripped_ip.inc()
        yield TimestampedValue(privacy.protect(self._params, event), timestamp)


class Pseudonymize(beam.PTransform):
    """Decoded events -> the same events with every personal value pseudonymized or removed."""

    def __init__(self, params: privacy.PrivacyParams, key_source):
        super().__init__()
        self._fn = _ProtectFn(params, key_source)

    def expand(self, events):
        return events | "Protect" >> beam.ParDo(self._fn)
