"""Authenticator-app factors (TOTP): enroll, confirm with a first code, challenge, list,
delete, and rekey their secrets. Possession proved with no message sent.

Rules, the way the one-time codes keep them:
- the secret is random (totp.new_secret), shown once at enrollment, stored only sealed under
  AES-256-GCM (sealing.py) and bound to its factor;
- a failed code is counted against the factor's budget before the comparison
  (CLAVE_LIMIT_FAILED_TOTP, exact over its window), and a right one gives its count back;
- a code is accepted once: its time step must be newer than the last accepted one, which the
  store moves atomically (the same code twice, even at once on two workers, approves once);
- every step of the skew window is compared in constant time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from clave.verify.errors import FactorNotFound, InvalidParameter
from clave.verify.factor_models import (
    ENTITY_PATTERN,
    MAX_ENTITY_LENGTH,
    MAX_FACTOR_NAME_LENGTH,
    Challenge,
    Entity,
    Factor,
    FactorStatus,
)
from clave.verify.models import Tenant, new_id, valid_friendly_name
from clave.verify.sealing import SecretBox
from clave.verify.store.base import FactorStore
from clave.verify.store.counters import CounterStore, Hit, Limit
from clave.verify.totp import TotpSettings, matching_step, new_secret, otpauth_uri

FACTOR_VERIFIED = "factor.verified"
CHALLENGE_APPROVED = "challenge.approved"
CHALLENGE_FAILED = "challenge.failed"


@dataclass(frozen=True, slots=True)
class Enrollment:
    """A new factor and what its user's app needs, shown this once."""

    factor: Factor
    secret: bytes
    uri: str


@dataclass(frozen=True, slots=True)
class ChallengeResult:
    """A challenge's outcome: approved, with the factor that approved it, or not."""

    approved: bool
    factor: Factor


_ENTITY = re.compile(ENTITY_PATTERN)


def valid_entity(entity: str) -> bool:
    """An entity is 1 to 128 characters, no control character among them."""
    return _ENTITY.fullmatch(entity) is not None


