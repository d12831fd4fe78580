"""The FactorStore port on every backend: factors scoped to their tenant, a time step accepted
once under concurrency, a secret replaced only if unchanged."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from clave.verify.factor_models import Challenge, Entity, Factor, FactorStatus, Sealed
from clave.verify.models import Tenant, new_id
from clave.verify.store.base import VerifyBackend
from clave.verify.totp import TotpSettings
from tests.contract.test_verification_store import NOW, service


def factor(svc: Tenant, entity: str = "user-1", at: float = NOW) -> Factor:
    return Factor(
        id=new_id("YF"),
        tenant_id=svc.id,
        entity=entity,
        friendly_name="Ana's phone",
        status=FactorStatus.UNVERIFIED,
        secret=Sealed("k1", b"\x00\x01" * 6, b"\xff\x00sealed\x80" * 4),
        totp=TotpSettings(time_step=30, code_length=6, skew=1),
        created_at=at,
        updated_at=at,
    )


async def test_factors_belong_to_their_tenant(store: VerifyBackend) -> None:
    shop, other = service("shop"), service("other")
    await store.put_tenant(shop)
    await store.put_tenant(other)
    first, second = factor(shop), factor(shop, at=NOW + 1)
    elsewhere = factor(shop, entity="user-2")
    for f in (second, first, elsewhere):
        await store.add_factor(f)
    assert await store.get_factor(shop.id, first.id) == first
    assert await store.get_factor(other.id, first.id) is None
    assert await store.list_factors(shop.id, "user-1") == [first, second]
    assert await store.list_factors(other.id, "user-1") == []
    assert await store.delete_factor(other.id, first.id) is False
    assert await store.delete_factor(shop.id, first.id) is True
    assert await store.delete_factor(shop.id, first.id) is False
    assert await store.list_factors(shop.id, "user-1") == [second]
    assert {f.id for f in await store.all_factors()} == {second.id, elsewhere.id}


async def test_a_step_is_accepted_once_even_at_once(store: VerifyBackend) -> None:
    shop = service()
    await store.put_tenant(shop)
    f = factor(shop)
    await store.add_factor(f)
    results = await asyncio.gather(
        *(store.accept_step(shop.id, f.id, 1000, now=NOW + 5, event="x") for _ in range(20))
    )
    accepted = [r for r in results if r is not None]
    assert len(accepted) == 1
    assert (accepted[0].last_step, accepted[0].status, accepted[0].updated_at) == (
        1000,
        FactorStatus.VERIFIED,
        NOW + 5,
    )
    assert await store.accept_step(shop.id, f.id, 999, now=NOW, event="x") is None  # older
    assert await store.accept_step(shop.id, f.id, 1001, now=NOW, event="x") is not None
    assert await store.accept_step(new_id("VA"), f.id, 2000, now=NOW, event="x") is None
    stored = await store.get_factor(shop.id, f.id)
    assert stored is not None
    assert stored.last_step == 1001


async def test_a_secret_is_replaced_only_if_unchanged(store: VerifyBackend) -> None:
    shop = service()
    await store.put_tenant(shop)
    f = factor(shop)
    await store.add_factor(f)
    rekeyed = Sealed("k2", b"\x02" * 12, b"\x01\x00new\xfe" * 4)
    assert await store.replace_secret(f, rekeyed) is True
    assert await store.replace_secret(f, Sealed("k3", b"\x03" * 12, b"x")) is False  # stale
    stored = await store.get_factor(shop.id, f.id)
    assert stored == replace(f, secret=rekeyed)


async def test_entities_and_challenges(store: VerifyBackend) -> None:
    shop, other = service("shop"), service("other")
    await store.put_tenant(shop)
    await store.put_tenant(other)
    ana = Entity(new_id("YE"), shop.id, "user-1", NOW)
    assert await store.add_entity(ana) == ana
    again = Entity(new_id("YE"), shop.id, "user-1", NOW + 5)
    assert await store.add_entity(again) == ana  # one entity per identity
    bob = await store.add_entity(Entity(new_id("YE"), shop.id, "user-2", NOW + 1))
    assert await store.get_entity(shop.id, "user-1") == ana
    assert await store.get_entity(other.id, "user-1") is None
    assert await store.list_entities(shop.id) == [ana, bob]
    f = factor(shop)
    await store.add_factor(f)
    first = Challenge(new_id("YC"), shop.id, "user-1", f.id, "pending", NOW, NOW)
    second = Challenge(new_id("YC"), shop.id, "user-1", f.id, "approved", NOW + 1, NOW + 1)
    for c in (first, second):
        await store.add_challenge(c)
    assert await store.get_challenge(shop.id, first.sid) == first
    assert await store.get_challenge(other.id, first.sid) is None
    assert await store.list_challenges(shop.id, "user-1") == [second, first]
    assert await store.delete_entity(other.id, "user-1") is False
    assert await store.delete_entity(shop.id, "user-1") is True
    assert await store.get_entity(shop.id, "user-1") is None
    assert await store.get_factor(shop.id, f.id) is None  # its factors went with it
    assert await store.list_challenges(shop.id, "user-1") == []
    assert await store.list_entities(shop.id) == [bob]
