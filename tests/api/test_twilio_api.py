"""The Twilio Verify v2 API through plain HTTP: form bodies in, Twilio's JSON and errors out."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from clave.bootstrap import Settings
from tests.api.conftest import Api, open_api, settings_for
from tests.support import FakeClock

DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
TO = "+14155552671"


@dataclass
class V2:
    api: Api
    account_sid: str
    basic: dict[str, str]
    key_basic: dict[str, str]

    async def post(self, path: str, data: dict[str, str], **kw: Any) -> httpx.Response:
        return await self.api.client.post(
            "/v2" + path, data=data, headers=kw.pop("headers", self.basic), **kw
        )

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.api.client.get("/v2" + path, headers=kw.pop("headers", self.basic), **kw)

    async def service(self, **params: str) -> str:
        r = await self.post("/Services", {"FriendlyName": "Acme", **params})
        assert r.status_code == 201, r.text
        return str(r.json()["sid"])


def basic(user: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


async def open_v2(settings: Settings, clock: Callable[[], float] = time.time) -> AsyncIterator[V2]:
    """The app on `settings`, with a Twilio-compatible account's credentials."""
    async for api in open_api(settings, clock):
        sid, token, key, secret = await api.domain.tenants.create_twilio_credentials(
            api.domain.settings.default_policy
        )
        yield V2(api, sid, basic(sid, token), basic(key, secret))


@pytest.fixture
async def v2(tmp_path: Path) -> AsyncIterator[V2]:
    async for found in open_v2(settings_for(tmp_path, CLAVE_MAX_CHECKS="3", CLAVE_MAX_SENDS="2")):
        yield found


def twilio_error(r: httpx.Response, code: int, status: int) -> dict[str, Any]:
    body: dict[str, Any] = r.json()
    assert r.status_code == status, r.text
    assert set(body) == {"code", "message", "more_info", "status"}
    assert (body["code"], body["status"]) == (code, status)
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    return body


async def test_service_crud_with_twilio_shapes(v2: V2) -> None:
    created = await v2.post(
        "/Services", {"FriendlyName": "My App", "CodeLength": "8", "CustomCodeEnabled": "true"}
    )
    assert created.status_code == 201
    service = created.json()
    assert re.fullmatch(r"VA[0-9a-f]{32}", service["sid"])
    assert service["account_sid"] == v2.account_sid
    assert (service["friendly_name"], service["code_length"]) == ("My App", 8)
    assert service["custom_code_enabled"] is True
    assert service["psd2_enabled"] is False
    assert DATE.fullmatch(service["date_created"])
    assert service["url"].endswith(f"/v2/Services/{service['sid']}")
    fetched = await v2.get(f"/Services/{service['sid']}")
    assert fetched.json() == service
    updated = await v2.post(f"/Services/{service['sid']}", {"Psd2Enabled": "true"})
    assert updated.json()["psd2_enabled"] is True
    assert updated.json()["code_length"] == 8  # unchanged parameters keep their values
    deleted = await v2.api.client.delete(f"/v2/Services/{service['sid']}", headers=v2.basic)
    assert deleted.status_code == 204
    twilio_error(await v2.get(f"/Services/{service['sid']}"), 20404, 404)


async def test_services_list_pages_like_twilio(v2: V2) -> None:
    sids = {await v2.service() for _ in range(3)}
    first = (await v2.get("/Services", params={"PageSize": "2"})).json()
    assert first["meta"]["key"] == "services"
    assert first["meta"]["page_size"] == 2
    assert len(first["services"]) == 2
    assert first["meta"]["previous_page_url"] is None
    seen = {s["sid"] for s in first["services"]}
    url = first["meta"]["next_page_url"]
    while url:
        page = (await v2.api.client.get(url, headers=v2.basic)).json()
        seen |= {s["sid"] for s in page["services"]}
        url = page["meta"]["next_page_url"]
    assert sids <= seen
    assert v2.account_sid not in seen  # the account is not a service


