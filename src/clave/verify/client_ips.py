"""Which address verify's per-IP limits count for a request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection

from clave.platform.client_ip import end_user_ip, parse_ip
from clave.platform.lean import LeanRequest
from clave.verify.errors import InvalidParameter


@dataclass(frozen=True, slots=True)
class ClientIps:
    """Which address the per-IP limits count for a request."""

    # CLAVE_LIMIT_PEER_IP: end users reach clave directly (or through `proxy_hops` proxies).
    from_peer: bool
    proxy_hops: int

    def of(
        self,
        request: ASGIConnection[Any, Any, Any, Any] | LeanRequest,
        declared: str | None,
        *,
        name: str = "client_ip",
    ) -> str | None:
        """The address the caller declares (`client_ip`, Twilio's `DeviceIp`: its end
        user's), else, when end users reach clave directly, the peer's."""
        if declared is not None:
            try:
                return parse_ip(declared)
            except ValueError:
                raise InvalidParameter(f"{name} is not an IP address") from None
        if not self.from_peer:
            return None
        return end_user_ip(request, self.proxy_hops)
