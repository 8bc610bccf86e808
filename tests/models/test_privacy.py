"""Pseudonymization and stripping of one event (models.privacy)."""

from __future__ import annotations

import hashlib
import hmac
import json
import random

import pytest

from models import privacy
from models.validation import FIELDS

KEY = b"0123456789abcdef-test"
PARAMS = privacy.PrivacyParams(key=KEY)


def event(**fields) -> dict:
    record = {name: None for name, _, _ in FIELDS}
    record.update(event_id="e1", user_id="u1", event_type="product_view", timestamp=1)
    record.update(fields)
    return record


def test_pseudonym_is_hmac_sha256_of_the_key():
    expected = hmac.new(KEY, b"ann@example.com", hashlib.sha256).hexdigest()
    assert privacy.pseudonym(KEY, "ann@example.com") == expected
    assert privacy.pseudonym(b"another key, 16+b", "ann@example.com") != expected


def test_ids_become_pseudonyms_and_spellings_of_one_address_agree():
    out = privacy.protect(
        PARAMS,
        event(user_id="ann@example.com", anonymous_id="cookie-1", email=" Ann@Example.COM "),
    )
    assert out["user_id"] == privacy.pseudonym(KEY, "ann@example.com")
    assert out["anonymous_id"] == privacy.pseudonym(KEY, "cookie-1")
    assert out["email"] == out["user_id"]


def test_phone_numbers_are_pseudonymized_by_their_digits():
    one = privacy.protect(PARAMS, event(phone="+49 (170) 123-4567"))["phone"]
    two = privacy.protect(PARAMS, event(phone="+491701234567"))["phone"]
    assert one == two == privacy.pseudonym(KEY, "+491701234567")


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("203.0.113.77", "203.0.113.0/24"),
        ("2001:db8:abcd:12:1:2:3:4", "2001:db8:abcd::/48"),
        ("::ffff:10.1.2.3", "10.1.2.0/24"),
        ("not an address", None),
    ],
)
def test_addresses_are_truncated(address, network):
    assert privacy.truncate_ip(address) == network


def test_ip_gives_coarse_geo_then_goes():
    geo = privacy.parse_geo_table(
        ["# network,country,region", "203.0.0.0/16,DE,BE", "2001:db8::/32,FR"]
    )
    params = privacy.PrivacyParams(key=KEY, geo=geo)
    out = privacy.protect(params, event(ip="203.0.113.77"))
    assert (out["ip"], out["country"], out["region"]) == (None, "DE", "BE")
    out = privacy.protect(params, event(ip="2001:db8:abcd:12::1"))
    assert (out["ip"], out["country"], out["region"]) == (None, "FR", None)
    # The event's own country wins; an address the table lacks only goes.
    out = privacy.protect(params, event(ip="203.0.113.77", country="AT"))
    assert (out["country"], out["region"]) == ("AT", None)
    out = privacy.protect(params, event(ip="198.51.100.1"))
    assert (out["ip"], out["country"]) == (None, None)


@pytest.mark.parametrize(
    "line", ["203.0.113.0/25,DE", "10.0.0.0/8", "nonsense,DE", "2001:db8::/64,FR"]
)
def test_bad_geo_lines_are_rejected_naming_the_line(line):
    with pytest.raises(ValueError, match="^line 2: "):
        privacy.parse_geo_table(["# header", line])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to ann.lee+shop@example.co.uk", "write to <email>"),
        ("from 192.168.1.20 and 2001:db8::7", "from <ip> and <ip>"),
        ("call +49 170 1234567 or 0049-170-1234567", "call <phone> or <phone>"),
        ("(030) 1234-5678", "<phone>"),
        ("/p/1234567890", "/p/1234567890"),  # a bare id, not a phone number
        ("12:30:45 on 2019-11-25", "12:30:45 on 2019-11-25"),
        ("version 1.2.3", "version 1.2.3"),
        ("size 42 shoes", "size 42 shoes"),
        ("card 4111 1111 1111 1111", "card <number>"),
        ("my ip is 10.1.2.3.", "my ip is <ip>."),
        ("/account?email=ann%40example.com", "/account?email=<email>"),
        ("/signup?tel=%2B491701234567", "/signup?tel=<phone>"),
        ("call+491701234567", "call<phone>"),
        ("+49 - 170 - 1234567", "<phone>"),
        ("::ffff:203.0.113.77 said hi", "<ip> said hi"),
        ("o'brien@example.com", "<email>"),
        # Shop data that only looks like numbers.
        ("2019-11-25 12:30:45", "2019-11-25 12:30:45"),
        ("25.11.2019 14:30", "25.11.2019 14:30"),
        ("/shoes?price=100.00-250.00", "/shoes?price=100.00-250.00"),
        ("/blog/2019/11/25/12", "/blog/2019/11/25/12"),
        ("size 38/39/40/41/42", "size 38/39/40/41/42"),
        ("06.12.34.56.78", "<phone>"),
        ("at 203.0.113.77, +49 170 1234567 203.0.113.78", "at <ip>, <phone> <ip>"),
    ],
)
def test_free_text_is_scrubbed(text, expected):
    assert privacy.scrub_text(text) == expected


