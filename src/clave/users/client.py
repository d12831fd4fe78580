"""The users domain's client, for other domains."""

from __future__ import annotations

from clave.platform.client import ServiceClient


class UsersClient:
    """Ask the users service whether a user exists."""

    def __init__(self, client: ServiceClient) -> None:
        self._client = client

    async def exists(self, user_id: int) -> bool:
        """True if the user exists; DependencyUnavailable if users does not answer."""
        return await self._client.exists(f"/api/users/{int(user_id)}")

    async def aclose(self) -> None:
        """Close connections."""
        await self._client.aclose()
