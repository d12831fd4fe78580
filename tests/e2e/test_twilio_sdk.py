"""An app written against Twilio Verify with the official `twilio` SDK, run unchanged against a
real `clave serve`: only the SDK's HTTP client is pointed at clave (the one-line change)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from tests.e2e.conftest import ClaveProcess, inbox_code, twilio_credentials

pytestmark = pytest.mark.e2e

TO = "+14155552671"


class ClaveHttpClient(TwilioHttpClient):  # type: ignore[misc]  # twilio ships no types
    """The SDK's own HTTP client, sending what it would send to Twilio to clave instead."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        url = re.sub(r"^https://verify\.twilio\.com", self.base_url, url)
        return super().request(method, url, *args, **kwargs)


@pytest.fixture
def server(tmp_path: Path, serve: type[ClaveProcess]) -> ClaveProcess:
    return serve(
        tmp_path, env={"CLAVE_MAX_CHECKS": "3", "CLAVE_MAX_SENDS": "2", "CLAVE_SEND_WINDOW": "600"}
    ).start()


def app_flow(client: Client, server: ClaveProcess) -> None:
    """What an app does with Twilio Verify, written as Twilio's docs show it."""
    service = client.verify.v2.services.create(friendly_name="My App", code_length=6)
    assert service.sid.startswith("VA")
    assert client.verify.v2.services(service.sid).fetch().friendly_name == "My App"
    assert service.sid in [s.sid for s in client.verify.v2.services.list(page_size=1)]

    verification = client.verify.v2.services(service.sid).verifications.create(to=TO, channel="sms")
    assert (verification.status, verification.channel, verification.to) == ("pending", "sms", TO)
    assert verification.valid is False
    assert verification.date_created is not None  # the SDK parsed Twilio's date format

    code = inbox_code(server, TO)
    wrong = "000000" if code != "000000" else "111111"
    check = client.verify.v2.services(service.sid).verification_checks.create(to=TO, code=wrong)
    assert (check.status, check.valid) == ("pending", False)
    check = client.verify.v2.services(service.sid).verification_checks.create(
        verification_sid=verification.sid, code=code
    )
    assert (check.status, check.valid) == ("approved", True)
    # Approved: Twilio deletes it, and so does its API here.
    with pytest.raises(TwilioRestException) as approved:
        client.verify.v2.services(service.sid).verifications(verification.sid).fetch()
    assert (approved.value.status, approved.value.code) == (404, 20404)
    # Every key of a service's objects is there, null when unset.
    assert client.verify.v2.services(service.sid).fetch().totp["issuer"] == "My App"

    other = "+14155552672"
    client.verify.v2.services(service.sid).verifications.create(to=other, channel="sms")
    canceled = client.verify.v2.services(service.sid).verifications(other).update(status="canceled")
    assert canceled.status == "canceled"

    # Limits, as the SDK reports them: max sends (2 here), then max checks (3 here).
    third = "+14155552673"
    for _ in range(2):
        third_sid = (
            client.verify.v2.services(service.sid).verifications.create(to=third, channel="sms").sid
        )
    with pytest.raises(TwilioRestException) as sends:
        client.verify.v2.services(service.sid).verifications.create(to=third, channel="sms")
    assert (sends.value.status, sends.value.code) == (429, 60203)
    code = inbox_code(server, third, count=2)
    wrong = "000000" if code != "000000" else "111111"
    statuses = [
        client.verify.v2.services(service.sid)
        .verification_checks.create(to=third, code=wrong)
        .status
        for _ in range(3)
    ]
    assert statuses == ["pending", "pending", "max_attempts_reached"]
    with pytest.raises(TwilioRestException) as locked:
        client.verify.v2.services(service.sid).verification_checks.create(
            verification_sid=third_sid, code=code
        )
    assert (locked.value.status, locked.value.code) == (429, 60202)
    with pytest.raises(TwilioRestException) as by_to:  # addressed by its To: the same
        client.verify.v2.services(service.sid).verification_checks.create(to=third, code=code)
    assert (by_to.value.status, by_to.value.code) == (429, 60202)

    with pytest.raises(TwilioRestException) as bad:
        client.verify.v2.services(service.sid).verifications.create(to=TO, channel="pigeon")
    assert (bad.value.status, bad.value.code) == (400, 60200)

    client.verify.v2.services(service.sid).update(friendly_name="Renamed")
    assert client.verify.v2.services(service.sid).fetch().friendly_name == "Renamed"
    assert client.verify.v2.services(service.sid).delete() is True
    with pytest.raises(TwilioRestException) as deleted:
        client.verify.v2.services(service.sid).fetch()
    assert (deleted.value.status, deleted.value.code) == (404, 20404)


