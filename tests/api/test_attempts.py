"""The attempts log through HTTP: /v2/Attempts (Twilio's filters, fields, paging and summary,
scoped to the account's services) and GET /api/attempts (the API key's tenant)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from clave.verify.destinations import mask
from tests.api.conftest import settings_for
from tests.api.test_twilio_api import DATE, V2, basic, open_v2, twilio_error

US, US2, ES = "+14155552671", "+14155552672", "+34612345678"


@pytest.fixture
async def v2(tmp_path: Path) -> AsyncIterator[V2]:
    async for found in open_v2(settings_for(tmp_path)):
        yield found


async def _sent(v2: V2, sid: str, to: str, channel: str = "sms") -> dict[str, Any]:
    r = await v2.post(f"/Services/{sid}/Verifications", {"To": to, "Channel": channel})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_the_attempts_log_through_v2(v2: V2) -> None:
    shop = await v2.service()
    first = await _sent(v2, shop, US)
    await _sent(v2, shop, ES)
    await _sent(v2, shop, US2)
    code = await v2.api.code(US)
    approved = await v2.post(f"/Services/{shop}/VerificationCheck", {"To": US, "Code": code})
    assert approved.json()["status"] == "approved"

    listed = (await v2.get("/Attempts")).json()
    attempts = listed["attempts"]
    assert [a["channel_data"]["to"] for a in attempts] == [US2, ES, US]  # newest first
    one = attempts[2]
    assert set(one) == {
        "sid",
        "account_sid",
        "service_sid",
        "verification_sid",
        "date_created",
        "date_updated",
        "conversion_status",
        "channel",
        "price",
        "channel_data",
        "url",
    }
    assert re.fullmatch(r"VL[0-9a-f]{32}", one["sid"])
    assert (one["account_sid"], one["service_sid"]) == (v2.account_sid, shop)
    assert one["verification_sid"] == first["sid"]
    assert (one["conversion_status"], one["channel"]) == ("converted", "sms")
    assert DATE.fullmatch(one["date_created"])
    assert one["url"].endswith("/v2/Attempts/" + one["sid"])
    # The verification names the same send.
    assert first["send_code_attempts"][0]["attempt_sid"] == one["sid"]
    assert (await v2.get("/Attempts/" + one["sid"])).json() == one

    async def tos(**params: str) -> list[str]:
        r = await v2.get("/Attempts", params=params)
        assert r.status_code == 200, r.text
        return [a["channel_data"]["to"] for a in r.json()["attempts"]]

    assert await tos(Status="converted") == [US]
    assert await tos(Status="unconverted") == [US2, ES]
    assert await tos(**{"ChannelData.To": ES}) == [ES]
    assert await tos(Country="es") == [ES]
    assert await tos(Channel="sms", VerifyServiceSid=shop) == [US2, ES, US]
    assert await tos(Channel="email") == []
    assert await tos(VerificationSid=first["sid"]) == [US]
    assert await tos(DateCreatedAfter="2000-01-01T00:00:00Z") == [US2, ES, US]
    assert await tos(DateCreatedBefore="2000-01-01T00:00:00Z") == []
    # Pages keep the filters.
    page = (await v2.get("/Attempts", params={"Status": "unconverted", "PageSize": "1"})).json()
    assert [a["channel_data"]["to"] for a in page["attempts"]] == [US2]
    assert page["meta"]["key"] == "attempts"
    following = page["meta"]["next_page_url"]
    assert parse_qs(urlsplit(following).query) == {
        "Status": ["unconverted"],
        "PageSize": ["1"],
        "Page": ["1"],
    }
    second = (
        await v2.api.client.get(
            urlsplit(following).path, params=urlsplit(following).query, headers=v2.basic
        )
    ).json()
    assert [a["channel_data"]["to"] for a in second["attempts"]] == [ES]
    assert second["meta"]["next_page_url"] is None

    summary = (await v2.get("/Attempts/Summary")).json()
    assert summary == {
        "total_attempts": 3,
        "total_converted": 1,
        "total_unconverted": 2,
        "conversion_rate_percentage": "33.3333333",
        "url": summary["url"],
    }
    assert summary["url"].endswith("/v2/Attempts/Summary")
    by_prefix = (await v2.get("/Attempts/Summary", params={"DestinationPrefix": "+1415"})).json()
    assert (by_prefix["total_attempts"], by_prefix["conversion_rate_percentage"]) == (2, "50")

    for bad in ({"Status": "maybe"}, {"Channel": "pigeon"}, {"DateCreatedAfter": "yesterday"}):
        twilio_error(await v2.get("/Attempts", params=bad), 60200, 400)
    twilio_error(await v2.get("/Attempts/VL" + "0" * 32), 20404, 404)


async def test_an_account_sees_only_its_own_services_attempts(v2: V2) -> None:
    shop = await v2.service()
    mine = await _sent(v2, shop, US)
    sid, token, _, _ = await v2.api.domain.tenants.create_twilio_credentials(
        v2.api.domain.settings.default_policy, account="other"
    )
    other = basic(sid, token)
    theirs = (await v2.get("/Attempts", headers=other)).json()
    assert theirs["attempts"] == []
    attempt = mine["send_code_attempts"][0]["attempt_sid"]
    twilio_error(await v2.get("/Attempts/" + attempt, headers=other), 20404, 404)
    scoped = await v2.get("/Attempts", params={"VerifyServiceSid": shop}, headers=other)
    assert scoped.json()["attempts"] == []
    assert (await v2.get("/Attempts/Summary", headers=other)).json()["total_attempts"] == 0
    twilio_error(await v2.api.client.get("/v2/Attempts"), 20003, 401)


async def test_the_native_attempts_log(v2: V2) -> None:
    api = v2.api
    await api.send(US)
    await api.send(ES)
    await api.check(await api.code(US), to=US)
    shop = await v2.service()
    await _sent(v2, shop, US2)  # another tenant's: not this key's

    listed = await api.get("/api/attempts")
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert [a["to"] for a in body] == [mask(ES), mask(US)]
    assert US not in listed.text
    assert set(body[1]) == {
        "id",
        "verification_id",
        "to",
        "channel",
        "status",
        "converted",
        "created_at",
        "updated_at",
    }
    assert body[1]["converted"] is True
    assert body[0]["converted"] is False
    assert "Link" not in listed.headers
    paged = await api.get("/api/attempts", params={"limit": "1", "status": "unconverted"})
    assert [a["to"] for a in paged.json()] == [mask(ES)]
    assert "Link" not in paged.headers
    first = await api.get("/api/attempts", params={"limit": "1"})
    link = first.headers["Link"]
    assert "offset=1" in link
    assert 'rel="next"' in link
    assert [a["to"] for a in (await api.get("/api/attempts", params={"country": "US"})).json()] == [
        mask(US)
    ]
    summary = (await api.get("/api/attempts/summary")).json()
    assert summary == {
        "total_attempts": 2,
        "total_converted": 1,
        "total_unconverted": 1,
        "conversion_rate": 50.0,
    }
    assert (await api.get("/api/attempts", params={"status": "maybe"})).status_code == 400
    for bad in ("0.5", "2026-12-01T09:00:00", "tomorrow"):
        refused = await api.get("/api/attempts", params={"created_after": bad})
        assert (refused.status_code, refused.json()["error"]["code"]) == (400, "invalid_parameter")
    later = await api.get("/api/attempts", params={"created_after": "2999-01-01T00:00:00+00:00"})
    assert later.json() == []
    assert (await api.get("/api/attempts", params={"limit": "0"})).status_code == 400
    assert (await api.client.get("/api/attempts")).status_code == 401