async def test_send_check_fetch_and_cancel(v2: V2) -> None:
    sid = await v2.service()
    r = await v2.post(f"/Services/{sid}/Verifications", {"To": TO, "Channel": "sms"})
    assert r.status_code == 201, r.text
    sent = r.json()
    assert re.fullmatch(r"VE[0-9a-f]{32}", sent["sid"])
    assert (sent["service_sid"], sent["account_sid"]) == (sid, v2.account_sid)
    assert (sent["to"], sent["channel"], sent["status"], sent["valid"]) == (
        TO,
        "sms",
        "pending",
        False,
    )
    assert sent["send_code_attempts"][0]["channel"] == "sms"
    assert DATE.fullmatch(sent["date_created"])
    code = await v2.api.code(TO)
    wrong = "0" * len(code) if code != "0" * len(code) else "1" * len(code)
    checked = await v2.post(f"/Services/{sid}/VerificationCheck", {"To": TO, "Code": wrong})
    assert (checked.status_code, checked.json()["status"], checked.json()["valid"]) == (
        200,
        "pending",
        False,
    )
    # The path takes the To value in place of the sid.
    by_to = await v2.get(f"/Services/{sid}/Verifications/{TO}")
    assert by_to.json()["sid"] == sent["sid"]
    ok = await v2.post(
        f"/Services/{sid}/VerificationCheck", {"VerificationSid": sent["sid"], "Code": code}
    )
    assert (ok.json()["status"], ok.json()["valid"]) == ("approved", True)
    # Approved: gone, as Twilio deletes it then, for a fetch, an update and a new check.
    twilio_error(await v2.get(f"/Services/{sid}/Verifications/{sent['sid']}"), 20404, 404)
    approve_again = await v2.post(
        f"/Services/{sid}/Verifications/{sent['sid']}", {"Status": "approved"}
    )
    twilio_error(approve_again, 20404, 404)
    again = await v2.post(f"/Services/{sid}/VerificationCheck", {"To": TO, "Code": code})
    twilio_error(again, 20404, 404)
    other = "+14155552672"
    pending = (
        await v2.post(f"/Services/{sid}/Verifications", {"To": other, "Channel": "sms"})
    ).json()
    canceled = await v2.post(f"/Services/{sid}/Verifications/{other}", {"Status": "canceled"})
    assert canceled.json()["status"] == "canceled"
    twilio_error(await v2.get(f"/Services/{sid}/Verifications/{pending['sid']}"), 20404, 404)


async def test_api_key_credentials_work_and_bad_ones_get_20003(v2: V2) -> None:
    assert (await v2.get("/Services", headers=v2.key_basic)).status_code == 200
    for headers in (
        {},
        basic(v2.account_sid, "wrong"),
        {"Authorization": f"Bearer {v2.api.key}"},  # a native key is not a Twilio credential
        {"Authorization": "Basic !!!"},
    ):
        body = twilio_error(await v2.get("/Services", headers=headers), 20003, 401)
        assert body["message"] == "Authenticate"
    # The native key of a tenant cannot pose as the account either, nor the other way round.
    twilio_error(await v2.get("/Services", headers=basic("default", v2.api.key)), 20003, 401)
    user, _, token = base64.b64decode(v2.basic["Authorization"][6:]).decode().partition(":")
    native = await v2.api.client.post(
        "/api/verifications",
        json={"to": TO, "channel": "sms"},
        headers={"Authorization": f"Bearer {user}:{token}"},
    )
    assert native.status_code == 401


async def test_invalid_parameters_are_60200(v2: V2) -> None:
    sid = await v2.service()
    cases = [
        ("/Services", {"FriendlyName": "x" * 31}),
        ("/Services", {"FriendlyName": "A", "CodeLength": "11"}),
        ("/Services", {"FriendlyName": "A", "Psd2Enabled": "maybe"}),
        (f"/Services/{sid}/Verifications", {"To": TO, "Channel": "pigeon"}),
        (f"/Services/{sid}/Verifications", {"To": "not a number", "Channel": "sms"}),
        (f"/Services/{sid}/Verifications", {"Channel": "sms"}),
        (f"/Services/{sid}/Verifications", {"To": TO, "Channel": "sms", "CustomCode": "1234"}),
        (f"/Services/{sid}/VerificationCheck", {"To": TO, "VerificationSid": "VE1", "Code": "1"}),
        (f"/Services/{sid}/VerificationCheck", {"To": TO, "Code": "12ab"}),
        (f"/Services/{sid}/Verifications/{TO}", {"Status": "done"}),
    ]
    for path, data in cases:
        twilio_error(await v2.post(path, data), 60200, 400)
    assert "Channel" in (await v2.post(cases[3][0], cases[3][1])).json()["message"]
    # Neither To nor VerificationSid: Twilio's own code for it.
    no_target = await v2.post(f"/Services/{sid}/VerificationCheck", {"Code": "1234"})
    twilio_error(no_target, 60221, 400)


