"""Composition root of the threads domain."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

from litestar.types import ControllerRouterHandler

from clave.platform.openapi_errors import ErrorTable
from clave.platform.settings import DEFAULT_POOL_SIZE
from clave.platform.store_domain import StoreDomain, choose_store, prepare_seeded
from clave.threads import api
from clave.threads.models import SEED
from clave.threads.service import ThreadsService
from clave.threads.store.base import ThreadStore
from clave.threads.store.memory import MemoryThreadStore
from clave.threads.store.sql import MIGRATIONS, SqlThreadStore
from clave.users.client import UsersClient


def build_store(url: str, data_dir: Path, *, pool_size: int = DEFAULT_POOL_SIZE) -> ThreadStore:
    """The store `CLAVE_THREADS_DB` names."""
    chosen = choose_store(
        url, data_dir, "threads", MIGRATIONS, MemoryThreadStore, SqlThreadStore, pool_size=pool_size
    )
    return cast(ThreadStore, chosen)


class ThreadsDomain(StoreDomain):
    """Threads in their own database; who is acting asked of the users client."""

    name = "threads"

    def __init__(
        self,
        store: ThreadStore,
        users: UsersClient,
        *,
        seed: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(store, [users], seed=seed)
        self._store = store
        self._clock = clock
        self.service = ThreadsService(store, users, clock)

    async def seed(self) -> None:
        """The original sample's three threads."""
        await self._store.seed(SEED, now=self._clock())

    def route_handlers(self) -> Sequence[ControllerRouterHandler]:
        """The threads routes."""
        return [api.router(self.service)]

    @property
    def openapi_errors(self) -> ErrorTable:
        """The statuses its routes answer beyond the rules (for /openapi.json)."""
        return api.OPENAPI_ERRORS


async def prepare_store(url: str, data_dir: Path, *, seed: bool) -> None:
    """Migrate (and seed) the store once, before worker processes start."""
    if url != "memory":
        await prepare_seeded(build_store(url, data_dir), SEED, seed=seed)
