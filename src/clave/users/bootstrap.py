"""Composition root of the users domain."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

from litestar.types import ControllerRouterHandler

from clave.platform.lean import LeanRoute
from clave.platform.openapi_errors import ErrorTable
from clave.platform.settings import DEFAULT_POOL_SIZE, SettingsError
from clave.platform.store_domain import StoreDomain, choose_store, prepare_seeded
from clave.users import api
from clave.users.errors import UserNotFound
from clave.users.models import SEED
from clave.users.service import UsersService
from clave.users.settings import UsersSettings
from clave.users.store.base import UserStore
from clave.users.store.memory import MemoryUserStore
from clave.users.store.sql import MIGRATIONS, SqlUserStore
from clave.users.tokens import issue_token
from clave.verify.client import VerifyClient


def build_store(url: str, data_dir: Path, *, pool_size: int = DEFAULT_POOL_SIZE) -> UserStore:
    """The store `CLAVE_USERS_DB` names."""
    chosen = choose_store(
        url, data_dir, "users", MIGRATIONS, MemoryUserStore, SqlUserStore, pool_size=pool_size
    )
    return cast(UserStore, chosen)


class UsersDomain(StoreDomain):
    """Users in their own database; contacts proven through the verify client."""

    name = "users"

    def __init__(
        self,
        store: UserStore,
        verify: VerifyClient,
        settings: UsersSettings,
        *,
        seed: bool,
        proxy_hops: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(store, [verify], seed=seed)
        self._store = store
        self._clock = clock
        self._proxy_hops = proxy_hops
        self.service = UsersService(
            store, verify, clock, verifications_per_day=settings.verifications_per_day
        )

    async def seed(self) -> None:
        """The original sample's four users (without tokens: `clave user token` issues one)."""
        await self._store.seed(SEED, now=self._clock())

    def route_handlers(self) -> Sequence[ControllerRouterHandler]:
        """The users routes."""
        return [api.router(self.service, proxy_hops=self._proxy_hops)]

    @property
    def openapi_errors(self) -> ErrorTable:
        """The statuses its routes answer beyond the rules (for /openapi.json)."""
        return api.OPENAPI_ERRORS

    def lean_routes(self) -> Sequence[LeanRoute]:
        """The users list, answered without the framework's per-request work."""
        return api.lean_routes(self.service)


async def prepare_store(url: str, data_dir: Path, *, seed: bool) -> None:
    """Migrate (and seed) the store once, before worker processes start."""
    if url != "memory":
        await prepare_seeded(build_store(url, data_dir), SEED, seed=seed)


async def issue_user_token(url: str, data_dir: Path, user_id: int) -> str:
    """An operator's new token for a user (the seeded ones have none), replacing any it had."""
    if url == "memory":
        raise SettingsError("CLAVE_USERS_DB=memory lives inside the serving process only")
    store = build_store(url, data_dir)
    await store.open()
    try:
        token = await issue_token(store, user_id) if 1 <= user_id <= 2**53 else None
    finally:
        await store.close()
    if token is None:
        raise UserNotFound(f"no user with id {user_id}")
    return token