class Factors:
    """The factor use cases, for both HTTP faces."""

    def __init__(
        self,
        store: FactorStore,
        box: SecretBox,
        counters: CounterStore,
        clock: Callable[[], float],
        *,
        failed_limit: Limit,
    ) -> None:
        self._store = store
        self._box = box
        self._counters = counters
        self._clock = clock
        self._failed = failed_limit

    async def enroll(
        self, tenant: Tenant, entity: str, friendly_name: str, totp: TotpSettings
    ) -> Enrollment:
        """A new unverified TOTP factor for `entity`; its secret and `otpauth://` URI."""
        if not valid_entity(entity):
            raise InvalidParameter(
                f"entity must be 1 to {MAX_ENTITY_LENGTH} letters and digits in groups joined "
                "by '-' or '_'"
            )
        if len(friendly_name) > MAX_FACTOR_NAME_LENGTH or not valid_friendly_name(friendly_name):
            raise InvalidParameter(
                f"friendly_name must be 1 to {MAX_FACTOR_NAME_LENGTH} characters on one line"
            )
        problems = totp.problems()
        if problems:
            raise InvalidParameter("; ".join(problems))
        factor_id, now, secret = new_id("YF"), self._clock(), new_secret()
        factor = Factor(
            id=factor_id,
            tenant_id=tenant.id,
            entity=entity,
            friendly_name=friendly_name,
            status=FactorStatus.UNVERIFIED,
            secret=self._box.seal(secret, bound_to=factor_id),
            totp=totp,
            created_at=now,
            updated_at=now,
        )
        await self._store.add_entity(Entity(new_id("YE"), tenant.id, entity, now))
        await self._store.add_factor(factor)
        # The app lists it under the service's name and the factor's (Twilio's label too).
        uri = otpauth_uri(
            secret, issuer=tenant.policy.friendly_name, account=friendly_name, settings=totp
        )
        return Enrollment(factor, secret, uri)

    async def get(self, tenant: Tenant, factor_id: str) -> Factor:
        """A factor of the tenant; FactorNotFound otherwise."""
        found = await self._store.get_factor(tenant.id, factor_id) if factor_id else None
        if found is None:
            raise FactorNotFound(f"no factor {factor_id}")
        return found

    async def of_entity(self, tenant: Tenant, entity: str) -> list[Factor]:
        """The entity's factors, oldest first."""
        if not valid_entity(entity):
            raise InvalidParameter(
                f"entity must be 1 to {MAX_ENTITY_LENGTH} letters and digits in groups joined "
                "by '-' or '_'"
            )
        return await self._store.list_factors(tenant.id, entity)

    async def delete(self, tenant: Tenant, factor_id: str) -> None:
        """Delete a factor; FactorNotFound when there is none."""
        if not await self._store.delete_factor(tenant.id, factor_id):
            raise FactorNotFound(f"no factor {factor_id}")

    async def confirm(self, tenant: Tenant, factor_id: str, code: str) -> ChallengeResult:
        """Verify an unverified factor with a first code from its app."""
        factor = await self.get(tenant, factor_id)
        # A factor verified already is only challenged (it is not verified again).
        event = FACTOR_VERIFIED if factor.status is FactorStatus.UNVERIFIED else CHALLENGE_APPROVED
        return await self._prove(tenant, [factor], code, event)

    async def challenge(
        self, tenant: Tenant, code: str, *, factor_id: str | None, entity: str | None
    ) -> ChallengeResult:
        """Check `code` against the factor, or against every verified factor of the entity
        (any one of them approves). Only verified factors take challenges."""
        if (factor_id is None) == (entity is None):
            raise InvalidParameter("give exactly one of factor_id and entity")
        if factor_id is not None:
            candidates = [await self.get(tenant, factor_id)]
        else:
            candidates = await self.of_entity(tenant, entity or "")
        verified = [f for f in candidates if f.status is FactorStatus.VERIFIED]
        if not verified:
            raise FactorNotFound("no verified factor to challenge")
        return await self._prove(tenant, verified, code, CHALLENGE_APPROVED)

    async def _prove(
        self, tenant: Tenant, factors: list[Factor], code: str, event: str
    ) -> ChallengeResult:
        """Count a failure on each factor first, then compare; a match whose step is new
        approves (and gives the counts back); anything else stays counted."""
        now = self._clock()
        hits = [Hit(f"{self._failed.code}:{f.id}", self._failed) for f in factors]
        if self._failed.count > 0:
            refused = await self._counters.hit(hits, now)
            if refused is not None:
                limit, wait = refused
                raise limit.refuse(wait)
        for factor in factors:
            secret = self._box.open(factor.secret, bound_to=factor.id)
            step = matching_step(secret, code, now, factor.totp)
            if step is None:
                continue
            accepted = await self._store.accept_step(
                tenant.id, factor.id, step, now=now, event=event
            )
            if accepted is not None:
                if self._failed.count > 0:
                    await self._counters.release(hits, now)
                return ChallengeResult(True, accepted)
        for factor in factors:
            if factor.status is FactorStatus.VERIFIED:
                await self._store.record_factor_event(
                    tenant.id, factor.id, CHALLENGE_FAILED, now=now
                )
        return ChallengeResult(False, factors[0])

    # -- the Twilio API's entities and kept challenges --------------------------------------

    async def ensure_entity(self, tenant: Tenant, identity: str) -> Entity:
        """The identity's entity, created on first use."""
        if not valid_entity(identity):
            raise InvalidParameter("Invalid parameter: Identity")
        entity = Entity(new_id("YE"), tenant.id, identity, self._clock())
        return await self._store.add_entity(entity)

    async def entity(self, tenant: Tenant, identity: str) -> Entity:
        """The identity's entity; FactorNotFound when there is none."""
        found = await self._store.get_entity(tenant.id, identity)
        if found is None:
            raise FactorNotFound(f"no entity {identity!r}")
        return found

    async def entities(self, tenant: Tenant) -> list[Entity]:
        """The tenant's entities, oldest first."""
        return await self._store.list_entities(tenant.id)

    async def delete_entity(self, tenant: Tenant, identity: str) -> None:
        """Delete an entity with its factors and challenges."""
        if not await self._store.delete_entity(tenant.id, identity):
            raise FactorNotFound(f"no entity {identity!r}")

    async def kept_challenge(
        self, tenant: Tenant, identity: str, factor_id: str, code: str
    ) -> Challenge:
        """Challenge the entity's factor with `code`, and keep the outcome to be read back."""
        factor = await self.get(tenant, factor_id)
        if factor.entity != identity:
            raise FactorNotFound(f"no factor {factor_id} of {identity!r}")
        result = await self.challenge(tenant, code, factor_id=factor_id, entity=None)
        now = self._clock()
        status = "approved" if result.approved else "pending"
        kept = Challenge(new_id("YC"), tenant.id, identity, factor_id, status, now, now)
        await self._store.add_challenge(kept)
        return kept

    async def challenges(self, tenant: Tenant, identity: str) -> list[Challenge]:
        """The entity's kept challenges, newest first."""
        return await self._store.list_challenges(tenant.id, identity)

    async def kept(self, tenant: Tenant, sid: str) -> Challenge:
        """A kept challenge; FactorNotFound when there is none."""
        found = await self._store.get_challenge(tenant.id, sid)
        if found is None:
            raise FactorNotFound(f"no challenge {sid}")
        return found

    async def rekey(self) -> tuple[int, int]:
        """Seal every factor's secret under the newest key: (rekeyed, already current)."""
        done = current = 0
        for factor in await self._store.all_factors():
            sealed = self._box.rekeyed(factor.secret, bound_to=factor.id)
            if sealed is None:
                current += 1
            elif await self._store.replace_secret(factor, sealed):
                done += 1
        return done, current