def test_nothing_personal_survives_protect():
    raw = event(
        event_id="evt-ann@example.com-1",
        user_id="ann@example.com",
        email="ann@example.com",
        phone="+49 170 1234567",
        ip="203.0.113.77",
        query="ann@example.com +49 170 1234567 203.0.113.77",
        page="/account?mail=ann@example.com",
        campaign="mail-ann@example.com",
        properties={"Name": "Ann Lee", "note": "call 0170/1234567", "color": "red"},
    )
    out = privacy.protect(PARAMS, raw)
    text = json.dumps(out)
    for secret in ("ann@example.com", "1234567", "203.0.113", "Ann Lee"):
        assert secret not in text, secret
    assert out["properties"] == {"Name": "<redacted>", "note": "call <phone>", "color": "red"}
    assert out["event_id"] == privacy.pseudonym(KEY, "evt-ann@example.com-1")
    assert raw["user_id"] == "ann@example.com"  # the input is not changed


def test_protect_keeps_what_is_not_personal():
    raw = event(product_id="p-1", category="shoes", price=9.5, country="DE", device="mobile")
    out = privacy.protect(PARAMS, raw)
    assert {k: v for k, v in out.items() if k not in ("user_id",)} == {
        k: v for k, v in raw.items() if k not in ("user_id",)
    }


def test_ids_of_products_keep_their_shape_unless_they_hold_an_address():
    raw = event(product_id="123-456-789", category="4006381-333931", brand="ann@example.com")
    out = privacy.protect(PARAMS, raw)
    assert (out["product_id"], out["category"]) == ("123-456-789", "4006381-333931")
    assert out["brand"] == privacy.pseudonym(KEY, "ann@example.com")


@pytest.mark.parametrize(
    ("name", "personal"),
    [
        ("firstName", True),
        ("shipping_address", True),
        ("customer_name", True),
        ("customerEmail", True),
        ("Phone", True),
        ("product_name", False),
        ("color", False),
        ("zip_code_area", False),
    ],
)
def test_properties_named_like_personal_data_are_redacted(name, personal):
    out = privacy.protect(PARAMS, event(properties={name: "x"}))
    assert (out["properties"][name] == privacy.REDACTED) is personal


def test_property_names_and_every_text_field_are_scanned():
    out = privacy.protect(
        PARAMS, event(properties={"ann@example.com": "1"}, device="ann@example.com")
    )
    assert out["properties"] == {"<email>": "1"} and out["device"] == "<email>"


def test_texts_skipped_by_the_quick_check_are_those_the_patterns_leave():
    # The quick check skips a text with no digit, "@", ":", "%" (and for addresses, ".");
    # on random texts of those and other characters it agrees with the full scan.
    rng = random.Random(11)
    alphabet = "ab.-_ +()/:@%40x1٣9Z"  # "٣" is a digit to \d too
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 24)))
        full = privacy._scrub(text)
        if "%" in text and privacy.unquote(text) != text:
            cleaned = privacy._scrub(privacy.unquote(text))
            full = cleaned if cleaned != privacy.unquote(text) else full
        assert privacy.scrub_text(text) == full, text
        decoded = privacy.unquote(text)
        holds = privacy._ADDRESSES.sub(privacy._address, text) != text or (
            "%" in text and privacy._ADDRESSES.sub(privacy._address, decoded) != decoded
        )
        assert privacy.has_address(text) is holds, text
    assert privacy.scrub_text("shoes and bags") == "shoes and bags"
    assert privacy.has_address("sku-12345") is False
    assert privacy.has_address("fe80::ab") is True