async def test_unknown_service_and_verification_are_20404(v2: V2) -> None:
    missing = "VA" + "0" * 32
    twilio_error(await v2.get(f"/Services/{missing}"), 20404, 404)
    sid = await v2.service()
    twilio_error(await v2.get(f"/Services/{sid}/Verifications/VE{'0' * 32}"), 20404, 404)
    twilio_error(await v2.get(f"/Services/{sid}/Verifications/{TO}"), 20404, 404)
    # Without credentials, a real sid and a missing one answer alike: authenticate first.
    for probe in (sid, missing):
        twilio_error(await v2.get(f"/Services/{probe}", headers={}), 20003, 401)


async def test_max_check_attempts_is_60202_and_max_sends_60203(v2: V2) -> None:
    sid = await v2.service()  # the deployment's policy here: 3 checks, 2 sends
    await v2.post(f"/Services/{sid}/Verifications", {"To": TO, "Channel": "sms"})
    code = await v2.api.code(TO)
    wrong = "0" * len(code) if code != "0" * len(code) else "1" * len(code)
    statuses = []
    for _ in range(3):
        r = await v2.post(f"/Services/{sid}/VerificationCheck", {"To": TO, "Code": wrong})
        statuses.append(r.json().get("status"))
    assert statuses == ["pending", "pending", "max_attempts_reached"]
    other = "+14155552673"
    for _ in range(2):
        sent = await v2.post(f"/Services/{sid}/Verifications", {"To": other, "Channel": "sms"})
        assert sent.status_code == 201
    limited = await v2.post(f"/Services/{sid}/Verifications", {"To": other, "Channel": "sms"})
    twilio_error(limited, 60203, 429)
    assert int(limited.headers["retry-after"]) > 0


async def test_max_checks_on_a_locked_verification_is_60202(v2: V2) -> None:
    sid = await v2.service()
    sent = (await v2.post(f"/Services/{sid}/Verifications", {"To": TO, "Channel": "sms"})).json()
    code = await v2.api.code(TO)
    wrong = "0" * len(code) if code != "0" * len(code) else "1" * len(code)
    # Three wrong checks lock it; the right code after that is refused with 60202.
    for _ in range(3):
        await v2.post(
            f"/Services/{sid}/VerificationCheck", {"VerificationSid": sent["sid"], "Code": wrong}
        )
    locked = await v2.post(
        f"/Services/{sid}/VerificationCheck", {"VerificationSid": sent["sid"], "Code": code}
    )
    twilio_error(locked, 60202, 429)


async def test_custom_code_is_sent_and_checked(v2: V2) -> None:
    sid = await v2.service(CustomCodeEnabled="true")
    r = await v2.post(
        f"/Services/{sid}/Verifications", {"To": TO, "Channel": "sms", "CustomCode": "867530"}
    )
    assert r.status_code == 201, r.text
    assert await v2.api.code(TO) == "867530"
    ok = await v2.post(f"/Services/{sid}/VerificationCheck", {"To": TO, "Code": "867530"})
    assert ok.json()["status"] == "approved"


async def test_psd2_binds_amount_and_payee_to_the_code(v2: V2) -> None:
    sid = await v2.service(Psd2Enabled="true")
    no_payment = await v2.post(f"/Services/{sid}/Verifications", {"To": TO, "Channel": "sms"})
    twilio_error(no_payment, 60200, 400)
    sent = await v2.post(
        f"/Services/{sid}/Verifications",
        {"To": TO, "Channel": "sms", "Amount": "€39.99", "Payee": "Acme Books"},
    )
    assert (sent.json()["amount"], sent.json()["payee"]) == ("€39.99", "Acme Books")
    [message] = await v2.api.inbox(TO)
    assert "€39.99" in message["text"]
    assert "Acme Books" in message["text"]
    code = await v2.api.code(TO)
    other_payee = await v2.post(
        f"/Services/{sid}/VerificationCheck",
        {"To": TO, "Code": code, "Amount": "€39.99", "Payee": "Mallory"},
    )
    assert other_payee.json()["status"] == "pending"  # right code, wrong payee: no approval
    right = await v2.post(
        f"/Services/{sid}/VerificationCheck",
        {"To": TO, "Code": code, "Amount": "€39.99", "Payee": "Acme Books"},
    )
    assert (right.json()["status"], right.json()["amount"]) == ("approved", "€39.99")
    assert right.json()["payee"] == "Acme Books"
    # A separator smuggled into a part is refused, not hashed into another (amount, payee).
    smuggled = await v2.post(
        f"/Services/{sid}/Verifications",
        {"To": "+14155552679", "Channel": "sms", "Amount": "1\x00Acme", "Payee": "x"},
    )
    twilio_error(smuggled, 60200, 400)


