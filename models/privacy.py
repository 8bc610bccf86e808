"""Pseudonymization and personal-data stripping of one event, as plain functions.

``protect(params, event)`` is what ``Pseudonymize`` does to every decoded
event before anything is keyed by user, so no raw identifier ever becomes a
key, a state cell, a Redis value, a topic message or a log line:

* ``user_id``, ``anonymous_id``, ``email`` and ``phone`` become keyed
  pseudonyms: the lowercase hex of HMAC-SHA256(key, value). E-mail addresses
  are lowercased and trimmed first, phone numbers reduced to their digits
  (and a leading ``+``), so one person's spellings give one pseudonym. Any
  service that holds the key computes the same pseudonym to look a user up.
* ``ip`` is truncated (IPv4 to its /24, IPv6 to its /48), looked up in the
  optional coarse-geo table (fills ``country`` and ``region`` when the event
  has none), then dropped.
* Ids (``event_id``, ``session_id``, ``product_id``, ``category``,
  ``brand``) that contain an e-mail or IP address become their pseudonym:
  masking would make distinct ids equal.
* Every other text value (property names and values included) is scanned
  for e-mail addresses, IP addresses and phone numbers, also percent-encoded,
  which are replaced by ``<email>``, ``<ip>`` and ``<phone>``; properties
  named like personal data are replaced by ``<redacted>`` whatever they hold:
  a name in ``params.redact_properties`` (``shippingAddress`` is read as
  ``shipping_address``), or one ending in ``_`` + one of those that are never
  about products (``customer_email``, ``billing_address``; ``name`` itself
  only in the names listed, so ``product_name`` stays).

A phone number is recognised by its shape: 9 to 15 digits that start with
``+``, ``00`` or a bracket, or are split by spaces, dots, dashes, slashes or
brackets; 16 or more such digits (a card or account number) become
``<number>``. Dates and times (``2019-11-25 12:30``, ``25.11.2019``), price
ranges (``100.00-250.00``) and lists of small numbers split by slashes
(``38/39/40``) are not phone numbers. A bare run of digits is left alone (it
is far more often a product, order or page id than a phone number); a
producer that puts phone numbers in free text without any separator should
send them in ``phone``.

HMAC-SHA256 comes from the standard library (``hmac``, ``hashlib``) and IP
parsing from ``ipaddress``; the text scanning is written here because no
kept library scrubs free text against this event schema.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import unquote

REDACTED = "<redacted>"
ID_FIELDS = ("user_id", "anonymous_id")
# Ids: pseudonymized whole if they hold an address, so that distinct ids stay distinct.
_OPAQUE_IDS = frozenset({"event_id", "session_id", "product_id", "category", "brand"})
_NOT_TEXT = frozenset({"event_type", "consent"})
DEFAULT_REDACT_PROPERTIES = (
    "name",
    "first_name",
    "last_name",
    "full_name",
    "email",
    "e_mail",
    "mail",
    "phone",
    "mobile",
    "tel",
    "telephone",
    "ip",
    "ip_address",
    "address",
    "street",
    "postcode",
    "zip",
    "birthday",
    "date_of_birth",
    "dob",
    "iban",
    "card",
    "card_number",
    "password",
)

# Name suffixes that make a property personal whatever comes before them.
_PERSONAL_SUFFIXES = frozenset(
    {"email", "e_mail", "mail", "phone", "mobile", "telephone", "address", "street"}
    | {"postcode", "zip", "birthday", "dob", "iban", "password", "ip", "ip_address"}
)
_ADDRESSES = re.compile(
    r"(?P<email>[\w.+'-]+@[\w-]+(?:\.[\w-]+)+)"
    r"|(?P<ipv6>(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}"
    r"(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4})?(?![\w:]|\.\d))"
    r"|(?P<ipv4>(?<!\d)(?<!\d\.)\d{1,3}(?:\.\d{1,3}){3}(?!\d|\.\d))"
)
# Digits with at most three separators between them, maybe after +, 00 or (.
_NUMBER = re.compile(r"(?<![\d+])(?:\+|00|\()?\d(?:[ ()./-]{0,3}\d){6,}")
_SEPARATORS = re.compile(r"[ ()./-]")
# What any of the above needs: a text with none of these is left as it is, unread by them.
_MAYBE_PERSONAL = re.compile(r"[\d@:%]")
_MAYBE_ADDRESS = re.compile(r"[@:.%]")
_DATE = re.compile(
    r"^(?:(?:19|20)\d\d[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.](?:19|20)\d\d)(?!\d)"
)
_PRICE = re.compile(r"\d\.\d\d(?!\d)")
_SMALL_GROUPS = re.compile(r"^\d{1,2}(?:/\d{1,2})+$")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_WORD = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class PrivacyParams:
    """The pseudonym key and the stripping rules (``pipelines.config`` builds them)."""

    key: bytes = field(repr=False, default=b"")
    redact_properties: frozenset = frozenset(DEFAULT_REDACT_PROPERTIES)
    # Coarse geo: truncated network (str) -> (country, region or None).
    geo: dict = field(default_factory=dict, repr=False)


def pseudonym(key: bytes, value: str) -> str:
    """The keyed pseudonym of an identifier: hex HMAC-SHA256.

    >>> pseudonym(b"k", "u42")[:16]
    '2d68c798596fa4fd'
    """
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def normalize_email(value: str) -> str:
    """An e-mail address as pseudonymized: trimmed and lowercased."""
    return value.strip().lower()


def normalize_phone(value: str) -> str:
    """A phone number as pseudonymized: its digits, with a leading ``+`` if it had one.

    >>> normalize_phone(" +49 (170) 123-4567 ")
    '+491701234567'
    """
    digits = "".join(ch for ch in value if ch.isdigit())
    return ("+" if value.strip().startswith("+") else "") + digits


def user_pseudonym(key: bytes, user_id: str) -> str:
    """What a raw ``user_id`` is stored under (``mt:NS:profile:PSEUDONYM``)."""
    return pseudonym(key, user_id)


def anonymous_pseudonym(key: bytes, anonymous_id: str) -> str:
    """The pseudonym of an ``anonymous_id`` (the user key is ``anon:`` + it)."""
    return pseudonym(key, anonymous_id)


def truncate_ip(value: str) -> str | None:
    """The network an address belongs to: IPv4 /24, IPv6 /48; None if not an address.

    >>> truncate_ip("203.0.113.77"), truncate_ip("2001:db8:abcd:12::1"), truncate_ip("x")
    ('203.0.113.0/24', '2001:db8:abcd::/48', None)
    """
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network((address, prefix), strict=False))


def coarse_geo(geo: dict, network: str) -> tuple | None:
    """The ``(country, region)`` of the longest geo-table network holding ``network``."""
    if not geo:
        return None
    net = ipaddress.ip_network(network)
    while True:
        found = geo.get(str(net))
        if found is not None or net.prefixlen == 0:
            return found
        net = net.supernet()


def parse_geo_table(lines) -> dict:
    """A coarse-geo table from CSV lines ``network,country[,region]`` (``#`` comments).

    Networks must be /24 or shorter for IPv4 and /48 or shorter for IPv6:
    the lookup only ever sees truncated addresses. Raises ValueError naming
    the line.
    """
    table = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = [part.strip() for part in line.split(",")]
        if len(parts) not in (2, 3) or not parts[1]:
            raise ValueError(f"line {number}: expected network,country[,region]")
        try:
            net = ipaddress.ip_network(parts[0], strict=False)
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from None
        if net.prefixlen > (24 if net.version == 4 else 48):
            raise ValueError(f"line {number}: {net} is narrower than a truncated address")
        table[str(net)] = (parts[1], parts[2] if len(parts) == 3 and parts[2] else None)
    return table


def _address(match: re.Match) -> str:
    text = match.group(0)
    if match.lastgroup == "email":
        return "<email>"
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return text
    return "<ip>"


def _number(match: re.Match) -> str:
    text = match.group(0)
    digits = sum(ch.isdigit() for ch in text)
    if digits < 9 or not (text.startswith(("+", "00", "(")) or _SEPARATORS.search(text)):
        return text
    if _DATE.match(text.lstrip("(")) or _SMALL_GROUPS.match(text):
        return text
    if text.count(".") <= 2 and _PRICE.search(text):
        return text
    # Up to 15 digits: a phone number (E.164); longer: a card or account number.
    return "<phone>" if digits <= 15 else "<number>"


def _scrub(text: str) -> str:
    # Addresses first, so a phone number cannot run on into an IP address after it.
    return _NUMBER.sub(_number, _ADDRESSES.sub(_address, text))


def scrub_text(text: str) -> str:
    """Free text with e-mail addresses, IP addresses and phone numbers masked.

    >>> scrub_text("mail ann@example.com from 10.1.2.3, call +49 170 1234567")
    'mail <email> from <ip>, call <phone>'
    >>> scrub_text("/product/1234567890 at 12:30:45 on 2019-11-25")
    '/product/1234567890 at 12:30:45 on 2019-11-25'
    >>> scrub_text("/signup?email=ann%40example.com&src=mail")
    '/signup?email=<email>&src=mail'
    """
    if not text or _MAYBE_PERSONAL.search(text) is None:
        return text
    scrubbed = _scrub(text)
    if "%" in text:
        decoded = unquote(text)
        if decoded != text:
            cleaned = _scrub(decoded)
            if cleaned != decoded:
                return cleaned  # something was hidden in the encoding
    return scrubbed


def has_address(text: str) -> bool:
    """Whether the text holds an e-mail or IP address, also percent-encoded."""
    if _MAYBE_ADDRESS.search(text) is None:
        return False
    return _ADDRESSES.sub(_address, text) != text or (
        "%" in text and _ADDRESSES.sub(_address, unquote(text)) != unquote(text)
    )


def is_personal_name(params: PrivacyParams, name: str) -> bool:
    """Whether a property of this name is personal data, whatever its value.

    >>> p = PrivacyParams()
    >>> [is_personal_name(p, n) for n in ("firstName", "shipping_address", "product_name")]
    [True, True, False]
    """
    normal = _NON_WORD.sub("_", _CAMEL.sub("_", name).lower()).strip("_")
    if normal in params.redact_properties:
        return True
    return (
        any(
            normal.endswith("_" + suffix) and suffix in params.redact_properties
            for suffix in _PERSONAL_SUFFIXES
        )
        or normal.split("_")[-1] in {"name"}
        and normal in _PERSON_NAMES
    )


_PERSON_NAMES = frozenset(
    {"first_name", "last_name", "full_name", "customer_name", "user_name", "given_name"}
    | {"family_name", "middle_name", "maiden_name", "display_name", "contact_name"}
)


def protect(params: PrivacyParams, event: dict) -> dict:
    """A copy of a decoded event with every personal value pseudonymized or removed."""
    out = {}
    for name, value in event.items():
        if value is None or name in _NOT_TEXT:
            out[name] = value
        elif name in ID_FIELDS:
            out[name] = pseudonym(params.key, value)
        elif name == "email":
            out[name] = pseudonym(params.key, normalize_email(value))
        elif name == "phone":
            out[name] = pseudonym(params.key, normalize_phone(value))
        elif name == "ip":
            out[name] = None
        elif name in _OPAQUE_IDS:
            out[name] = pseudonym(params.key, value) if has_address(value) else value
        elif name == "properties":
            out[name] = {
                scrub_text(prop): REDACTED if is_personal_name(params, prop) else scrub_text(text)
                for prop, text in value.items()
            }
        elif isinstance(value, str):
            out[name] = scrub_text(value)
        else:
            out[name] = value
    ip = event.get("ip")
    if ip and params.geo and not event.get("country"):
        network = truncate_ip(ip)
        found = coarse_geo(params.geo, network) if network else None
        if found is not None:
            out["country"] = found[0]
            if found[1] is not None and not event.get("region"):
                out["region"] = found[1]
    return out