def test_the_official_sdk_runs_an_app_unchanged_with_the_account_token(
    server: ClaveProcess,
) -> None:
    creds = twilio_credentials(server)
    client = Client(creds["TWILIO_ACCOUNT_SID"], creds["TWILIO_AUTH_TOKEN"])
    client.verify.base_url = server.url  # the one line the README shows
    app_flow(client, server)


def test_the_official_sdk_through_its_http_client(server: ClaveProcess) -> None:
    creds = twilio_credentials(server)
    client = Client(
        creds["TWILIO_ACCOUNT_SID"],
        creds["TWILIO_AUTH_TOKEN"],
        http_client=ClaveHttpClient(server.url),
    )
    app_flow(client, server)


def test_the_official_sdk_with_an_api_key(server: ClaveProcess) -> None:
    creds = twilio_credentials(server)
    client = Client(
        creds["TWILIO_API_KEY"],
        creds["TWILIO_API_SECRET"],
        creds["TWILIO_ACCOUNT_SID"],
        http_client=ClaveHttpClient(server.url),
    )
    service = client.verify.v2.services.create(friendly_name="Keyed")
    assert service.account_sid == creds["TWILIO_ACCOUNT_SID"]
    wrong = Client(
        creds["TWILIO_API_KEY"], "not-the-secret", http_client=ClaveHttpClient(server.url)
    )
    with pytest.raises(TwilioRestException) as denied:
        wrong.verify.v2.services.create(friendly_name="Nope")
    assert (denied.value.status, denied.value.code) == (401, 20003)


