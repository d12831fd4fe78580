"""Where clients reach clave: the origin (scheme and host) of every URL clave writes.

Behind a TLS-terminating load balancer clave sees plain HTTP, so a URL built from the request
as it arrives (Twilio's `url`, `links` and paging URLs, the forum's `Link` headers) would read
`http://...`, and an SDK following it would send its credentials in clear. The origin is
therefore settled once per request, before any route reads it:

- `CLAVE_PUBLIC_URL` (`https://verify.example.com`), when set, is the origin, whatever the
  request says;
- else, with `CLAVE_PROXY_HOPS` trusted proxies in front, the protocol and host the nearest of
  them passed on (`X-Forwarded-Proto`, `X-Forwarded-Host`, the last value of each: an ALB sets
  the first, and keeps the client's Host);
- else the request's own scheme and Host (when it is a host name; else the address the request
  came to).

`PublicOrigin.settle` rewrites the scope's `scheme` and Host header in front of everything
(platform/lean.py's LeanApp calls it first), so Litestar's `request.url` and the lean routes
agree. A forwarded value that is not a protocol or a host name is ignored, never echoed.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import urlsplit

Scope = MutableMapping[str, Any]

# A host name or IPv4 address, or a bracketed IPv6 address, with an optional port.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"(?:(?:{_LABEL}\.)*{_LABEL}|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?")
# A Host header as clients send it: also with "_" (container names such as clave_verify) and
# a fully qualified name's final dot (dropped when written into a URL).
_NAME = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_REQUEST_HOST = re.compile(rf"((?:{_NAME}\.)*{_NAME}|\[[0-9A-Fa-f:.]+\])\.?((?::[0-9]{{1,5}})?)")


def parse_public_url(value: str) -> tuple[str, str]:
    """(scheme, host[:port]) of `CLAVE_PUBLIC_URL`; ValueError unless it is an http(s)
    origin with nothing after the host."""
    parts = urlsplit(value.strip())
    if (
        parts.scheme not in ("http", "https")
        or not _HOST.fullmatch(parts.netloc)
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ValueError(
            f"CLAVE_PUBLIC_URL must be an origin such as https://verify.example.com, got {value!r}"
        )
    return parts.scheme, parts.netloc.lower()


def origin_of(scope: Any) -> str:
    """`scheme://host` of a request's ASGI scope, as the app sees it (settled by
    PublicOrigin)."""
    sent = next((v for k, v in scope["headers"] if k == b"host"), b"").decode("latin-1")
    if found := _REQUEST_HOST.fullmatch(sent):
        host = found.group(1) + found.group(2)
    else:  # none, or not a host name: never echoed into a URL; the address it came to
        server = scope.get("server") or ("localhost", None)
        host = f"{server[0]}:{server[1]}" if server[1] else str(server[0])
    return f"{scope.get('scheme', 'http')}://{host}"


def _last(scope: Scope, name: bytes) -> str | None:
    values = [v.decode("latin-1") for k, v in scope["headers"] if k == name]
    entries = [e.strip() for e in ",".join(values).split(",") if e.strip()]
    return entries[-1] if entries else None


class PublicOrigin:
    """Settles each request's scheme and Host as the module says."""

    def __init__(self, *, public_url: str | None, proxy_hops: int) -> None:
        self._fixed = parse_public_url(public_url) if public_url else None
        self._hops = proxy_hops

    @property
    def active(self) -> bool:
        """Whether anything is to be settled (else requests pass as they are)."""
        return self._fixed is not None or self._hops > 0

    def settle(self, scope: Scope) -> Scope:
        """`scope`, or a copy with the public scheme and Host."""
        if scope["type"] != "http":
            return scope
        host: str | None
        if self._fixed is not None:
            scheme, host = self._fixed
        else:
            proto = (_last(scope, b"x-forwarded-proto") or "").lower()
            forwarded = _last(scope, b"x-forwarded-host")
            scheme = proto if proto in ("http", "https") else scope.get("scheme", "http")
            host = forwarded if forwarded and _HOST.fullmatch(forwarded) else None
        settled = dict(scope)
        settled["scheme"] = scheme
        if host is not None:
            settled["headers"] = [
                *((k, v) for k, v in scope["headers"] if k != b"host"),
                (b"host", host.encode("latin-1")),
            ]
        return settled
