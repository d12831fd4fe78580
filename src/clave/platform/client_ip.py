"""The end user's IP address: where a request came from, and how per-IP limits count it."""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

from litestar.connection import ASGIConnection

from clave.platform.lean import LeanRequest

# An IPv6 subscriber usually gets a whole /64 (RFC 6177): counting single addresses would give
# one client 2^64 fresh budgets.
IPV6_PREFIX = 64
# Parsing an address costs a few microseconds, several times a check: the addresses seen last
# are kept parsed (a failure is not kept). Bounded, so a caller cycling addresses only churns it.
_RECENT = 1024
_CACHED_LENGTH = 64  # the longest address kept (the longest without a scope id is 45)


def parse_ip(text: str) -> str:
    """The canonical text of an IP address; ValueError when `text` is not one."""
    if len(text) > _CACHED_LENGTH:  # (an IPv6 scope id may be long: not kept)
        return _parse_ip(text)
    return _recent_ip(text)


def _parse_ip(text: str) -> str:
    return str(ipaddress.ip_address(text.strip()))


_recent_ip = functools.lru_cache(maxsize=_RECENT)(_parse_ip)


def is_loopback(host: str) -> bool:
    """Whether `host` (an address, or "localhost") is this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ip_bucket(ip: str) -> str:
    """What per-IP limits count for `ip`: an IPv4 address as itself (an IPv4-mapped IPv6
    address too, so ::ffff:192.0.2.1 and 192.0.2.1 share one budget), an IPv6 address by its
    /64 network. ValueError when `ip` is not an address."""
    return _bucket(ip) if len(ip) > _CACHED_LENGTH else _recent_bucket(ip)


def _bucket(ip: str) -> str:
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


_recent_bucket = functools.lru_cache(maxsize=_RECENT)(_bucket)


def end_user_ip(
    connection: ASGIConnection[Any, Any, Any, Any] | LeanRequest, proxy_hops: int
) -> str | None:
    """`end_user_address` of a request (Litestar's or a lean route's)."""
    if isinstance(connection, LeanRequest):
        lines = connection.header_lines(b"x-forwarded-for")
        return end_user_address(lines, connection.peer, proxy_hops)
    client = connection.client
    return end_user_address(
        connection.headers.getall("x-forwarded-for", []),
        client.host if client is not None else None,
        proxy_hops,
    )


def end_user_address(forwarded_for: list[str], peer: str | None, proxy_hops: int) -> str | None:
    """The address of whoever sent a request: the `peer`, or with `proxy_hops` trusted proxies
    in front, the entry the outermost of them appended to X-Forwarded-For (`forwarded_for`:
    every line of the header, in order).

    Entries further left were written by the client and are never trusted. A header with too
    few entries, or an entry that is not an address, means the request did not come through
    the proxies: the peer is used.
    """
    if proxy_hops:
        # Every X-Forwarded-For line, in order: haproxy's `option forwardfor` adds a line of
        # its own after the client's instead of appending to it.
        header = ",".join(forwarded_for)
        forwarded = [part.strip() for part in header.split(",") if part.strip()]
        if len(forwarded) >= proxy_hops:
            try:
                return parse_ip(forwarded[-proxy_hops])
            except ValueError:
                pass
    if peer is None:
        return None
    try:
        return parse_ip(peer)
    except ValueError:
        return None  # a Unix socket or a test transport's placeholder name
