"""Dead letters: records the pipeline could not use, with why and where from.

A dead letter is a dict shaped like ``schemas/dead_letter.avsc``. Its excerpt
is the start of the rejected record with personal-looking values masked
(e-mail addresses, IP addresses, phone and card numbers, long digit runs),
so the dead-letter files can be shared with whoever fixes the producer.
"""

from __future__ import annotations

import json
import re

from models.privacy import PrivacyParams, is_personal_name, scrub_text

EXCERPT_CHARS = 200

# Order matters: e-mails and IPs before the generic digit runs they contain.
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_IPV4 = re.compile(r"\b\d{1,3}(\.\d{1,3}){3}\b")
_IPV6 = re.compile(r"\b[0-9A-Fa-f]{1,4}(:[0-9A-Fa-f]{0,4}){2,7}\b")
_PHONE = re.compile(r"\+?\d[\d ()./-]{7,}\d")
_DIGITS = re.compile(r"\d{6,}")


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?')
# Identifiers and personal fields are masked whole, whatever they look like.
PERSONAL_FIELDS = frozenset({"user_id", "anonymous_id", "email", "phone", "ip"})
_JSON_MEMBER = re.compile(r'"((?:[^"\\]|\\.)*)"(\s*:\s*)("(?:[^"\\]|\\.)*"?|[^,{}\[\]\s]+)')
_DEFAULTS = PrivacyParams()


def _member(match: re.Match) -> str:
    name = match.group(1)
    if name in PERSONAL_FIELDS or is_personal_name(_DEFAULTS, name):
        return f'"{name}"{match.group(2)}"<id>"'
    return match.group(0)


def _phone(match: re.Match) -> str:
    digits = sum(ch.isdigit() for ch in match.group(0))
    return "<phone>" if digits >= 9 else match.group(0)


def _mask(text: str) -> str:
    text = _EMAIL.sub("<email>", text)
    text = _IPV4.sub("<ip>", text)
    text = _IPV6.sub("<ip>", text)
    text = _PHONE.sub(_phone, text)
    return _DIGITS.sub(lambda m: "#" * len(m.group(0)), text)


def mask_excerpt(raw, limit: int = EXCERPT_CHARS) -> str:
    """The start of a raw record (bytes, text or dict), personal-looking values masked.

    >>> mask_excerpt('{"mail": "ann.lee@example.com", "ip": "10.1.2.3", "tel": "+49 170 1234567"}')
    '{"mail": "<id>", "ip": "<id>", "tel": "<id>"}'
    >>> mask_excerpt(b"\\xff\\xfeabc")
    '\\\\xff\\\\xfeabc'
    >>> mask_excerpt("order 12345678 of user 42")
    'order ######## of user 42'
    >>> mask_excerpt('{"timestamp": 1511544070000, "user_id": "ann", "anonymous_id": 7}')
    '{"timestamp": 1511544070000, "user_id": "<id>", "anonymous_id": "<id>"}'
    >>> mask_excerpt('{"properties": {"street": "Lindenstr. 5"}, "page": "/?m=a%40b.de"}')
    '{"properties": {"street": "<id>"}, "page": "/?m=<email>"}'
    """
    if raw is None:
        return ""
    if isinstance(raw, bytes | bytearray):
        raw = re.sub(rb"%40", b"@", bytes(raw), flags=re.IGNORECASE)
    elif isinstance(raw, str):
        raw = re.sub(r"%40", "@", raw, flags=re.IGNORECASE)
    if isinstance(raw, bytes | bytearray):
        text = bytes(raw[: limit * 4]).decode("utf-8", errors="backslashreplace")
    elif isinstance(raw, str):
        text = raw[: limit * 4]
    else:
        try:
            text = json.dumps(raw, sort_keys=True, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = repr(raw)
        text = text[: limit * 4]
    if text.lstrip()[:1] in ("{", "["):
        # JSON: mask inside string literals only; bare numbers (times, prices) stay readable.
        text = _JSON_MEMBER.sub(_member, text)
        text = _STRING.sub(lambda m: _mask(m.group(0)), text)
    else:
        text = _mask(text)
    if len(text) > limit:
        text = text[:limit] + "..."
    return text


def make_dead_letter(
    reason: str,
    detail: str,
    stage: str,
    *,
    source: str | None = None,
    offset: str | int | None = None,
    event_id: str | None = None,
    timestamp: int | None = None,
    raw=None,
) -> dict:
    """A dead-letter record (``schemas/dead_letter.avsc``).

    >>> letter = make_dead_letter("missing_field", "field 'timestamp' is required",
    ...                           "DecodeEvents", source="a.jsonl", offset=3, raw={"x": 1})
    >>> letter["offset"], letter["excerpt"]
    ('3', '{"x": 1}')
    """
    return {
        "reason": reason,
        "detail": scrub_text(detail),
        "stage": stage,
        "source": source,
        "offset": None if offset is None else str(offset),
        "event_id": scrub_text(event_id) if isinstance(event_id, str) else None,
        "timestamp": timestamp if type(timestamp) is int else None,
        "excerpt": mask_excerpt(raw),
    }
