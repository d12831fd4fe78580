"""Twilio's Service Rate Limits and Buckets through /v2: the resources, and a verification's
`RateLimits` counted against them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from clave.verify.bootstrap import ensure_default_tenant
from clave.verify.service_rate_limits import Bucket, ServiceRateLimit
from tests.api.conftest import settings_for
from tests.api.test_twilio_api import DATE, V2, open_v2, twilio_error
from tests.support import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def v2(tmp_path: Path, clock: FakeClock) -> AsyncIterator[V2]:
    async for found in open_v2(settings_for(tmp_path), clock):
        yield found


async def test_rate_limits_and_buckets_crud_with_twilios_shapes(v2: V2) -> None:
    sid = await v2.service()
    base = f"/Services/{sid}/RateLimits"
    made = await v2.post(base, {"UniqueName": "end_user_ip", "Description": "per IP"})
    assert made.status_code == 201, made.text
    rule = made.json()
    assert set(rule) == {
        "sid",
        "service_sid",
        "account_sid",
        "unique_name",
        "description",
        "date_created",
        "date_updated",
        "url",
        "links",
    }
    assert rule["sid"].startswith("RK")
    assert len(rule["sid"]) == 34
    assert (rule["service_sid"], rule["account_sid"]) == (sid, v2.account_sid)
    assert (rule["unique_name"], rule["description"]) == ("end_user_ip", "per IP")
    assert DATE.fullmatch(rule["date_created"])
    assert rule["url"].endswith(f"/v2{base}/{rule['sid']}")
    assert rule["links"] == {"buckets": rule["url"] + "/Buckets"}
    # Names are unique per service; a bad one is 60200.
    twilio_error(await v2.post(base, {"UniqueName": "end_user_ip"}), 60200, 400)
    twilio_error(await v2.post(base, {"UniqueName": "no spaces"}), 60200, 400)
    twilio_error(await v2.post(base, {"Description": "no name"}), 60200, 400)
    await v2.post(base, {"UniqueName": "session"})
    page = (await v2.get(base, params={"PageSize": "1"})).json()
    assert [r["unique_name"] for r in page["rate_limits"]] == ["end_user_ip"]
    assert page["meta"]["key"] == "rate_limits"
    assert page["meta"]["next_page_url"].endswith("PageSize=1&Page=1")
    second = (await v2.get(base, params={"PageSize": "1", "Page": "1"})).json()
    assert [r["unique_name"] for r in second["rate_limits"]] == ["session"]
    fetched = await v2.get(f"{base}/{rule['sid']}")
    assert fetched.json() == rule
    changed = await v2.post(f"{base}/{rule['sid']}", {"Description": "the end user's IP"})
    assert changed.json()["description"] == "the end user's IP"

    buckets = f"{base}/{rule['sid']}/Buckets"
    bucket = await v2.post(buckets, {"Max": "2", "Interval": "60"})
    assert bucket.status_code == 201, bucket.text
    b = bucket.json()
    assert b["sid"].startswith("BL")
    assert len(b["sid"]) == 34
    assert (b["rate_limit_sid"], b["service_sid"], b["account_sid"]) == (
        rule["sid"],
        sid,
        v2.account_sid,
    )
    assert (b["max"], b["interval"]) == (2, 60)
    assert b["url"].endswith(f"/v2{buckets}/{b['sid']}")
    twilio_error(await v2.post(buckets, {"Max": "0", "Interval": "60"}), 60200, 400)
    twilio_error(await v2.post(buckets, {"Max": "2"}), 60200, 400)
    listed = (await v2.get(buckets)).json()
    assert [x["sid"] for x in listed["buckets"]] == [b["sid"]]
    assert listed["meta"]["key"] == "buckets"
    updated = await v2.post(f"{buckets}/{b['sid']}", {"Max": "3"})
    assert (updated.json()["max"], updated.json()["interval"]) == (3, 60)
    assert (await v2.get(f"{buckets}/{b['sid']}")).json()["max"] == 3
    # A rate limit holds at most 10 buckets (Twilio's 60210).
    for _ in range(9):
        assert (await v2.post(buckets, {"Max": "5", "Interval": "5"})).status_code == 201
    twilio_error(await v2.post(buckets, {"Max": "5", "Interval": "5"}), 60210, 400)

    deleted = await v2.api.client.delete(f"/v2{buckets}/{b['sid']}", headers=v2.basic)
    assert deleted.status_code == 204
    twilio_error(await v2.get(f"{buckets}/{b['sid']}"), 20404, 404)
    gone = await v2.api.client.delete(f"/v2{base}/{rule['sid']}", headers=v2.basic)
    assert gone.status_code == 204
    twilio_error(await v2.get(f"{base}/{rule['sid']}"), 20404, 404)
    twilio_error(await v2.get(buckets), 20404, 404)
    twilio_error(await v2.get(f"{base}/RK" + "0" * 32), 20404, 404)


async def test_a_send_over_a_bucket_is_60203_with_retry_after(v2: V2, clock: FakeClock) -> None:
    sid = await v2.service()
    base = f"/Services/{sid}/RateLimits"
    rule = (await v2.post(base, {"UniqueName": "user_id"})).json()
    await v2.post(f"{base}/{rule['sid']}/Buckets", {"Max": "2", "Interval": "60"})

    async def send(to: str, user: object) -> object:
        return await v2.post(
            f"/Services/{sid}/Verifications",
            {"To": to, "Channel": "sms", "RateLimits": json.dumps({"user_id": user})},
        )

    for to in ("+14155550101", "+14155550102"):
        sent = await send(to, "alice")
        assert sent.status_code == 201, sent.text  # type: ignore[attr-defined]
    over = await send("+14155550103", "alice")
    body = twilio_error(over, 60203, 429)  # type: ignore[arg-type]
    assert "user_id" in body["message"]
    # Exact over any 60 s: free again once the first sends' slot (a 24th) has left it.
    wait = int(over.headers["Retry-After"])  # type: ignore[attr-defined]
    assert 1 <= wait <= 60 + 60 / 24 + 1
    # Another value of the key has its own count; a number is a value too.
    assert (await send("+14155550104", "bob")).status_code == 201  # type: ignore[attr-defined]
    assert (await send("+14155550105", 42)).status_code == 201  # type: ignore[attr-defined]
    # A send without RateLimits is not counted against them.
    plain = await v2.post(
        f"/Services/{sid}/Verifications", {"To": "+14155550106", "Channel": "sms"}
    )
    assert plain.status_code == 201
    # A rate limit the service does not have, or a value that is not text, is 60200.
    twilio_error(await send("+14155550107", None), 60200, 400)  # type: ignore[arg-type]
    for raw in ('{"user_id": "\\ud800"}', '{"user_id": 1e999}', '{"\\udc00": "a"}'):
        odd = await v2.post(
            f"/Services/{sid}/Verifications",
            {"To": "+14155550110", "Channel": "sms", "RateLimits": raw},
        )
        twilio_error(odd, 60200, 400)
    typo = await v2.post(
        f"/Services/{sid}/Verifications",
        {"To": "+14155550108", "Channel": "sms", "RateLimits": json.dumps({"userid": "a"})},
    )
    twilio_error(typo, 60200, 400)
    clock.advance(wait - 1)
    twilio_error(await send("+14155550109", "alice"), 60203, 429)  # type: ignore[arg-type]
    # As Retry-After said, alice may send again.
    clock.advance(1)
    assert (await send("+14155550109", "alice")).status_code == 201  # type: ignore[attr-defined]


async def test_concurrent_bucket_creates_are_all_kept(v2: V2) -> None:
    """Bucket creates racing on one rate limit: each is stored (the policy changes atomically)."""
    sid = await v2.service()
    rule = (await v2.post(f"/Services/{sid}/RateLimits", {"UniqueName": "ip"})).json()
    buckets = f"/Services/{sid}/RateLimits/{rule['sid']}/Buckets"
    made = await asyncio.gather(
        *(v2.post(buckets, {"Max": str(n), "Interval": "60"}) for n in range(1, 9))
    )
    assert [r.status_code for r in made] == [201] * 8
    listed = (await v2.get(buckets)).json()["buckets"]
    assert sorted(b["max"] for b in listed) == list(range(1, 9))


async def test_a_restart_keeps_what_the_apis_set_on_the_default_service(v2: V2) -> None:
    """The environment's policy is the default service's at every start (and every admin
    command), but what only the APIs manage stays: rate limits, messaging configurations."""
    tenants, defaults = v2.api.domain.tenants, v2.api.domain.settings.default_policy
    rule = ServiceRateLimit(
        "RK" + "1" * 32, "ip", None, 1.0, 1.0, (Bucket("BL" + "2" * 32, 3, 60, 1.0, 1.0),)
    )
    configured = (("GB", "MG" + "ab" * 16, 1.0, 1.0),)
    await tenants.change_policy(
        "default",
        lambda p: replace(p, rate_limits=(rule,), messaging=configured, code_length=8),
    )
    await ensure_default_tenant(tenants, defaults)
    kept = (await tenants.get_tenant("default")).policy
    assert (kept.rate_limits, kept.messaging) == ((rule,), configured)
    assert kept.code_length == defaults.code_length  # the environment's setting wins
