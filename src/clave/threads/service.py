"""Use cases of the threads domain."""

from __future__ import annotations

from collections.abc import Callable

from clave.threads.errors import ThreadNotFound, UnknownUser
from clave.threads.models import Thread
from clave.threads.store.base import ThreadStore
from clave.users.client import UsersClient


class ThreadsService:
    """Threads; the creator must be an existing user (asked of the users service)."""

    def __init__(self, store: ThreadStore, users: UsersClient, clock: Callable[[], float]) -> None:
        self._store = store
        self._users = users
        self._clock = clock

    async def list_threads(self, *, after: int, limit: int) -> list[Thread]:
        """A page of threads."""
        return await self._store.list(after=after, limit=limit)

    async def get_thread(self, thread_id: int) -> Thread:
        """A thread, or ThreadNotFound."""
        thread = await self._store.get(thread_id)
        if thread is None:
            raise ThreadNotFound(f"no thread with id {thread_id}")
        return thread

    async def create_thread(self, *, title: str, created_by: int) -> Thread:
        """A new thread by an existing user."""
        if not await self._users.exists(created_by):
            raise UnknownUser(f"createdBy: no user with id {created_by}")
        return await self._store.create(title=title, created_by=created_by, now=self._clock())

    async def retitle(self, thread_id: int, title: str) -> Thread:
        """Change a thread's title."""
        thread = await self._store.update(thread_id, title=title, now=self._clock())
        if thread is None:
            raise ThreadNotFound(f"no thread with id {thread_id}")
        return thread

    async def delete_thread(self, thread_id: int) -> None:
        """Delete a thread."""
        if not await self._store.delete(thread_id):
            raise ThreadNotFound(f"no thread with id {thread_id}")
