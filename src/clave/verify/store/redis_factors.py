"""Authenticator-app factors in Redis: the FactorStore half of RedisVerificationStore.

`factor:<id>` is a factor's hash (its secret only sealed); `factors:<tenant id>:<entity>` the
set of an entity's factor ids. accept_step.lua and replace_secret.lua change a factor
atomically.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from clave.platform.errors import StoreError
from clave.verify.factor_models import Challenge, Entity, Factor, FactorStatus, Sealed
from clave.verify.store import redis_codec as codec
from clave.verify.store.redis_connection import RedisConnection
from clave.verify.totp import TotpSettings


def _factor(factor_id: str, fields: Mapping[Any, Any]) -> Factor:
    f = {codec.text(k): v for k, v in fields.items()}
    return Factor(
        id=factor_id,
        tenant_id=codec.text(f["tenant_id"]),
        entity=codec.text(f["entity"]),
        friendly_name=codec.text(f["friendly_name"]),
        status=FactorStatus(codec.text(f["status"])),
        secret=Sealed(codec.text(f["key_id"]), bytes(f["nonce"]), bytes(f["secret"])),
        totp=TotpSettings(
            time_step=int(f["time_step"]), code_length=int(f["code_length"]), skew=int(f["skew"])
        ),
        last_step=int(f["last_step"]),
        created_at=float(f["created_at"]),
        updated_at=float(f["updated_at"]),
    )


class RedisFactors(RedisConnection):
    """FactorStore on `factor:*` hashes and per-entity sets."""

    _events: bool

    def _entity_key(self, tenant_id: str, entity: str) -> str:
        return f"{self._prefix}factors:{tenant_id}:{entity}"

    async def add_factor(self, factor: Factor) -> None:
        """Store a new factor and index it under its entity, in one transaction."""
        f = factor
        fields: dict[FieldT, EncodableT] = {
            "tenant_id": f.tenant_id,
            "entity": f.entity,
            "friendly_name": f.friendly_name,
            "status": f.status.value,
            "key_id": f.secret.key_id,
            "nonce": f.secret.nonce,
            "secret": f.secret.ciphertext,
            "time_step": f.totp.time_step,
            "code_length": f.totp.code_length,
            "skew": f.totp.skew,
            "last_step": f.last_step,
            "created_at": repr(f.created_at),
            "updated_at": repr(f.updated_at),
        }
        try:
            async with self._r().pipeline(transaction=True) as pipe:
                pipe.hset(self._prefix + "factor:" + f.id, mapping=fields)
                pipe.sadd(self._entity_key(f.tenant_id, f.entity), f.id)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc

    async def _load(self, factor_id: str) -> Factor | None:
        try:
            fields = await self._r().hgetall(self._prefix + "factor:" + factor_id)
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc
        return _factor(factor_id, fields) if fields else None

    async def get_factor(self, tenant_id: str, factor_id: str) -> Factor | None:
        """A factor of the tenant."""
        found = await self._load(factor_id)
        return found if found is not None and found.tenant_id == tenant_id else None

    async def list_factors(self, tenant_id: str, entity: str) -> list[Factor]:
        """The entity's factors, oldest first."""
        try:
            ids = await self._r().smembers(self._entity_key(tenant_id, entity))
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc
        found = [await self.get_factor(tenant_id, codec.text(i)) for i in ids]
        return sorted((f for f in found if f is not None), key=lambda f: (f.created_at, f.id))

    async def delete_factor(self, tenant_id: str, factor_id: str) -> bool:
        """Delete a factor of the tenant and its index entry."""
        found = await self.get_factor(tenant_id, factor_id)
        if found is None:
            return False
        try:
            async with self._r().pipeline(transaction=True) as pipe:
                pipe.delete(self._prefix + "factor:" + factor_id)
                pipe.srem(self._entity_key(tenant_id, found.entity), factor_id)
                deleted, _ = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc
        return bool(deleted)

    async def accept_step(
        self, tenant_id: str, factor_id: str, step: int, *, now: float, event: str
    ) -> Factor | None:
        """accept_step.lua, then the factor as it is now."""
        moved = await self._run("accept_step", tenant_id, factor_id, step, repr(now), event)
        return await self.get_factor(tenant_id, factor_id) if moved else None

    async def record_factor_event(
        self, tenant_id: str, factor_id: str, event: str, *, now: float
    ) -> None:
        """Add `event` to the events stream, when this store records events."""
        if not self._events:
            return
        fields = {"type": event, "vid": factor_id, "sid": tenant_id, "at": repr(now)}
        try:
            await self._r().xadd(self._prefix + "events", fields)  # type: ignore[arg-type]
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc

    async def all_factors(self) -> list[Factor]:
        """Every factor (a SCAN over `factor:*`)."""
        found = []
        try:
            async for key in self._r().scan_iter(match=self._prefix + "factor:*", count=500):
                factor = await self._load(codec.text(key)[len(self._prefix) + len("factor:") :])
                if factor is not None:
                    found.append(factor)
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc
        return sorted(found, key=lambda f: (f.created_at, f.id))

    async def replace_secret(self, factor: Factor, secret: Sealed) -> bool:
        """replace_secret.lua."""
        old = factor.secret
        return bool(
            await self._run(
                "replace_secret",
                factor.id,
                old.key_id,
                old.nonce,
                old.ciphertext,
                secret.key_id,
                secret.nonce,
                secret.ciphertext,
            )
        )

    async def add_entity(self, entity: Entity) -> Entity:
        """add_entity.lua: the entity of the identity as stored."""
        e = entity
        sid, created = await self._run(
            "add_entity", e.tenant_id, e.identity, e.sid, repr(e.created_at)
        )
        return Entity(codec.text(sid), e.tenant_id, e.identity, float(created))

    async def get_entity(self, tenant_id: str, identity: str) -> Entity | None:
        """The tenant's entity of that identity."""
        try:
            sid, created = await self._r().hmget(
                f"{self._prefix}entity:{tenant_id}:{identity}", ["sid", "created_at"]
            )
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc
        if not sid or created is None:
            return None
        return Entity(codec.text(sid), tenant_id, identity, float(created))

    async def list_entities(self, tenant_id: str) -> list[Entity]:
        """The tenant's entities, oldest first."""
        try:
            names = await self._r().zrange(f"{self._prefix}entities:{tenant_id}", 0, -1)
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc
        found = [await self.get_entity(tenant_id, codec.text(n)) for n in names]
        return sorted((e for e in found if e), key=lambda e: (e.created_at, e.sid))

    async def delete_entity(self, tenant_id: str, identity: str) -> bool:
        """delete_entity.lua."""
        return bool(await self._run("delete_entity", tenant_id, identity))

    async def add_challenge(self, challenge: Challenge) -> None:
        """The challenge's hash, indexed under its entity by time."""
        c = challenge
        fields: dict[FieldT, EncodableT] = {
            "tenant_id": c.tenant_id,
            "identity": c.identity,
            "factor_id": c.factor_id,
            "status": c.status,
            "created_at": repr(c.created_at),
            "updated_at": repr(c.updated_at),
        }
        index = f"{self._prefix}challenges:{c.tenant_id}:{c.identity}"
        try:
            async with self._r().pipeline(transaction=True) as pipe:
                pipe.hset(self._prefix + "challenge:" + c.sid, mapping=fields)
                pipe.zadd(index, {c.sid: c.created_at})
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc

    async def get_challenge(self, tenant_id: str, sid: str) -> Challenge | None:
        """A challenge of the tenant."""
        try:
            raw = await self._r().hgetall(self._prefix + "challenge:" + sid)
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc
        f = {codec.text(k): codec.text(v) for k, v in raw.items()}
        if f.get("tenant_id") != tenant_id:
            return None
        return Challenge(
            sid,
            tenant_id,
            f["identity"],
            f["factor_id"],
            f["status"],
            float(f["created_at"]),
            float(f["updated_at"]),
        )

    async def list_challenges(self, tenant_id: str, identity: str) -> list[Challenge]:
        """The entity's challenges, newest first."""
        index = f"{self._prefix}challenges:{tenant_id}:{identity}"
        try:
            sids = await self._r().zrevrange(index, 0, -1)
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc
        found = [await self.get_challenge(tenant_id, codec.text(s)) for s in sids]
        return sorted((c for c in found if c), key=lambda c: (c.created_at, c.sid), reverse=True)
