"""The verify domain's client, for other domains: in-process or over HTTP, same calls."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from clave.platform.client import ServiceClient


@dataclass(frozen=True, slots=True)
class RemoteVerification:
    """What a caller learns of a verification."""

    id: str
    status: str
    to: str
    channel: str
    check_attempts_left: int


@dataclass(frozen=True, slots=True)
class RemoteFactor:
    """What a caller learns of an authenticator-app factor."""

    id: str
    status: str


class VerifyClient:
    """Start and check verifications, and authenticator-app factors, as one tenant, with that
    tenant's API key."""

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

    async def enroll_factor(self, *, entity: str, friendly_name: str) -> dict[str, object]:
        """A new authenticator-app factor for `entity`, as verify answers it: its id, status
        and, this once, its binding and QR codes."""
        body = {"entity": entity, "friendly_name": friendly_name, "type": "totp"}
        response = await self._client.request("POST", "/api/factors", json=body)
        if response.status_code != 201:
            raise self._client.refused(response)
        found: dict[str, object] = response.json()
        return found

    async def factors(self, *, entity: str) -> list[RemoteFactor]:
        """The entity's factors, oldest first."""
        query = urlencode({"entity": entity})
        response = await self._client.request("GET", f"/api/factors?{query}")
        if response.status_code != 200:
            raise self._client.refused(response)
        return [RemoteFactor(str(f["id"]), str(f["status"])) for f in response.json()]

    async def confirm_factor(self, *, factor_id: str, code: str) -> bool:
        """Whether `code` confirmed the factor."""
        response = await self._client.request(
            "POST", f"/api/factors/{factor_id}/confirm", json={"code": code}
        )
        if response.status_code != 200:
            raise self._client.refused(response)
        return bool(response.json()["valid"])

    async def challenge(self, *, entity: str, code: str) -> bool:
        """Whether `code` is a fresh code of one of the entity's verified factors."""
        response = await self._client.request(
            "POST", "/api/challenges", json={"entity": entity, "code": code}
        )
        if response.status_code != 200:
            raise self._client.refused(response)
        return bool(response.json()["valid"])

    async def delete_factor(self, *, factor_id: str) -> None:
        """Delete a factor (one already gone is fine)."""
        response = await self._client.request("DELETE", f"/api/factors/{factor_id}")
        if response.status_code not in (204, 404):
            raise self._client.refused(response)

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
