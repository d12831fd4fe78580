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

    async def start(self, *, to: str, channel: str) -> RemoteVerification:
        """Send (or re-send) a code to `to`."""
        response = await self._client.request(
            "POST", "/api/verifications", json={"to": to, "channel": channel}
        )
        if response.status_code not in (200, 201):
            raise self._client.refused(response)
        return self._read(response.json())

    async def check(self, *, verification_id: str, code: str) -> RemoteVerification:
        """Check a code; `status` is approved, pending or max_attempts_reached."""
        response = await self._client.request(
            "POST", "/api/verifications/check", json={"id": verification_id, "code": code}
        )
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
