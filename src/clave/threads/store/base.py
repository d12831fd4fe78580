"""The port every threads storage backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from clave.threads.models import Thread


class ThreadStore(Protocol):
    """Threads, by integer id."""

    async def open(self) -> None:
        """Connect; creates the schema when missing."""
        ...

    async def close(self) -> None:
        """Disconnect."""
        ...

    async def ping(self) -> None:
        """Raise StoreError unless the backend answers."""
        ...

    async def list(self, *, after: int, limit: int) -> list[Thread]:
        """Threads with id > `after`, by id."""
        ...

    async def get(self, thread_id: int) -> Thread | None:
        """A thread by id."""
        ...

    async def create(self, *, title: str, created_by: int, now: float) -> Thread:
        """Insert a thread."""
        ...

    async def update(self, thread_id: int, *, title: str, now: float) -> Thread | None:
        """Retitle; None if no such thread."""
        ...

    async def delete(self, thread_id: int) -> bool:
        """Delete; False if no such thread."""
        ...

    async def seed(self, threads: Sequence[tuple[int, str, int]], *, now: float) -> bool:
        """Insert the sample threads once in the life of the store."""
        ...
