"""Composition root of the posts domain."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

from litestar.types import ControllerRouterHandler

from clave.platform.openapi_errors import ErrorTable
from clave.platform.settings import DEFAULT_POOL_SIZE
from clave.platform.store_domain import StoreDomain, choose_store, prepare_seeded
from clave.posts import api
from clave.posts.models import SEED
from clave.posts.service import PostsService
from clave.posts.store.base import PostStore
from clave.posts.store.memory import MemoryPostStore
from clave.posts.store.sql import MIGRATIONS, SqlPostStore
from clave.threads.client import ThreadsClient
from clave.users.client import UsersClient


def build_store(url: str, data_dir: Path, *, pool_size: int = DEFAULT_POOL_SIZE) -> PostStore:
    """The store `CLAVE_POSTS_DB` names."""
    chosen = choose_store(
        url, data_dir, "posts", MIGRATIONS, MemoryPostStore, SqlPostStore, pool_size=pool_size
    )
    return cast(PostStore, chosen)


class PostsDomain(StoreDomain):
    """Posts in their own database; the acting user and the thread asked of their clients."""

    name = "posts"

    def __init__(
        self,
        store: PostStore,
        users: UsersClient,
        threads: ThreadsClient,
        *,
        seed: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(store, [users, threads], seed=seed)
        self._store = store
        self._clock = clock
        self.service = PostsService(store, users, threads, clock)

    async def seed(self) -> None:
        """The original sample's six posts."""
        await self._store.seed(SEED, now=self._clock())

    def route_handlers(self) -> Sequence[ControllerRouterHandler]:
        """The posts routes."""
        return [api.router(self.service)]

    @property
    def openapi_errors(self) -> ErrorTable:
        """The statuses its routes answer beyond the rules (for /openapi.json)."""
        return api.OPENAPI_ERRORS


async def prepare_store(url: str, data_dir: Path, *, seed: bool) -> None:
    """Migrate (and seed) the store once, before worker processes start."""
    if url != "memory":
        await prepare_seeded(build_store(url, data_dir), SEED, seed=seed)
