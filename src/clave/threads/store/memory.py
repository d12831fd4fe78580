"""In-memory threads store for unit tests and development."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from clave.threads.models import Thread


class MemoryThreadStore:
    """Threads in a dict; each method is atomic (no awaits inside)."""

    def __init__(self) -> None:
        self._threads: dict[int, Thread] = {}
        self._next = 1
        self._seeded = False

    async def open(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to disconnect."""

    async def ping(self) -> None:
        """Always answers."""

    async def list(self, *, after: int, limit: int) -> list[Thread]:
        """Threads after an id."""
        return [self._threads[k] for k in sorted(self._threads) if k > after][:limit]

    async def get(self, thread_id: int) -> Thread | None:
        """A thread by id."""
        return self._threads.get(thread_id)

    async def create(
        self, *, title: str, created_by: int, now: float, thread_id: int | None = None
    ) -> Thread:
        """Insert a thread."""
        tid = thread_id or self._next
        self._next = max(self._next, tid + 1)
        thread = Thread(tid, title, created_by, now, now)
        self._threads[tid] = thread
        return thread

    async def update(self, thread_id: int, *, title: str, now: float) -> Thread | None:
        """Retitle."""
        current = self._threads.get(thread_id)
        if current is None:
            return None
        self._threads[thread_id] = replace(current, title=title, updated_at=now)
        return self._threads[thread_id]

    async def delete(self, thread_id: int) -> bool:
        """Delete a thread."""
        return self._threads.pop(thread_id, None) is not None

    async def seed(self, threads: Sequence[tuple[int, str, int]], *, now: float) -> bool:
        """Insert the sample threads once."""
        if self._seeded:
            return False
        for tid, title, by in threads:
            await self.create(title=title, created_by=by, now=now, thread_id=tid)
        self._seeded = True
        return True
