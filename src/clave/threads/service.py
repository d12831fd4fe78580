"""Use cases of the threads domain."""

from __future__ import annotations

from collections.abc import Callable

from clave.platform.text import is_single_line
from clave.threads.errors import InvalidThread, NotCreator, ThreadNotFound
from clave.threads.models import Thread
from clave.threads.store.base import ThreadStore
from clave.users.client import UsersClient


def _title(value: str) -> str:
    if not is_single_line(value):
        raise InvalidThread("title must be one line of printable characters")
    return value


class ThreadsService:
    """Threads; only a thread's creator may change it (who is acting: asked of users)."""

    def __init__(self, store: ThreadStore, users: UsersClient, clock: Callable[[], float]) -> None:
        self._store = store
        self._users = users
        self._clock = clock

    async def caller(self, authorization: str | None) -> int:
        """The id of the user whose token the request carries (401 otherwise, 503 when users
        does not answer)."""
        return await self._users.caller(authorization)

    async def list_threads(self, *, after: int, limit: int) -> list[Thread]:
        """A page of threads."""
        return await self._store.list(after=after, limit=limit)

    async def get_thread(self, thread_id: int) -> Thread:
        """A thread, or ThreadNotFound."""
        thread = await self._store.get(thread_id)
        if thread is None:
            raise ThreadNotFound(f"no thread with id {thread_id}")
        return thread

    async def create_thread(self, caller: int, *, title: str, created_by: int) -> Thread:
        """A new thread by the calling user (who exists: users just vouched for its token)."""
        if created_by != caller:
            raise NotCreator(f"createdBy must be the token's user ({caller})")
        return await self._store.create(title=_title(title), created_by=caller, now=self._clock())

    async def _created_by(self, caller: int, thread_id: int) -> Thread:
        thread = await self.get_thread(thread_id)
        if thread.created_by != caller:
            raise NotCreator(f"only thread {thread_id}'s creator may change it")
        return thread

    async def retitle(self, caller: int, thread_id: int, title: str) -> Thread:
        """Change a thread's title (its creator only)."""
        await self._created_by(caller, thread_id)
        thread = await self._store.update(thread_id, title=_title(title), now=self._clock())
        if thread is None:
            raise ThreadNotFound(f"no thread with id {thread_id}")
        return thread

    async def delete_thread(self, caller: int, thread_id: int) -> None:
        """Delete a thread (its creator only)."""
        await self._created_by(caller, thread_id)
        if not await self._store.delete(thread_id):
            raise ThreadNotFound(f"no thread with id {thread_id}")
