"""A service's policy flags act on every API, the native one included (not only on /v2)."""

from __future__ import annotations

from dataclasses import replace

from tests.api.conftest import Api

# A UK fixed line (020 numbers are London landlines) and a UK mobile.
LANDLINE = "+442071838750"
MOBILE = "+447400123456"


async def _skip_landlines(api: Api) -> None:
    policy = api.domain.settings.default_policy
    flags = policy.flags | {"skip_sms_to_landlines"}
    await api.domain.tenants.update_policy("default", replace(policy, flags=flags))


async def test_an_sms_to_a_landline_goes_out_unless_the_service_skips_them(api: Api) -> None:
    assert (await api.send(LANDLINE)).status_code == 201


async def test_the_native_api_refuses_an_sms_to_a_landline_when_the_service_skips_them(
    api: Api,
) -> None:
    await _skip_landlines(api)
    r = await api.send(LANDLINE)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "sms_to_landline"
    assert await api.domain.store.pending_deliveries() == 0
    # Only SMS is refused: a call to the fixed line, and an SMS to a mobile, go out.
    assert (await api.send(LANDLINE, "call")).status_code == 201
    assert (await api.send(MOBILE)).status_code == 201


async def test_the_original_route_refuses_an_sms_to_a_landline_too(api: Api) -> None:
    await _skip_landlines(api)
    r = await api.post("/api/messages/send-code", {"to": LANDLINE})
    assert r.status_code == 400, r.text
    assert "landline" in r.json()["message"]
    assert await api.domain.store.pending_deliveries() == 0
