"""clave's own signature code, proved against the reference libraries: `standardwebhooks` for the
Standard Webhooks clave signs and accepts, `twilio.request_validator.RequestValidator` for the
X-Twilio-Signature on Twilio's callbacks. Each case is computed by both and must agree."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError
from twilio.request_validator import RequestValidator

from clave.verify.delivery import webhook
from clave.verify.delivery.twilio import request_signature, valid_signature

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
BODIES = [
    b'{"type":"message.send","to":"+14155552671"}',
    '{"text":"Tu código es 123456 — ¡gracias!"}'.encode(),
    b"",
    b"not json at all, with . dots . and\nlines",
]


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("message_id", ["msg_1", "evt_01HZX3Q9", "msg_a.b.c"])
def test_sign_equals_the_library(message_id: str, body: bytes) -> None:
    stamp = int(time.time())
    library = Webhook(SECRET).sign(message_id, datetime.fromtimestamp(stamp, UTC), body.decode())
    assert webhook.sign(webhook.decode_secret(SECRET), message_id, stamp, body) == library


@pytest.mark.parametrize(
    "secret",
    [
        SECRET,
        SECRET.removeprefix("whsec_"),
        "whsec_" + base64.b64encode(b"k" * 20).decode(),
        "whsec_" + base64.b64encode(b"k" * 20).decode().rstrip("="),
    ],
)
def test_secrets_decode_as_the_library_decodes_them(secret: str) -> None:
    # With or without the prefix and the base64 padding: the same key, so the same signature.
    stamp, body = int(time.time()), BODIES[0]
    library = Webhook(secret).sign("msg_1", datetime.fromtimestamp(stamp, UTC), body.decode())
    assert webhook.sign(webhook.decode_secret(secret), "msg_1", stamp, body) == library


def _clave_headers(message_id: str, stamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": webhook.sign(KEY, message_id, stamp, body),
    }


@pytest.mark.parametrize("body", BODIES)
def test_what_clave_signs_the_library_verifies(body: bytes) -> None:
    headers = _clave_headers("msg_1", int(time.time()), body)
    Webhook(SECRET).verify(body, headers, json_parse=False)  # raises if not authentic


def test_tampered_requests_are_refused_by_both() -> None:
    stamp, body = int(time.time()), BODIES[0]
    headers = _clave_headers("msg_1", stamp, body)
    stale = int(time.time()) - 3600  # signed right, but an hour ago: a replay
    cases = {
        "body": (headers, body.replace(b"2671", b"0000")),
        "timestamp": (headers | {"webhook-timestamp": str(stamp + 1)}, body),
        "id": (headers | {"webhook-id": "msg_2"}, body),
        "signature": (headers | {"webhook-signature": "v1," + "A" * 44}, body),
        "stale": (_clave_headers("msg_1", stale, body), body),
    }
    for what, (sent_headers, sent_body) in cases.items():
        with pytest.raises(WebhookVerificationError):
            Webhook(SECRET).verify(sent_body, sent_headers, json_parse=False)
        assert not webhook.verify(KEY, sent_headers, sent_body, now=time.time()), what


@pytest.mark.parametrize("body", BODIES)
def test_what_the_library_signs_clave_verifies(body: bytes) -> None:
    now = time.time()
    signature = Webhook(SECRET).sign(
        "msg_lib", datetime.fromtimestamp(int(now), UTC), body.decode()
    )
    headers = {
        "webhook-id": "msg_lib",
        "webhook-timestamp": str(int(now)),
        "webhook-signature": signature,
    }
    assert webhook.verify(webhook.decode_secret(SECRET), headers, body, now=now)
    # A rotated secret sends several signatures; one right one is enough for both.
    rotated = Webhook("whsec_" + base64.b64encode(b"o" * 32).decode()).sign(
        "msg_lib", datetime.fromtimestamp(int(now), UTC), body.decode()
    )
    both = headers | {"webhook-signature": f"{rotated} {signature}"}
    Webhook(SECRET).verify(body, both, json_parse=False)
    assert webhook.verify(KEY, both, body, now=now)
    assert not webhook.verify(KEY, headers | {"webhook-signature": rotated}, body, now=now)


TOKEN = "tok" + "e" * 29
CALLBACK = "https://clave.example/api/providers/twilio/status"
TWILIO_PARAMS = [
    {},
    {"MessageSid": "SM" + "7" * 32, "MessageStatus": "delivered", "AccountSid": "AC" + "1" * 32},
    {"CallSid": "CA" + "2" * 32, "CallStatus": "no-answer", "To": "+34612345678"},
    {"MessageSid": "SM1", "ErrorCode": "30003", "ErrorMessage": "Teléfono no disponible"},
    {"b": "2", "a": "1", "A": "0", "ab": ""},  # Twilio sorts names byte-wise, empty values kept
]


@pytest.mark.parametrize("params", TWILIO_PARAMS)
@pytest.mark.parametrize(
    "url", [CALLBACK, CALLBACK + "?tenant=acme&x=1", "http://127.0.0.1:8000/cb"]
)
def test_twilio_signature_equals_request_validator(url: str, params: dict[str, str]) -> None:
    reference = RequestValidator(TOKEN)
    expected = reference.compute_signature(url, params)
    assert request_signature(TOKEN, url, params) == expected
    assert valid_signature(TOKEN, url, params, expected)
    assert reference.validate(url, params, request_signature(TOKEN, url, params))


@pytest.mark.parametrize("params", TWILIO_PARAMS[1:])
def test_wrong_twilio_signatures_are_refused_by_both(params: dict[str, str]) -> None:
    reference = RequestValidator(TOKEN)
    right = reference.compute_signature(CALLBACK, params)
    tampered = {**params, next(iter(params)): "changed"}
    wrong = [
        (CALLBACK, tampered, right),  # the body changed after signing
        (CALLBACK.replace("status", "other"), params, right),  # signed for another URL
        (CALLBACK, params, RequestValidator("other-token").compute_signature(CALLBACK, params)),
        (CALLBACK, params, right[:-2]),
        (CALLBACK, params, ""),
    ]
    for url, sent, offered in wrong:
        assert not reference.validate(url, sent, offered)
        assert not valid_signature(TOKEN, url, sent, offered)