async def test_geo_permissions_60605_fraud_guard_60410_and_landlines_60205(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path, CLAVE_COUNTRIES="US,GB", CLAVE_BLOCKED_PREFIXES="+1415555")
    async for api in open_api(settings):
        sid_, token, _, _ = await api.domain.tenants.create_twilio_credentials(
            api.domain.settings.default_policy
        )
        v2 = V2(api, sid_, basic(sid_, token), {})
        sid = await v2.service(SkipSmsToLandlines="true")
        spain = await v2.post(
            f"/Services/{sid}/Verifications", {"To": "+34612345678", "Channel": "sms"}
        )
        twilio_error(spain, 60605, 403)
        # A UK fixed line (020 numbers are London landlines).
        landline = await v2.post(
            f"/Services/{sid}/Verifications", {"To": "+442071838750", "Channel": "sms"}
        )
        twilio_error(landline, 60205, 403)
        blocked = await v2.post(f"/Services/{sid}/Verifications", {"To": TO, "Channel": "sms"})
        twilio_error(blocked, 60410, 403)
        # Not on the landline-skipping service's path: a mobile in an allowed country is sent.
        mobile = await v2.post(
            f"/Services/{sid}/Verifications", {"To": "+447400123456", "Channel": "sms"}
        )
        assert mobile.status_code == 201, mobile.text


async def test_native_api_keeps_working_beside_v2(v2: V2) -> None:
    await v2.service()
    r = await v2.api.send(TO)
    assert r.status_code == 201
    code = await v2.api.code(TO)
    assert (await v2.api.check(code, id=r.json()["id"])).json()["status"] == "approved"


async def test_unknown_paths_and_methods_under_v2_answer_in_twilios_shape(v2: V2) -> None:
    body = twilio_error(await v2.get("/Nope"), 20404, 404)
    assert "/v2/Nope" in body["message"]
    twilio_error(await v2.api.client.put("/v2/Services", headers=v2.basic), 20004, 405)
    # Elsewhere, the native shape as before.
    native = await v2.api.client.get("/api/nope")
    assert native.json()["error"]["code"] == "not_found"


async def test_service_objects_carry_every_key_twilio_returns(v2: V2) -> None:
    """Clients index these objects (`service.totp["issuer"]`): every key is there, null when
    unset, and all seven links; a linked resource clave does not serve is Twilio's 20404."""
    service = (await v2.post("/Services", {"FriendlyName": "Keys", "Totp.Skew": "0"})).json()
    assert service["totp"] == {"issuer": "Keys", "time_step": 30, "code_length": 6, "skew": 0}
    assert service["push"] == {
        "include_date": None,
        "apn_credential_sid": None,
        "fcm_credential_sid": None,
    }
    assert service["whatsapp"] == {"msg_service_sid": None, "from": None}
    assert set(service["passkeys"]) == {
        "relying_party",
        "authenticator_attachment",
        "discoverable_credentials",
        "user_verification",
    }
    links = service["links"]
    assert set(links) == {
        "verification_checks",
        "verifications",
        "rate_limits",
        "messaging_configurations",
        "entities",
        "webhooks",
        "access_tokens",
    }
    assert all(link.startswith(service["url"] + "/") for link in links.values())
    unserved = await v2.api.client.get(links["webhooks"], headers=v2.basic)
    twilio_error(unserved, 20404, 404)


