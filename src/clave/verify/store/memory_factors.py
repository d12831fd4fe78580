"""Authenticator-app factors in memory: the FactorStore half of MemoryVerificationStore
(nothing awaits between a read and its write: each operation is atomic on one event loop)."""

from __future__ import annotations

from dataclasses import replace

from clave.verify.factor_models import Challenge, Entity, Factor, FactorStatus, Sealed


class MemoryFactors:
    """FactorStore on dictionaries; `_raise` records an event (the store's)."""

    _factors: dict[str, Factor]
    _entities: dict[tuple[str, str], Entity]
    _challenges: dict[str, Challenge]

    def _raise(self, kind: str, subject_id: str, tenant_id: str, now: float) -> None:
        raise NotImplementedError  # MemoryVerificationStore's

    async def add_factor(self, factor: Factor) -> None:
        """Store a new factor."""
        self._factors[factor.id] = factor

    async def get_factor(self, tenant_id: str, factor_id: str) -> Factor | None:
        """A factor of the tenant."""
        found = self._factors.get(factor_id)
        return found if found is not None and found.tenant_id == tenant_id else None

    async def list_factors(self, tenant_id: str, entity: str) -> list[Factor]:
        """The entity's factors, oldest first."""
        mine = (f for f in self._factors.values() if (f.tenant_id, f.entity) == (tenant_id, entity))
        return sorted(mine, key=lambda f: (f.created_at, f.id))

    async def delete_factor(self, tenant_id: str, factor_id: str) -> bool:
        """Delete a factor of the tenant."""
        if await self.get_factor(tenant_id, factor_id) is None:
            return False
        del self._factors[factor_id]
        return True

    async def accept_step(
        self, tenant_id: str, factor_id: str, step: int, *, now: float, event: str
    ) -> Factor | None:
        """Accept a newer step (nothing awaits in between: atomic on one event loop)."""
        found = await self.get_factor(tenant_id, factor_id)
        if found is None or step <= found.last_step:
            return None
        changed = replace(found, last_step=step, status=FactorStatus.VERIFIED, updated_at=now)
        self._factors[factor_id] = changed
        self._raise(event, factor_id, tenant_id, now)
        return changed

    async def record_factor_event(
        self, tenant_id: str, factor_id: str, event: str, *, now: float
    ) -> None:
        """Record `event` about the factor."""
        self._raise(event, factor_id, tenant_id, now)

    async def all_factors(self) -> list[Factor]:
        """Every factor."""
        return sorted(self._factors.values(), key=lambda f: (f.created_at, f.id))

    async def add_entity(self, entity: Entity) -> Entity:
        """Store the entity, or answer the one of its identity."""
        return self._entities.setdefault((entity.tenant_id, entity.identity), entity)

    async def get_entity(self, tenant_id: str, identity: str) -> Entity | None:
        """The tenant's entity of that identity."""
        return self._entities.get((tenant_id, identity))

    async def list_entities(self, tenant_id: str) -> list[Entity]:
        """The tenant's entities, oldest first."""
        mine = (e for (t, _), e in self._entities.items() if t == tenant_id)
        return sorted(mine, key=lambda e: (e.created_at, e.sid))

    async def delete_entity(self, tenant_id: str, identity: str) -> bool:
        """Delete the entity, its factors and its challenges."""
        if self._entities.pop((tenant_id, identity), None) is None:
            return False
        for f in [
            f for f in self._factors.values() if (f.tenant_id, f.entity) == (tenant_id, identity)
        ]:
            del self._factors[f.id]
        for c in [
            c
            for c in self._challenges.values()
            if (c.tenant_id, c.identity) == (tenant_id, identity)
        ]:
            del self._challenges[c.sid]
        return True

    async def add_challenge(self, challenge: Challenge) -> None:
        """Keep the challenge."""
        self._challenges[challenge.sid] = challenge

    async def get_challenge(self, tenant_id: str, sid: str) -> Challenge | None:
        """A challenge of the tenant."""
        found = self._challenges.get(sid)
        return found if found is not None and found.tenant_id == tenant_id else None

    async def list_challenges(self, tenant_id: str, identity: str) -> list[Challenge]:
        """The entity's challenges, newest first."""
        mine = (
            c
            for c in self._challenges.values()
            if (c.tenant_id, c.identity) == (tenant_id, identity)
        )
        return sorted(mine, key=lambda c: (c.created_at, c.sid), reverse=True)

    async def replace_secret(self, factor: Factor, secret: Sealed) -> bool:
        """Swap the sealed secret if it is still the one read."""
        found = self._factors.get(factor.id)
        if found is None or found.secret != factor.secret:
            return False
        self._factors[factor.id] = replace(found, secret=secret)
        return True
