"""SkipSmsToLandlines with Twilio Lookup v2: against a local stand-in that checks the request
it gets, as Twilio would receive it."""

from __future__ import annotations

import base64
import http.server
import json
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from clave.verify.line_types import TwilioLookup
from tests.api.conftest import open_api, settings_for
from tests.api.test_providers import SID, TOKEN, twilio_env
from tests.support import FakeClock, RecordingServer

LANDLINE = "+14155550101"  # libphonenumber cannot tell: US ranges are shared
MOBILE = "+14155550102"
BROKEN = "+14155550103"  # the stand-in fails on this one


class LookupStandIn:
    """Twilio Lookup v2's PhoneNumbers resource, on 127.0.0.1."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                outer.requests.append(
                    {
                        "path": url.path,
                        "query": dict(urllib.parse.parse_qsl(url.query)),
                        "authorization": self.headers.get("authorization"),
                    }
                )
                number = urllib.parse.unquote(url.path.rsplit("/", 1)[-1])
                if number == BROKEN:
                    status, body = 500, {"code": 20500, "message": "Internal Server Error"}
                else:
                    kind = "landline" if number == LANDLINE else "mobile"
                    status = 200
                    body = {
                        "phone_number": number,
                        "valid": True,
                        "line_type_intelligence": {"type": kind, "carrier_name": "Test"},
                    }
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def lookup() -> Iterator[LookupStandIn]:
    server = LookupStandIn()
    yield server
    server.stop()


async def test_lookup_asks_as_twilio_expects_and_keeps_answers_a_day(
    lookup: LookupStandIn,
) -> None:
    clock = FakeClock()
    lines = TwilioLookup(SID, TOKEN, base_url=lookup.url, clock=clock)
    try:
        assert await lines.is_landline(LANDLINE) is True
        assert await lines.is_landline(MOBILE) is False
        [first, _] = lookup.requests
        assert first["path"] == "/v2/PhoneNumbers/%2B14155550101"
        assert first["query"] == {"Fields": "line_type_intelligence"}
        expected = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
        assert first["authorization"] == expected
        # Known for a day: no second lookup (each is billed); then asked again.
        assert await lines.is_landline(LANDLINE) is True
        assert len(lookup.requests) == 2
        clock.advance(86401)
        assert await lines.is_landline(LANDLINE) is True
        assert len(lookup.requests) == 3
        # Lookup failing: the metadata decides (a US number may take an SMS), nothing kept.
        assert await lines.is_landline(BROKEN) is False
        assert await lines.is_landline(BROKEN) is False
        assert len(lookup.requests) == 5
    finally:
        await lines.close()


async def test_a_service_that_skips_landlines_refuses_an_sms_lookup_calls_one(
    tmp_path: Path, lookup: LookupStandIn
) -> None:
    messages = RecordingServer()
    try:
        env = twilio_env(
            messages, CLAVE_TWILIO_LOOKUP_URL=lookup.url, CLAVE_BLOCKED_PREFIXES="+1415555019"
        )
        async for api in open_api(settings_for(tmp_path, **env)):
            default = await api.domain.tenants.get_tenant("default")
            flags = default.policy.flags | {"skip_sms_to_landlines"}
            await api.domain.tenants.update_policy("default", replace(default.policy, flags=flags))
            refused = await api.send(LANDLINE)
            assert refused.status_code == 422, refused.text
            assert refused.json()["error"]["code"] == "sms_to_landline"
            assert (await api.send(MOBILE)).status_code == 201
            # Only SMS is skipped: a call to the landline goes out.
            call = await api.send(LANDLINE, channel="call")
            assert call.status_code == 201, call.text
            assert [r["path"] for r in lookup.requests].count(
                "/v2/PhoneNumbers/%2B14155550101"
            ) == 1
            # A send the fraud guard refuses never costs a (billed) lookup.
            blocked = await api.send("+14155550199")
            assert blocked.status_code == 403, blocked.text
            assert not any(r["path"].endswith("%2B14155550199") for r in lookup.requests)
    finally:
        messages.stop()
