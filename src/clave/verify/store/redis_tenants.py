"""Tenants, their API keys and the safe list in Redis: the TenantStore and SafeList half of
RedisVerificationStore."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Collection
from dataclasses import replace
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from clave.platform.errors import StoreError
from clave.verify.models import ApiKey, SafeNumber, Tenant, new_id
from clave.verify.store import redis_codec as codec
from clave.verify.store.encoding import encode_policy, legacy_fields
from clave.verify.store.redis_connection import RedisConnection

# How many times a change of a tenant is tried against writers changing it at the same time.
_CHANGE_TRIES = 50


class RedisTenants(RedisConnection):
    """TenantStore: `svc:<id>` hashes, `svc-names`, `apikey:<id>` and `key:<hash>`."""

    async def _prepare(self, redis: aioredis.Redis) -> None:
        """Adopt keys stored before key life cycles."""
        await super()._prepare(redis)
        await self._adopt_legacy_keys()

    async def put_tenant(self, tenant: Tenant) -> None:
        """Insert or update by id; names are unique."""
        await self._run(
            "put_service",
            tenant.id,
            tenant.name,
            "policy",
            encode_policy(tenant.policy),
            "created_at",
            repr(tenant.created_at),
            "accounts",
            ",".join(sorted(tenant.accounts)),
            "updated_at",
            repr(tenant.updated_at) if tenant.updated_at is not None else "",
            *(item for pair in legacy_fields(tenant.policy).items() for item in pair),
        )

    async def change_tenant(
        self, tenant_id: str, change: Callable[[Tenant], Tenant]
    ) -> Tenant | None:
        """Read, change, and compare-and-set the policy and accounts (change_service.lua);
        read again and retry while another writer got there first."""
        for attempt in range(_CHANGE_TRIES):
            try:
                fields = await self._r().hgetall(self._prefix + "svc:" + tenant_id)
            except (RedisError, OSError) as exc:
                raise StoreError(f"Redis unavailable: {exc}") from exc
            if not fields:
                return None
            raw = {codec.text(k): v for k, v in fields.items()}
            found = codec.tenant(raw | {"id": tenant_id})
            changed = replace(
                found,
                policy=(new := change(found)).policy,
                accounts=new.accounts,
                updated_at=new.updated_at,
            )
            written = await self._run(
                "change_service",
                tenant_id,
                raw.get("policy", b""),
                raw.get("accounts", b""),
                "policy",
                encode_policy(changed.policy),
                "accounts",
                ",".join(sorted(changed.accounts)),
                "updated_at",
                repr(changed.updated_at) if changed.updated_at is not None else "",
                *(item for pair in legacy_fields(changed.policy).items() for item in pair),
            )
            if written == 1:
                return changed
            if written == -1:
                return None
            # Lost the race: let the others through before reading again (a random pause,
            # so racers that lost together do not meet again).
            await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # noqa: S311
        raise StoreError(f"service {tenant_id} is being changed by others; try again")

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        """A tenant by id."""
        try:
            fields = await self._r().hgetall(self._prefix + "svc:" + tenant_id)
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc
        if not fields:
            return None
        return codec.tenant({codec.text(k): v for k, v in fields.items()} | {"id": tenant_id})

    async def get_tenant_by_name(self, name: str) -> Tenant | None:
        """A tenant by name."""
        try:
            sid = await self._r().hget(self._prefix + "svc-names", name)
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc
        return await self.get_tenant(codec.text(sid)) if sid else None

    async def list_tenants(self) -> list[Tenant]:
        """Every tenant, by name."""
        try:
            names = await self._r().hgetall(self._prefix + "svc-names")
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc
        found = [await self.get_tenant(codec.text(sid)) for _, sid in sorted(names.items())]
        return [s for s in found if s is not None]

    async def delete_tenant(self, tenant_id: str) -> bool:
        """Delete a tenant; its keys stop resolving with it."""
        return bool(await self._run("delete_service", tenant_id))

    async def add_api_key(self, key: ApiKey) -> None:
        """Store the key; one round trip."""
        await self._run(
            "add_key",
            key.id,
            key.tenant_id,
            key.key_hash.hex(),
            repr(key.created_at),
            key.name,
            repr(key.expires_at) if key.expires_at is not None else "",
        )

    async def key_for_hash(self, key_hash: bytes) -> tuple[ApiKey, Tenant] | None:
        """See TenantStore.key_for_hash; one round trip."""
        found = await self._run("key_for_hash", key_hash.hex())
        if not found:
            return None
        key_fields, tenant_fields = codec.pairs(found[0]), codec.pairs(found[1])
        return codec.api_key(codec.text(key_fields["id"]), key_fields), codec.tenant(tenant_fields)

    async def list_api_keys(self, tenant_id: str | None = None) -> list[ApiKey]:
        """See TenantStore.list_api_keys."""
        try:
            r = self._r()
            ids = [codec.text(i) for i in await r.zrange(self._prefix + "apikeys", 0, -1)]
            async with r.pipeline(transaction=False) as pipe:
                for key_id in ids:
                    pipe.hgetall(self._prefix + "apikey:" + key_id)
                rows = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc
        keys = [
            codec.api_key(key_id, {codec.text(k): v for k, v in row.items()})
            for key_id, row in zip(ids, rows, strict=True)
            if row
        ]
        return [k for k in keys if tenant_id in (None, k.tenant_id)]

    async def revoke_api_key(self, key_id: str, *, now: float) -> bool:
        """See TenantStore.revoke_api_key."""
        return bool(int(await self._run("revoke_key", key_id, repr(now))))

    async def touch_api_key(self, key_id: str, *, now: float) -> None:
        """See TenantStore.touch_api_key."""
        await self._run("touch_key", key_id, repr(now))

    async def _adopt_legacy_keys(self) -> None:
        """Give keys stored before key life cycles a record: once per store (idempotent, so
        workers starting together do no harm)."""
        r = self._r()
        done = self._prefix + "keys-adopted"
        if await r.exists(done):
            return
        async for name in r.scan_iter(match=self._prefix + "key:*", count=500):
            key_hash = codec.text(name).removeprefix(self._prefix + "key:")
            await self._run("adopt_legacy_key", key_hash, new_id("SK"), repr(time.time()))
        await r.set(done, "1")

    def _safe_key(self, owner: str) -> str:
        return f"{self._prefix}safe:{owner}"

    async def add_safe_number(self, entry: SafeNumber) -> SafeNumber:
        """See SafeList.add_safe_number (HSETNX: the first listing stays)."""
        value = f"{entry.sid}|{entry.created_at!r}"
        try:
            await self._r().hsetnx(self._safe_key(entry.owner), entry.number, value)
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc
        listed = await self.get_safe_number(entry.owner, entry.number)
        return listed if listed is not None else entry

    async def get_safe_number(self, owner: str, number: str) -> SafeNumber | None:
        """See SafeList.get_safe_number."""
        try:
            value = await self._r().hget(self._safe_key(owner), number)
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc
        return None if value is None else _safe_number(owner, number, value)

    async def remove_safe_number(self, owner: str, number: str) -> bool:
        """See SafeList.remove_safe_number."""
        try:
            return bool(await self._r().hdel(self._safe_key(owner), number))
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc

    async def list_safe_numbers(self, owner: str) -> list[SafeNumber]:
        """See SafeList.list_safe_numbers."""
        try:
            entries = await self._r().hgetall(self._safe_key(owner))
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc
        found = [_safe_number(owner, codec.text(n), v) for n, v in entries.items()]
        return sorted(found, key=lambda e: e.number)

    async def is_safe(self, owners: Collection[str], number: str) -> bool:
        """See SafeList.is_safe: one round trip for every owner."""
        try:
            async with self._r().pipeline(transaction=False) as pipe:
                for owner in owners:
                    pipe.hexists(self._safe_key(owner), number)
                found = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc
        return any(found)


def _safe_number(owner: str, number: str, value: Any) -> SafeNumber:
    sid, _, created = codec.text(value).partition("|")
    return SafeNumber(sid=sid, owner=owner, number=number, created_at=float(created))