async def test_a_401_challenges_for_basic_credentials(v2: V2) -> None:
    """Java's Authenticator and .NET's NetworkCredential send credentials only after a Basic
    challenge."""
    for headers in ({}, basic(v2.account_sid, "wrong"), {"Authorization": "Bearer x"}):
        r = await v2.get("/Services", headers=headers)
        twilio_error(r, 20003, 401)
        assert r.headers["www-authenticate"] == 'Basic realm="Twilio API"'
    # The native API keeps its Bearer challenge.
    native = await v2.api.client.get("/api/verifications/VE" + "0" * 32)
    assert native.headers["www-authenticate"].startswith("Bearer")


async def test_a_verification_reads_as_twilio_writes_it(v2: V2) -> None:
    sid = await v2.service()
    first = (await v2.post(f"/Services/{sid}/Verifications", {"To": TO, "Channel": "sms"})).json()
    assert first["lookup"] == {}  # Lookup off, as Twilio shows it
    resent = (await v2.post(f"/Services/{sid}/Verifications", {"To": TO, "Channel": "sms"})).json()
    other = (
        await v2.post(f"/Services/{sid}/Verifications", {"To": "+14155552673", "Channel": "sms"})
    ).json()
    attempts = [a["attempt_sid"] for a in resent["send_code_attempts"]]
    attempts.append(other["send_code_attempts"][0]["attempt_sid"])
    assert all(re.fullmatch(r"VL[0-9a-f]{32}", a) for a in attempts), attempts
    assert len(set(attempts)) == 3
    # Random to the caller (not a counter that tells the send volume), the same at each read.
    assert not any(a.startswith("VL0000") for a in attempts)
    assert attempts[0] == first["send_code_attempts"][0]["attempt_sid"]
    fetched = (await v2.get(f"/Services/{sid}/Verifications/{first['sid']}")).json()
    assert [a["attempt_sid"] for a in fetched["send_code_attempts"]] == attempts[:2]


async def test_a_channel_the_service_does_not_allow_is_60223(tmp_path: Path) -> None:
    async for api in open_api(settings_for(tmp_path, CLAVE_CHANNELS="sms")):
        sid_, token, _, _ = await api.domain.tenants.create_twilio_credentials(
            api.domain.settings.default_policy
        )
        v2 = V2(api, sid_, basic(sid_, token), basic(sid_, token))
        sid = await v2.service()
        r = await v2.post(f"/Services/{sid}/Verifications", {"To": TO, "Channel": "call"})
        twilio_error(r, 60223, 400)


async def test_a_lock_is_60202_by_sid_and_by_to_until_it_expires(tmp_path: Path) -> None:
    clock = FakeClock(time.time())
    settings = settings_for(tmp_path, CLAVE_MAX_CHECKS="2", CLAVE_CODE_TTL="600")
    async for api in open_api(settings, clock=clock):
        sid_, token, _, _ = await api.domain.tenants.create_twilio_credentials(
            api.domain.settings.default_policy
        )
        v2 = V2(api, sid_, basic(sid_, token), basic(sid_, token))
        sid = await v2.service()
        sent = (
            await v2.post(f"/Services/{sid}/Verifications", {"To": TO, "Channel": "sms"})
        ).json()
        code = await v2.api.code(TO)
        wrong = "0" * len(code) if code != "0" * len(code) else "1" * len(code)
        for _ in range(2):
            await v2.post(f"/Services/{sid}/VerificationCheck", {"To": TO, "Code": wrong})
        for target in ({"To": TO}, {"VerificationSid": sent["sid"]}):
            locked = await v2.post(f"/Services/{sid}/VerificationCheck", {**target, "Code": code})
            twilio_error(locked, 60202, 429)
        # Another destination never had one: 20404, not 60202.
        other = await v2.post(
            f"/Services/{sid}/VerificationCheck", {"To": "+14155552672", "Code": code}
        )
        twilio_error(other, 20404, 404)
        clock.advance(601)  # expired: gone, as on Twilio
        for target in ({"To": TO}, {"VerificationSid": sent["sid"]}):
            gone = await v2.post(f"/Services/{sid}/VerificationCheck", {**target, "Code": code})
            twilio_error(gone, 20404, 404)


