"""The Redis connection verify's store runs on: its Lua scripts, loaded once, and errors wrapped."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from clave.platform.errors import StoreError
from clave.platform.redis_scripts import ScriptConnection, ScriptError
from clave.platform.urls import redacted
from clave.verify.errors import TenantNameTaken

# Each operation is one Lua script (store/lua/), run as the listed files joined: shared
# definitions first. Scripts that restate a rule of the state machine name the function of
# models.py they mirror in their first line.
_SCRIPTS = {
    "start": ("prelude", "start"),
    "count_check": ("prelude", "count_check"),
    "transition": ("prelude", "transition"),
    "get": ("prelude", "get"),
    "find_pending": ("prelude", "find_pending"),
    "latest_sent": ("prelude", "latest_sent"),
    "claim": ("prelude", "take", "claim"),
    "finish": ("prelude", "fail_if_all_failed", "finish"),
    "report": ("prelude", "fail_if_all_failed", "report"),
    "retry": ("prelude", "retry"),
    "expire_due": ("prelude", "expire_due"),
    "claim_events": ("take", "claim_events"),
    "finish_event": ("finish_event",),
    "put_service": ("put_service",),
    "delete_service": ("delete_service",),
    "change_service": ("change_service",),
    "accept_step": ("accept_step",),
    "replace_secret": ("replace_secret",),
    "add_entity": ("add_entity",),
    "delete_entity": ("delete_entity",),
    "key_for_hash": ("key_for_hash",),
    "add_key": ("add_key",),
    "revoke_key": ("revoke_key",),
    "touch_key": ("touch_key",),
    "adopt_legacy_key": ("adopt_legacy_key",),
    "counters_hit": ("counters_hit",),
    "counters_release": ("counters_release",),
    "counters_distinct": ("counters_distinct",),
}


@functools.cache
def script(name: str) -> str:
    """The Lua source of one operation, from the package's `lua/` files."""
    folder = resources.files("clave.verify.store") / "lua"
    try:
        return "\n".join((folder / f"{part}.lua").read_text() for part in _SCRIPTS[name])
    except FileNotFoundError as exc:  # a packaging mistake: say so rather than fail later
        raise StoreError(f"clave's Lua script {exc.filename} is not installed") from exc


class RedisConnection:
    """A client for the few plain commands, and `_run` to call one of the scripts, in one
    round trip on the pipelined connection every operation shares (platform/redis_scripts)."""

    def __init__(self, url: str, *, prefix: str = "clave:") -> None:
        self._url = url
        self._prefix = prefix
        self._redis: aioredis.Redis | None = None
        self._scripts: ScriptConnection | None = None

    def _r(self) -> aioredis.Redis:
        if self._redis is None:
            raise StoreError("the Redis store is not open")
        return self._redis

    async def open(self) -> None:
        """Connect, register the scripts, and prepare the keys (`_prepare`)."""
        if self._redis is not None:
            return
        client = aioredis.Redis.from_url(
            self._url,
            decode_responses=False,
            socket_timeout=5,
            socket_connect_timeout=5,
            health_check_interval=30,
        )
        self._redis = client
        try:
            self._scripts = ScriptConnection(self._url, {name: script(name) for name in _SCRIPTS})
            await self._prepare(client)
        except BaseException as exc:
            # Half open is never left behind: the next open() starts again.
            scripts, self._redis, self._scripts = self._scripts, None, None
            await client.aclose()
            if scripts is not None:
                await scripts.close()
            if isinstance(exc, ResponseError):
                raise StoreError(f"Redis: {exc}") from exc
            if isinstance(exc, RedisError | OSError):
                raise StoreError(f"cannot reach Redis at {redacted(self._url)}: {exc}") from exc
            raise

    async def _prepare(self, redis: aioredis.Redis) -> None:
        """What a store needs in place before its first operation (nothing here)."""

    async def close(self) -> None:
        """Disconnect."""
        client, self._redis = self._redis, None
        scripts, self._scripts = self._scripts, None
        if client is not None:
            await client.aclose()
        if scripts is not None:
            await scripts.close()

    async def ping(self) -> None:
        """PING."""
        try:
            await self._r().ping()
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc

    async def _run(self, script: str, *args: Any) -> Any:
        if self._scripts is None:
            raise StoreError("the Redis store is not open")
        try:
            return await self._scripts.call(script, (), (self._prefix, *args))
        except ScriptError as exc:
            if "service name taken" in str(exc):
                raise TenantNameTaken("service name is taken") from exc
            raise StoreError(f"Redis: {exc}") from exc
