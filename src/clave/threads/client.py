"""The threads domain's client, for other domains."""

from __future__ import annotations

from clave.platform.client import ServiceClient


class ThreadsClient:
    """Ask the threads service whether a thread exists."""

    def __init__(self, client: ServiceClient) -> None:
        self._client = client

    async def exists(self, thread_id: int) -> bool:
        """True if the thread exists; DependencyUnavailable if threads does not answer."""
        return await self._client.exists(f"/api/threads/{int(thread_id)}")

    async def aclose(self) -> None:
        """Close connections."""
        await self._client.aclose()