def every_url(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [u for v in value.values() for u in every_url(v)]
    if isinstance(value, list):
        return [u for v in value for u in every_url(v)]
    return (
        [value] if isinstance(value, str) and "://" in value and "twilio.com" not in value else []
    )


async def v2_urls(v2: V2, **headers: str) -> list[str]:
    h = {**v2.basic, **headers}
    sid = (await v2.post("/Services", {"FriendlyName": "Urls"}, headers=h)).json()["sid"]
    await v2.post("/Services", {"FriendlyName": "More"}, headers=h)
    sent = await v2.post(f"/Services/{sid}/Verifications", {"To": TO, "Channel": "sms"}, headers=h)
    listed = await v2.get("/Services", params={"PageSize": "1", "Page": "1"}, headers=h)
    urls = every_url([sent.json(), listed.json()])
    assert len(urls) > 10
    return urls


@pytest.mark.parametrize(
    ("env", "headers", "origin"),
    [
        ({"CLAVE_PUBLIC_URL": "https://verify.example.com"}, {}, "https://verify.example.com"),
        ({"CLAVE_PROXY_HOPS": "1"}, {"X-Forwarded-Proto": "https"}, "https://clave.test"),
        # No trusted proxy: the header is anyone's, and not believed.
        ({}, {"X-Forwarded-Proto": "https"}, "http://clave.test"),
    ],
)
async def test_urls_carry_the_public_origin(
    tmp_path: Path, env: dict[str, str], headers: dict[str, str], origin: str
) -> None:
    """Behind a TLS-terminating load balancer, the urls, links and paging URLs an SDK follows
    (with Basic credentials) are https:// at the public host."""
    async for api in open_api(settings_for(tmp_path, **env)):
        sid_, token, _, _ = await api.domain.tenants.create_twilio_credentials(
            api.domain.settings.default_policy
        )
        v2 = V2(api, sid_, basic(sid_, token), basic(sid_, token))
        urls = await v2_urls(v2, **headers)
        assert all(u.startswith(origin + "/v2/") for u in urls), urls


async def test_date_updated_moves_when_the_service_changes(tmp_path: Path) -> None:
    clock = FakeClock(time.time())
    async for api in open_api(settings_for(tmp_path), clock=clock):
        sid_, token, _, _ = await api.domain.tenants.create_twilio_credentials(
            api.domain.settings.default_policy
        )
        v2 = V2(api, sid_, basic(sid_, token), basic(sid_, token))
        created = (await v2.post("/Services", {"FriendlyName": "Dated"})).json()
        assert created["date_updated"] == created["date_created"]
        clock.advance(3600)
        updated = (await v2.post(f"/Services/{created['sid']}", {"CodeLength": "7"})).json()
        assert updated["date_created"] == created["date_created"]
        assert updated["date_updated"] > created["date_updated"]
        fetched = (await v2.get(f"/Services/{created['sid']}")).json()
        assert fetched["date_updated"] == updated["date_updated"]


async def test_do_not_share_warning_follows_the_service_option(v2: V2) -> None:
    """Twilio's default is off: a service created without the option sends no warning; on,
    it does; an update switches it."""
    plain = (await v2.post("/Services", {"FriendlyName": "Plain"})).json()
    warned = (
        await v2.post("/Services", {"FriendlyName": "Warned", "DoNotShareWarningEnabled": "true"})
    ).json()
    assert plain["do_not_share_warning_enabled"] is False
    assert warned["do_not_share_warning_enabled"] is True
    for service, to in ((plain, "+14155552681"), (warned, "+14155552682")):
        sent = await v2.post(
            f"/Services/{service['sid']}/Verifications", {"To": to, "Channel": "sms"}
        )
        assert sent.status_code == 201
    assert "Do not share" not in (await v2.api.inbox("+14155552681"))[0]["text"]
    assert "Do not share" in (await v2.api.inbox("+14155552682"))[0]["text"]
    on = await v2.post(f"/Services/{plain['sid']}", {"DoNotShareWarningEnabled": "true"})
    assert on.json()["do_not_share_warning_enabled"] is True
    await v2.post(
        f"/Services/{plain['sid']}/Verifications", {"To": "+14155552683", "Channel": "sms"}
    )
    assert "Do not share" in (await v2.api.inbox("+14155552683"))[0]["text"]
    # The native API's tenants keep the warning, as they always had it.
    await v2.api.send("+14155552684")
    assert "Do not share" in (await v2.api.inbox("+14155552684"))[0]["text"]


async def test_the_safe_list_lets_an_accounts_numbers_past_the_guard(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, CLAVE_COUNTRIES="US,GB", CLAVE_BLOCKED_PREFIXES="+1415555")
    async for api in open_api(settings):
        default = api.domain.settings.default_policy
        sid_, token, _, _ = await api.domain.tenants.create_twilio_credentials(default)
        other_sid, other_token, _, _ = await api.domain.tenants.create_twilio_credentials(
            default, account="other"
        )
        v2 = V2(api, sid_, basic(sid_, token), {})
        other = V2(api, other_sid, basic(other_sid, other_token), {})
        sid = await v2.service()
        blocked = await v2.post(f"/Services/{sid}/Verifications", {"To": TO, "Channel": "sms"})
        twilio_error(blocked, 60410, 403)
        added = await v2.post("/SafeList/Numbers", {"PhoneNumber": TO})
        assert added.status_code == 201, added.text
        entry = added.json()
        assert re.fullmatch(r"GN[0-9a-f]{32}", entry["sid"])
        assert entry["phone_number"] == TO
        assert entry["url"].endswith("/v2/SafeList/Numbers/%2B14155552671")
        assert (await v2.get("/SafeList/Numbers/" + TO)).json() == entry
        # Listed: neither the blocked prefix nor geo permissions stop it.
        sent = await v2.post(f"/Services/{sid}/Verifications", {"To": TO, "Channel": "sms"})
        assert sent.status_code == 201, sent.text
        spain = "+34612345678"
        twilio_error(
            await v2.post(f"/Services/{sid}/Verifications", {"To": spain, "Channel": "sms"}),
            60605,
            403,
        )
        await v2.post("/SafeList/Numbers", {"PhoneNumber": spain})
        passed = await v2.post(f"/Services/{sid}/Verifications", {"To": spain, "Channel": "sms"})
        assert passed.status_code == 201, passed.text
        # Another account's list is its own: it does not cover this account's services, nor
        # does this one's cover the other's.
        twilio_error(await other.get("/SafeList/Numbers/" + TO), 20404, 404)
        other_service = await other.service()
        twilio_error(
            await other.post(
                f"/Services/{other_service}/Verifications", {"To": TO, "Channel": "sms"}
            ),
            60410,
            403,
        )
        # Removed: blocked again.
        removed = await v2.api.client.delete("/v2/SafeList/Numbers/" + TO, headers=v2.basic)
        assert removed.status_code == 204
        twilio_error(await v2.get("/SafeList/Numbers/" + TO), 20404, 404)
        again = await v2.post(
            f"/Services/{sid}/Verifications", {"To": "+14155552699", "Channel": "sms"}
        )
        twilio_error(again, 60410, 403)
        twilio_error(await v2.post("/SafeList/Numbers", {"PhoneNumber": "nope"}), 60200, 400)


async def test_a_configuration_change_keeps_what_another_worker_wrote(v2: V2) -> None:
    """This worker caches services for a few seconds: a change starts from the policy as
    stored, so another worker's configuration written meanwhile is kept."""
    sid = await v2.service()
    base = f"/Services/{sid}/MessagingConfigurations"
    made = await v2.post(base, {"Country": "GB", "MessagingServiceSid": "MG" + "ab" * 16})
    assert made.status_code == 201, made.text
    assert (await v2.get(f"/Services/{sid}")).status_code == 200  # cached here now
    store = v2.api.domain.store
    stored = await store.get_tenant(sid)
    assert stored is not None
    other = (*stored.policy.messaging, ("FR", "MG" + "cd" * 16, 1.0, 1.0))
    await store.put_tenant(replace(stored, policy=replace(stored.policy, messaging=other)))
    added = await v2.post(base, {"Country": "US", "MessagingServiceSid": "MG" + "ef" * 16})
    assert added.status_code == 201, added.text
    again = await v2.post(base, {"Country": "FR", "MessagingServiceSid": "MG" + "ef" * 16})
    assert again.status_code == 400  # FR exists, though this worker's copy does not know it
    renamed = await v2.post(f"/Services/{sid}", {"FriendlyName": "Renamed"})
    assert renamed.status_code == 200
    final = await store.get_tenant(sid)
    assert final is not None
    assert sorted(c for c, _, _, _ in final.policy.messaging) == ["FR", "GB", "US"]
    assert final.policy.friendly_name == "Renamed"
