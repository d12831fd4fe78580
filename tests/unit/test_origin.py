"""The public origin of the URLs clave writes (platform/origin.py)."""

from __future__ import annotations

from typing import Any

import pytest

from clave.platform.origin import PublicOrigin, origin_of, parse_public_url
from clave.platform.settings import Env, PlatformSettings, SettingsError


def scope(*headers: tuple[str, str], scheme: str = "http") -> dict[str, Any]:
    return {
        "type": "http",
        "scheme": scheme,
        "headers": [(k.encode(), v.encode()) for k, v in headers],
        "server": ("10.0.0.5", 8000),
    }


def settled(origin: PublicOrigin, *headers: tuple[str, str]) -> str:
    return origin_of(origin.settle(scope(*headers)))


def test_the_public_url_wins_over_whatever_the_request_says() -> None:
    origin = PublicOrigin(public_url="https://Verify.Example.com", proxy_hops=0)
    assert origin.active
    got = settled(origin, ("host", "10.0.0.5:8000"), ("x-forwarded-proto", "http"))
    assert got == "https://verify.example.com"
    assert settled(origin, ("x-forwarded-host", "evil.example")) == "https://verify.example.com"


def test_behind_trusted_proxies_the_forwarded_protocol_and_host() -> None:
    origin = PublicOrigin(public_url=None, proxy_hops=1)
    host = ("host", "api.example.com")
    assert settled(origin, host, ("x-forwarded-proto", "https")) == "https://api.example.com"
    # The nearest proxy's value (the last), over lines and commas.
    assert (
        settled(origin, host, ("x-forwarded-proto", "http"), ("x-forwarded-proto", "https"))
        == "https://api.example.com"
    )
    assert settled(origin, host, ("x-forwarded-proto", "ftp, https")) == "https://api.example.com"
    assert (
        settled(origin, host, ("x-forwarded-host", "a.example, public.example:8443"))
        == "http://public.example:8443"
    )


def test_forwarded_values_that_are_not_a_protocol_or_a_host_are_ignored() -> None:
    origin = PublicOrigin(public_url=None, proxy_hops=1)
    host = ("host", "api.example.com")
    assert settled(origin, host, ("x-forwarded-proto", "javascript")) == "http://api.example.com"
    for bad in ("evil.example/path", "a b", "evil.example@x", "<script>", ""):
        assert settled(origin, host, ("x-forwarded-host", bad)) == "http://api.example.com"


def test_without_proxies_the_request_is_taken_as_it_came() -> None:
    origin = PublicOrigin(public_url=None, proxy_hops=0)
    assert not origin.active
    assert origin_of(scope(("host", "api.example.com"))) == "http://api.example.com"
    assert origin_of(scope()) == "http://10.0.0.5:8000"  # no Host: the server's address
    # Container names and a fully qualified name's final dot are host names too.
    assert origin_of(scope(("host", "clave_verify:8000"))) == "http://clave_verify:8000"
    assert origin_of(scope(("host", "Verify.Example.com."))) == "http://Verify.Example.com"
    assert (
        origin_of(scope(("host", "verify.example.com.:8443"))) == "http://verify.example.com:8443"
    )
    # A Host that is not a host name is never written into a URL.
    for bad in ("evil.example/x?", '"><script>', "a b", "evil.example@x", ""):
        assert origin_of(scope(("host", bad))) == "http://10.0.0.5:8000"


@pytest.mark.parametrize(
    "value",
    [
        "verify.example.com",
        "ftp://x.example",
        "https://x.example/path",
        "https://x.example?q=1",
        "https://user@x.example",
        "https://",
    ],
)
def test_a_public_url_that_is_not_an_origin_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="CLAVE_PUBLIC_URL"):
        parse_public_url(value)
    with pytest.raises(SettingsError, match="CLAVE_PUBLIC_URL"):
        PlatformSettings.from_env(Env({"CLAVE_PUBLIC_URL": value}))


def test_the_setting_keeps_the_origin() -> None:
    settings = PlatformSettings.from_env(Env({"CLAVE_PUBLIC_URL": "https://V.example:8443/"}))
    assert settings.public_url == "https://v.example:8443"
