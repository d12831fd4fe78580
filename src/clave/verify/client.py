"""The verify domain's client, for other domains: in-process or over HTTP, same calls."""

from __future__ import annotations

from dataclasses import dataclass

from clave.platform.client import ServiceClient


@dataclass(frozen=True, slots=True)
class RemoteVerification:
    """What a caller learns of a verification."""

    id: str
    status: str
    to: str
    channel: str
    check_attempts_left: int


class VerifyClient:
    """Start and check verifications as one tenant, with that tenant's API key."""

    def __init__(self, client: ServiceClient) -> None:
        self._client = client

    async def start(
        self, *, to: str, channel: str, client_ip: str | None = None
    ) -> RemoteVerification:
        """Send (or re-send) a code to `to`; `client_ip`, the end user's address, is counted
        by verify's per-IP limits (verify itself sees only the calling tenant)."""
        body = {"to": to, "channel": channel}
        if client_ip is not None:
            body["client_ip"] = client_ip
        response = await self._client.request("POST", "/api/verifications", json=body)
        if response.status_code not in (200, 201):
            raise self._client.refused(response)
        return self._read(response.json())

    async def check(
        self, *, verification_id: str, code: str, client_ip: str | None = None
    ) -> RemoteVerification:
        """Check a code; `status` is approved, pending or max_attempts_reached. `client_ip` is
        counted by verify's per-IP limit of failed checks."""
        body = {"id": verification_id, "code": code}
        if client_ip is not None:
            body["client_ip"] = client_ip
        response = await self._client.request("POST", "/api/verifications/check", json=body)
        if response.status_code != 200:
            raise self._client.refused(response)
        return self._read(response.json())

    async def aclose(self) -> None:
        """Close connections."""
        await self._client.aclose()

    @staticmethod
    def _read(body: dict[str, object]) -> RemoteVerification:
        return RemoteVerification(
            id=str(body["id"]),
            status=str(body["status"]),
            to=str(body["to"]),
            channel=str(body["channel"]),
            check_attempts_left=int(str(body["check_attempts_left"])),
        )
