"""Rules applied at the edge: which address is counted, which bodies are JSON, which text is
safe, and malformed signature headers."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest

from clave.platform import client_ip
from clave.platform.client_ip import ip_bucket, parse_ip
from clave.platform.http import is_json_media_type
from clave.platform.text import is_plain_text, is_single_line
from clave.verify.delivery import webhook
from clave.verify.delivery.twilio import request_signature, valid_signature
from clave.verify.destinations import guess_key


@pytest.mark.parametrize(
    ("address", "bucket"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),  # IPv4-mapped: the same budget as the IPv4 address
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("::1", "::/64"),
    ],
)
def test_per_ip_limits_count_ipv6_by_its_64(address: str, bucket: str) -> None:
    assert ip_bucket(address) == bucket


def test_only_addresses_are_addresses() -> None:
    assert parse_ip(" 2001:DB8::1 ") == "2001:db8::1"
    for bad in ("not-an-ip", "1.2.3.4.5", "", "192.0.2.1/24", "²"):
        for _ in range(2):  # parsed addresses are kept; a refusal is not, it stays a refusal
            with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
                parse_ip(bad)
            with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
                ip_bucket(bad)


def test_long_addresses_are_parsed_but_not_kept() -> None:
    """An IPv6 scope id can make an address as long as a header: such are parsed every time,
    never held in the cache of recent addresses."""
    scoped = "fe80::1%" + "a" * 5000
    before = (
        client_ip._recent_ip.cache_info().currsize,
        client_ip._recent_bucket.cache_info().currsize,
    )
    assert parse_ip(scoped) == scoped
    assert ip_bucket(scoped) == "fe80::/64"
    after = (
        client_ip._recent_ip.cache_info().currsize,
        client_ip._recent_bucket.cache_info().currsize,
    )
    assert after == before
    assert parse_ip("2001:db8::7") == "2001:db8::7"
    assert client_ip._recent_ip.cache_info().currsize == before[0] + 1


def test_stored_options_read_back_as_json_wrote_them() -> None:
    """msgspec reads a send's options; what it refuses and json.dumps wrote is read as json
    reads it (a lone surrogate's escape)."""
    import json as stdjson

    from clave.verify.store.encoding import decode_options

    for options in ({"attempt_sid": "VL" + "0" * 32}, {"payee": "caf\u00e9 \ud800"}, {}):
        written = stdjson.dumps(options)
        assert decode_options(written) == stdjson.loads(written)
        assert decode_options(written.encode()) == stdjson.loads(written)
    assert decode_options(None) == {}
    assert decode_options("") == {}


@pytest.mark.parametrize(
    ("content_type", "json"),
    [
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("application/merge-patch+json", True),
        ("text/plain", False),
        ("text/plain; application/json", False),
        ("application/x-www-form-urlencoded", False),
        ("multipart/form-data; boundary=x", False),
        ("application/jsonp", False),
        ("json", False),
        ("", False),
    ],
)
def test_json_media_types(content_type: str, json: bool) -> None:
    assert is_json_media_type(content_type) is json


def test_text_that_can_forge_a_line_is_refused() -> None:
    assert is_single_line("Acme Bank, Inc. — 🏦")
    for bad in ("Bank.\r\nCall +19005550100", "a\tb", "rtl\u202eknaB", "nul\x00", "del\x7f"):
        assert not is_single_line(bad)
    assert is_plain_text("line one\nline two\r\n\tindented")
    assert not is_plain_text("bell\x07")
    assert not is_plain_text("rtl\u202e")


@pytest.mark.parametrize(
    ("destination", "key"),
    [
        ("Victim@example.com", "victim@example.com"),
        ("VICTIM@example.com", "victim@example.com"),
        ("victim+1@example.com", "victim@example.com"),
        ("Victim+Shop+2@Example.COM", "victim@example.com"),
        ("+14155552671", "+14155552671"),
        ("victim.name@gmail.com", "victimname@gmail.com"),  # Gmail ignores dots ...
        ("V.i.c.t.i.m.Name+x@GoogleMail.com", "victimname@gmail.com"),  # ... and both domains
        ("victim.name@example.com", "victim.name@example.com"),  # elsewhere a dot is a letter
        ("+tag@example.com", "+tag@example.com"),
    ],
)
def test_one_inbox_is_one_guess_budget(destination: str, key: str) -> None:
    assert guess_key(destination) == key


def test_malformed_signature_headers_are_just_wrong() -> None:
    url, params = "https://clave.example/api/providers/twilio/status", {"MessageSid": "SM1"}
    right = request_signature("token", url, params)
    assert valid_signature("token", url, params, right)
    for offered in ("é" * len(right), right + "é", "", "\x00"):
        assert not valid_signature("token", url, params, offered)

    key = base64.b64decode(base64.b64encode(b"s" * 32))
    now = time.time()
    body = b'{"message_id": "m", "status": "delivered"}'
    signed = webhook.sign(key, "msg_1", int(now), body)
    good = {"webhook-id": "msg_1", "webhook-timestamp": str(int(now)), "webhook-signature": signed}
    assert webhook.verify(key, good, body, now=now)
    for change in (
        {"webhook-timestamp": "²"},
        {"webhook-timestamp": "١٢٣"},  # Arabic-Indic digits: isdigit() but not a timestamp
        {"webhook-timestamp": "9" * 40},
        {"webhook-signature": "v1,é"},
        {"webhook-signature": signed + " v1,ü"},  # a bad candidate beside the right one
        {"webhook-id": "msg_é"},
    ):
        headers = good | change
        expected = change == {"webhook-signature": signed + " v1,ü"}
        assert webhook.verify(key, headers, body, now=now) is expected, change


@pytest.mark.parametrize(
    ("forwarded", "hops", "expected"),
    [
        (None, 0, "10.0.0.1"),
        ("198.51.100.7", 0, "10.0.0.1"),  # no trusted proxy: the header is the client's word
        ("198.51.100.7", 1, "198.51.100.7"),
        ("spoofed, 198.51.100.7", 1, "198.51.100.7"),  # only the proxy's own entry counts
        ("198.51.100.7, 10.9.9.9", 2, "198.51.100.7"),
        ("198.51.100.7", 2, "10.0.0.1"),  # too few entries: it did not come through the proxies
        ("1.2.3.4, garbage", 1, "10.0.0.1"),  # not an address: the peer
        ("2001:DB8::1", 1, "2001:db8::1"),
        # Two header lines (a client's, then haproxy's own): read as one list, in order.
        (["spoofed", "198.51.100.7"], 1, "198.51.100.7"),
        (["198.51.100.7", "10.9.9.9"], 2, "198.51.100.7"),
    ],
)
def test_the_end_users_address(forwarded: str | list[str] | None, hops: int, expected: str) -> None:
    from litestar import Request

    from clave.platform.client_ip import end_user_ip

    lines = [forwarded] if isinstance(forwarded, str) else forwarded or []
    headers = [(b"x-forwarded-for", line.encode()) for line in lines]
    scope: Any = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": b"",
        "headers": headers,
        "client": ("10.0.0.1", 40000),
        "path_params": {},
    }
    assert end_user_ip(Request(scope), hops) == expected


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("GET /v2/Services/VA1/Verifications/+14155552671 200", "/Verifications/+1415***2671 "),
        ("/v2/x/%2B14155552671?y=1", "/v2/x/%2B1415***2671?y=1"),
        ("The To number +1-(415)-555-2671 is not valid", "number +1415***2671 is"),
        ("invalid destination 14155552671.", "destination 1415***2671."),
        ("?to=ana.b%40example.com&limit=5", "?to=a***%40example.com&limit="),
        ("550 <Ana@Example.com>: no such user", "<A***@Example.com>"),
    ],
)
def test_destinations_are_masked_wherever_they_appear(text: str, masked: str) -> None:
    from clave.platform.contacts import mask_text

    assert masked in mask_text(text)


def test_what_is_not_a_destination_is_left_alone() -> None:
    from clave.platform.contacts import mask_text

    for text in ("VE0123456789abcdef0123456789abcdef", "took 12.5 ms at 1800000000.25", "v1.2.3"):
        assert mask_text(text) == text