def test_credentials_are_stored_hashed(server: ClaveProcess) -> None:
    creds = twilio_credentials(server)
    database = (server.data_dir / "verify.db").read_bytes()
    assert creds["TWILIO_AUTH_TOKEN"].encode() not in database
    assert creds["TWILIO_API_SECRET"].encode() not in database
    # And the native API still answers beside /v2.
    key = server.cli("apikey", "create").stdout.strip()
    r = httpx.post(
        server.url + "/api/verifications",
        json={"to": TO, "channel": "sms"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 201


def test_custom_code_and_psd2_through_the_sdk(server: ClaveProcess) -> None:
    creds = twilio_credentials(server)
    client = Client(creds["TWILIO_ACCOUNT_SID"], creds["TWILIO_AUTH_TOKEN"])
    client.verify.base_url = server.url
    custom = client.verify.v2.services.create(friendly_name="Custom", custom_code_enabled=True)
    assert custom.custom_code_enabled is True
    client.verify.v2.services(custom.sid).verifications.create(
        to=TO, channel="sms", custom_code="246810"
    )
    assert inbox_code(server, TO) == "246810"
    check = client.verify.v2.services(custom.sid).verification_checks.create(to=TO, code="246810")
    assert check.status == "approved"

    psd2 = client.verify.v2.services.create(friendly_name="Payments", psd2_enabled=True)
    other = "+14155552674"
    sent = client.verify.v2.services(psd2.sid).verifications.create(
        to=other, channel="sms", amount="€12.00", payee="Acme"
    )
    assert (sent.amount, sent.payee) == ("€12.00", "Acme")
    code = inbox_code(server, other)
    wrong_payee = client.verify.v2.services(psd2.sid).verification_checks.create(
        to=other, code=code, amount="€12.00", payee="Mallory"
    )
    assert wrong_payee.status == "pending"
    right = client.verify.v2.services(psd2.sid).verification_checks.create(
        to=other, code=code, amount="€12.00", payee="Acme"
    )
    assert (right.status, right.valid) == ("approved", True)


class ForwardedHttpsClient(TwilioHttpClient):  # type: ignore[misc]  # twilio ships no types
    """The SDK's HTTP client behind a TLS-terminating proxy: Twilio's URLs go to the proxy
    (here haproxy, on plain HTTP), which is told the client used HTTPS."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        url = re.sub(r"^https://[^/]+", self.base_url, url)
        kwargs["headers"] = {**(kwargs.get("headers") or {}), "X-Forwarded-Proto": "https"}
        return super().request(method, url, *args, **kwargs)


def test_urls_are_https_behind_haproxy_and_a_tls_proxy(clave_up: Any) -> None:
    """The urls and paging URLs the SDK follows, with the account's Basic credentials, are
    https:// when the proxy in front says the client came over HTTPS."""
    stack = clave_up("monolith")
    printed = stack.cli("apikey", "create", "--twilio").stdout
    creds = dict(line.split("=", 1) for line in printed.splitlines() if "=" in line)
    client = Client(
        creds["TWILIO_ACCOUNT_SID"],
        creds["TWILIO_AUTH_TOKEN"],
        http_client=ForwardedHttpsClient(stack.url),
    )
    host = stack.url.split("://", 1)[1]
    service = client.verify.v2.services.create(friendly_name="Behind TLS")
    client.verify.v2.services.create(friendly_name="Second")
    assert service.url == f"https://{host}/v2/Services/{service.sid}"
    assert all(link.startswith(f"https://{host}/") for link in service.links.values())
    page = client.verify.v2.services.page(page_size=1)
    assert page.next_page_url.startswith(f"https://{host}/v2/Services?")
    sent = client.verify.v2.services(service.sid).verifications.create(to=TO, channel="sms")
    assert sent.url.startswith(f"https://{host}/v2/")


def test_the_safe_list_through_the_sdk_and_the_cli(
    tmp_path: Path, serve: type[ClaveProcess]
) -> None:
    """A listed number passes a blocked prefix: the account's list through the SDK, the
    operator's through `clave fraud safelist`."""
    server = serve(tmp_path, env={"CLAVE_BLOCKED_PREFIXES": "+1415555"}).start()
    creds = twilio_credentials(server)
    client = Client(creds["TWILIO_ACCOUNT_SID"], creds["TWILIO_AUTH_TOKEN"])
    client.verify.base_url = server.url
    service = client.verify.v2.services.create(friendly_name="Safe")
    verifications = client.verify.v2.services(service.sid).verifications
    with pytest.raises(TwilioRestException) as blocked:
        verifications.create(to=TO, channel="sms")
    assert (blocked.value.status, blocked.value.code) == (403, 60410)
    listed = client.verify.v2.safelist.create(phone_number=TO)
    assert listed.phone_number == TO
    assert listed.sid.startswith("GN")
    assert client.verify.v2.safelist(TO).fetch().sid == listed.sid
    assert verifications.create(to=TO, channel="sms").status == "pending"
    assert client.verify.v2.safelist(TO).delete() is True
    with pytest.raises(TwilioRestException) as gone:
        client.verify.v2.safelist(TO).fetch()
    assert (gone.value.status, gone.value.code) == (404, 20404)
    # The operator's list covers every service.
    other = "+14155552672"
    with pytest.raises(TwilioRestException):
        verifications.create(to=other, channel="sms")
    assert "is on the safe list" in server.cli("fraud", "safelist", "add", other).stdout
    assert other in server.cli("fraud", "safelist", "list").stdout
    assert verifications.create(to=other, channel="sms").status == "pending"
    assert "is off the safe list" in server.cli("fraud", "safelist", "remove", other).stdout
    refused = server.cli("fraud", "safelist", "remove", other, check=False)
    assert refused.returncode == 1
    assert "not on the safe list" in refused.stderr


def test_messaging_configurations_through_the_sdk(server: ClaveProcess) -> None:
    creds = twilio_credentials(server)
    client = Client(creds["TWILIO_ACCOUNT_SID"], creds["TWILIO_AUTH_TOKEN"])
    client.verify.base_url = server.url
    service = client.verify.v2.services.create(friendly_name="Configured")
    configurations = client.verify.v2.services(service.sid).messaging_configurations
    first, second = "MG" + "ab" * 16, "MG" + "cd" * 16
    made = configurations.create(country="GB", messaging_service_sid=first)
    assert (made.country, made.messaging_service_sid, made.service_sid) == (
        "GB",
        first,
        service.sid,
    )
    configurations.create(country="FR", messaging_service_sid=first)
    assert sorted(c.country for c in configurations.list(page_size=1)) == ["FR", "GB"]
    changed = (
        client.verify.v2.services(service.sid)
        .messaging_configurations("GB")
        .update(messaging_service_sid=second)
    )
    assert changed.messaging_service_sid == second
    fetched = client.verify.v2.services(service.sid).messaging_configurations("GB").fetch()
    assert fetched.messaging_service_sid == second
    assert client.verify.v2.services(service.sid).messaging_configurations("GB").delete() is True
    with pytest.raises(TwilioRestException) as gone:
        client.verify.v2.services(service.sid).messaging_configurations("GB").fetch()
    assert (gone.value.status, gone.value.code) == (404, 20404)


def test_rate_limits_and_buckets_through_the_sdk(server: ClaveProcess) -> None:
    """Service Rate Limits as Twilio's guide sets them up: a rate limit, a bucket, and a
    verification naming the key's value, refused with 60203 once the bucket is full."""
    creds = twilio_credentials(server)
    client = Client(creds["TWILIO_ACCOUNT_SID"], creds["TWILIO_AUTH_TOKEN"])
    client.verify.base_url = server.url
    service = client.verify.v2.services.create(friendly_name="Limited")
    rate_limits = client.verify.v2.services(service.sid).rate_limits
    made = rate_limits.create(unique_name="end_user_id", description="per user")
    assert (made.sid[:2], made.unique_name, made.description) == ("RK", "end_user_id", "per user")
    rate_limits.create(unique_name="session")
    assert [r.unique_name for r in rate_limits.list(page_size=1)] == ["end_user_id", "session"]
    assert rate_limits(made.sid).fetch().unique_name == "end_user_id"
    assert rate_limits(made.sid).update(description="by user").description == "by user"
    buckets = rate_limits(made.sid).buckets
    bucket = buckets.create(max=1, interval=60)
    assert (bucket.sid[:2], bucket.max, bucket.interval) == ("BL", 1, 60)
    assert bucket.rate_limit_sid == made.sid
    assert buckets(bucket.sid).update(max=2).max == 2
    assert [b.sid for b in buckets.list(page_size=1)] == [bucket.sid]
    assert buckets(bucket.sid).fetch().interval == 60

    verifications = client.verify.v2.services(service.sid).verifications
    for to in ("+14155550131", "+14155550132"):
        sent = verifications.create(to=to, channel="sms", rate_limits={"end_user_id": "u-1"})
        assert sent.status == "pending"
    with pytest.raises(TwilioRestException) as over:
        verifications.create(to="+14155550133", channel="sms", rate_limits={"end_user_id": "u-1"})
    assert (over.value.status, over.value.code) == (429, 60203)
    other = verifications.create(to="+14155550134", channel="sms", rate_limits={"end_user_id": 7})
    assert other.status == "pending"

    assert buckets(bucket.sid).delete() is True
    assert rate_limits(made.sid).delete() is True
    with pytest.raises(TwilioRestException) as gone:
        rate_limits(made.sid).fetch()
    assert (gone.value.status, gone.value.code) == (404, 20404)
    with pytest.raises(TwilioRestException) as unknown:  # no longer a rate limit of the service
        verifications.create(to="+14155550135", channel="sms", rate_limits={"end_user_id": "u"})
    assert (unknown.value.status, unknown.value.code) == (400, 60200)


def test_messages_in_the_locales_language_through_the_sdk(server: ClaveProcess) -> None:
    """`Locale` picks the language; without it the phone's country does; an unknown locale is
    60200, never a message in another language."""
    creds = twilio_credentials(server)
    client = Client(creds["TWILIO_ACCOUNT_SID"], creds["TWILIO_AUTH_TOKEN"])
    client.verify.base_url = server.url
    service = client.verify.v2.services.create(friendly_name="Loja")
    verifications = client.verify.v2.services(service.sid).verifications

    def text_to(to: str) -> str:
        inbox_code(server, to)
        messages = httpx.get(server.url + "/dev/inbox/messages", params={"to": to}).json()
        return str(messages["messages"][0]["text"])

    verifications.create(to=TO, channel="sms", locale="pt-BR")
    brazilian = text_to(TO)
    assert "Seu código de verificação Loja é" in brazilian, brazilian
    assert "Expira em 10 minutos." in brazilian
    japan = "+81312345678"
    verifications.create(to=japan, channel="sms")
    assert "Lojaの認証コードは" in text_to(japan)
    with pytest.raises(TwilioRestException) as unknown:
        verifications.create(to="+14155550141", channel="sms", locale="xx")
    assert (unknown.value.status, unknown.value.code) == (400, 60200)


def test_the_attempts_log_through_the_sdk(server: ClaveProcess) -> None:
    """Verification Attempts and their Summary: the sends of the account's services, with a
    conversion counted once its verification is approved."""
    creds = twilio_credentials(server)
    client = Client(creds["TWILIO_ACCOUNT_SID"], creds["TWILIO_AUTH_TOKEN"])
    client.verify.base_url = server.url
    service = client.verify.v2.services.create(friendly_name="Reported")
    verifications = client.verify.v2.services(service.sid).verifications
    first = verifications.create(to=TO, channel="sms")
    verifications.create(to="+14155550151", channel="sms")
    verifications.create(to="+34612345678", channel="sms")
    code = inbox_code(server, TO)
    check = client.verify.v2.services(service.sid).verification_checks.create(to=TO, code=code)
    assert check.status == "approved"

    attempts = client.verify.v2.verification_attempts.list(
        verify_service_sid=service.sid, page_size=2
    )  # followed across pages by the SDK
    assert [a.channel_data["to"] for a in attempts] == ["+34612345678", "+14155550151", TO]
    mine = attempts[2]
    assert (mine.verification_sid, mine.conversion_status, mine.channel) == (
        first.sid,
        "converted",
        "sms",
    )
    assert mine.sid == first.send_code_attempts[0]["attempt_sid"]
    assert client.verify.v2.verification_attempts(mine.sid).fetch().verification_sid == first.sid
    spain = client.verify.v2.verification_attempts.list(country="ES", status="unconverted")
    assert [a.channel_data["to"] for a in spain] == ["+34612345678"]
    summary = client.verify.v2.verification_attempts_summary().fetch(verify_service_sid=service.sid)
    assert (summary.total_attempts, summary.total_converted, summary.total_unconverted) == (3, 1, 2)
    assert summary.conversion_rate_percentage == "33.3333333"
    with pytest.raises(TwilioRestException) as unknown:
        client.verify.v2.verification_attempts("VL" + "0" * 32).fetch()
    assert (unknown.value.status, unknown.value.code) == (404, 20404)


def test_totp_factors_through_the_sdk(server: ClaveProcess) -> None:
    """Twilio Verify's TOTP flow, as its docs write it: an entity, a factor whose binding the
    user's app enrolls from, the factor verified with a first code, then challenges."""
    creds = twilio_credentials(server)
    client = Client(creds["TWILIO_ACCOUNT_SID"], creds["TWILIO_AUTH_TOKEN"])
    client.verify.base_url = server.url
    service = client.verify.v2.services.create(friendly_name="Authy-like", totp_skew=1)
    entities = client.verify.v2.services(service.sid).entities
    entity = entities.create(identity="ff483d1ff591898a9942916050d2ca3f")
    assert (entity.sid[:2], entity.identity) == ("YE", "ff483d1ff591898a9942916050d2ca3f")
    assert entity.identity in [e.identity for e in entities.list(page_size=1)]
    user = entities(entity.identity)
    factor = user.new_factors.create(friendly_name="Ana's phone", factor_type="totp")
    assert (factor.sid[:2], factor.status, factor.factor_type) == ("YF", "unverified", "totp")
    assert factor.config == {"alg": "sha1", "skew": 1, "code_length": 6, "time_step": 30}
    app = pyotp.TOTP(factor.binding["secret"])
    assert pyotp.parse_uri(factor.binding["uri"]).secret == factor.binding["secret"]
    verified = user.factors(factor.sid).update(auth_payload=app.now())
    assert verified.status == "verified"
    # A challenge with the next step's code (the first one is spent) is approved, once.
    code = app.at(time.time() + 30)
    approved = user.challenges.create(auth_payload=code, factor_sid=factor.sid)
    assert (approved.sid[:2], approved.status, approved.factor_sid) == (
        "YC",
        "approved",
        factor.sid,
    )
    replayed = user.challenges.create(auth_payload=code, factor_sid=factor.sid)
    assert replayed.status == "pending"
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    assert user.challenges.create(auth_payload=wrong, factor_sid=factor.sid).status == "pending"
    assert user.challenges(approved.sid).fetch().status == "approved"
    listed = user.challenges.list(status="approved")
    assert [c.sid for c in listed] == [approved.sid]
    assert [f.sid for f in user.factors.list()] == [factor.sid]
    assert user.factors(factor.sid).delete() is True
    with pytest.raises(TwilioRestException) as gone:
        user.factors(factor.sid).fetch()
    assert (gone.value.status, gone.value.code) == (404, 20404)
    assert user.delete() is True
    with pytest.raises(TwilioRestException) as no_entity:
        user.fetch()
    assert (no_entity.value.status, no_entity.value.code) == (404, 20404)
