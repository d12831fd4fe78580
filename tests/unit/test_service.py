from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace

import pytest

from clave.verify.codes import CodeHasher
from clave.verify.delivery.base import ProviderRouter
from clave.verify.delivery.dispatcher import Dispatcher, OutboxPolicy
from clave.verify.delivery.inbox import InboxProvider, MemoryInboxStore
from clave.verify.errors import (
    ChannelNotAllowed,
    ChannelUnavailable,
    InvalidParameter,
    MaxChecksReached,
    MaxSendsReached,
    RateLimited,
    TenantNameTaken,
    Unauthorized,
    VerificationNotFound,
    VerificationNotPending,
)
from clave.verify.models import Channel, Policy, Status, Tenant
from clave.verify.requests import StartRequest
from clave.verify.service import VerifyService
from clave.verify.store.memory import MemoryVerificationStore
from clave.verify.tenants import Tenants
from tests.support import FakeClock, code_in

PHONE = "+14155552671"


@dataclass
class World:
    clock: FakeClock
    store: MemoryVerificationStore
    inbox: MemoryInboxStore
    verify: VerifyService
    tenants: Tenants
    dispatcher: Dispatcher
    service: Tenant

    async def code_for(self, to: str) -> str:
        await self.dispatcher.run_once()
        messages = await self.inbox.latest(to=to)
        assert messages, f"nothing delivered to {to}"
        return code_in(messages[0].text)

    def wrong(self, code: str) -> str:
        return str((int(code) + 1) % 10 ** len(code)).zfill(len(code))


async def make_world(
    clock: FakeClock, policy: Policy | None = None, channels: Iterable[Channel] = tuple(Channel)
) -> World:
    store = MemoryVerificationStore()
    inbox = MemoryInboxStore()
    providers = ProviderRouter({c: [InboxProvider(inbox)] for c in channels})
    hasher = CodeHasher({"k1": b"k" * 32}, active_key_id="k1")
    dispatcher = Dispatcher(store, hasher, providers, clock, OutboxPolicy())
    tenants = Tenants(store, clock)
    service = await tenants.create_tenant("acme", policy or Policy(friendly_name="Acme"))
    verify = VerifyService(store, hasher, providers, clock, on_queued=dispatcher.notify)
    return World(clock, store, inbox, verify, tenants, dispatcher, service)


@pytest.fixture
async def world(clock: FakeClock) -> World:
    return await make_world(clock)


async def test_send_then_check_right_code_approves_once(world: World) -> None:
    view, created = await world.verify.start_verification(
        world.service, StartRequest(to=PHONE, channel=Channel.SMS)
    )
    assert created
    assert view.status is Status.PENDING
    assert view.sends_left == 4
    assert view.check_attempts_left == 5
    code = await world.code_for(PHONE)

    result = await world.verify.check_code(world.service, code=code, to=PHONE)
    assert result.status is Status.APPROVED
    assert result.valid
    with pytest.raises(VerificationNotFound):
        await world.verify.check_code(world.service, code=code, to=PHONE)
    with pytest.raises(VerificationNotFound):
        await world.verify.check_code(
            world.service, code=code, verification_id=view.verification.id
        )


async def test_attempts_counted_before_compare_and_lock_after_max(world: World) -> None:
    view, _ = await world.verify.start_verification(
        world.service, StartRequest(to=PHONE, channel=Channel.SMS)
    )
    code = await world.code_for(PHONE)
    for left in (4, 3, 2, 1):
        result = await world.verify.check_code(world.service, code=world.wrong(code), to=PHONE)
        assert result.status is Status.PENDING
        assert result.check_attempts_left == left
    fifth = await world.verify.check_code(world.service, code=world.wrong(code), to=PHONE)
    assert fifth.status is Status.MAX_ATTEMPTS_REACHED
    assert fifth.check_attempts_left == 0
    # Even the right code is refused once locked.
    with pytest.raises(MaxChecksReached):
        await world.verify.check_code(
            world.service, code=code, verification_id=view.verification.id
        )
    read = await world.verify.get(world.service, view.verification.id)
    assert read.status is Status.MAX_ATTEMPTS_REACHED


async def test_right_code_on_the_last_attempt_approves(world: World) -> None:
    await world.verify.start_verification(
        world.service, StartRequest(to=PHONE, channel=Channel.SMS)
    )
    code = await world.code_for(PHONE)
    for _ in range(4):
        await world.verify.check_code(world.service, code=world.wrong(code), to=PHONE)
    result = await world.verify.check_code(world.service, code=code, to=PHONE)
    assert result.status is Status.APPROVED


async def test_resend_sends_the_same_code_until_the_window_is_full(world: World) -> None:
    first, _ = await world.verify.start_verification(
        world.service, StartRequest(to=PHONE, channel=Channel.SMS)
    )
    code = await world.code_for(PHONE)
    for left in (3, 2, 1, 0):
        world.clock.advance(10)
        again, created = await world.verify.start_verification(
            world.service, StartRequest(to=PHONE, channel=Channel.SMS)
        )
        assert not created
        assert again.verification.id == first.verification.id
        assert again.sends_left == left
        assert await world.code_for(PHONE) == code
    world.clock.advance(10)
    with pytest.raises(MaxSendsReached) as info:
        await world.verify.start_verification(
            world.service, StartRequest(to=PHONE, channel=Channel.SMS)
        )
    # The first send was 50 s ago in a 600 s window: it leaves the window in 550 s.
    assert info.value.retry_after == 550
    assert info.value.headers["Retry-After"] == "550"
    assert (
        len((await world.verify.get(world.service, first.verification.id)).verification.sends) == 5
    )


async def test_expiry_is_anchored_to_the_first_send(world: World) -> None:
    first, _ = await world.verify.start_verification(
        world.service, StartRequest(to=PHONE, channel=Channel.SMS)
    )
    code = await world.code_for(PHONE)
    world.clock.advance(500)
    again, _ = await world.verify.start_verification(
        world.service, StartRequest(to=PHONE, channel=Channel.SMS)
    )
    assert again.verification.expires_at == first.verification.expires_at
    world.clock.advance(101)
    with pytest.raises(VerificationNotFound):
        await world.verify.check_code(world.service, code=code, to=PHONE)
    read = await world.verify.get(world.service, first.verification.id)
    assert read.status is Status.EXPIRED


async def test_after_expiry_a_new_verification_gets_a_new_code(world: World) -> None:
    first, _ = await world.verify.start_verification(
        world.service, StartRequest(to=PHONE, channel=Channel.SMS)
    )
    world.clock.advance(601)
    second, created = await world.verify.start_verification(
        world.service, StartRequest(to=PHONE, channel=Channel.SMS)
    )
    assert created
    assert second.verification.id != first.verification.id


async def test_cancel_stops_the_code(world: World) -> None:
    view, _ = await world.verify.start_verification(
        world.service, StartRequest(to=PHONE, channel=Channel.SMS)
    )
    code = await world.code_for(PHONE)
    canceled = await world.verify.cancel(world.service, view.verification.id)
    assert canceled.status is Status.CANCELED
    with pytest.raises(VerificationNotFound):
        await world.verify.check_code(world.service, code=code, to=PHONE)
    with pytest.raises(VerificationNotPending):
        await world.verify.cancel(world.service, view.verification.id)


async def test_tenants_are_isolated(world: World) -> None:
    other = await world.tenants.create_tenant("other", Policy())
    view, _ = await world.verify.start_verification(
        world.service, StartRequest(to=PHONE, channel=Channel.SMS)
    )
    code = await world.code_for(PHONE)
    with pytest.raises(VerificationNotFound):
        await world.verify.get(other, view.verification.id)
    with pytest.raises(VerificationNotFound):
        await world.verify.check_code(other, code=code, to=PHONE)
    with pytest.raises(VerificationNotFound):
        await world.verify.check_code(other, code=code, verification_id=view.verification.id)


async def test_policy_and_providers_gate_channels(clock: FakeClock) -> None:
    world = await make_world(
        clock, Policy(channels=frozenset({Channel.SMS, Channel.CALL})), channels=(Channel.SMS,)
    )
    with pytest.raises(ChannelNotAllowed):
        await world.verify.start_verification(
            world.service, StartRequest(to="a@example.com", channel=Channel.EMAIL)
        )
    with pytest.raises(ChannelUnavailable):
        await world.verify.start_verification(
            world.service, StartRequest(to=PHONE, channel=Channel.CALL)
        )
    assert await world.store.pending_deliveries() == 0


async def test_invalid_inputs_are_refused_before_anything_is_stored(world: World) -> None:
    with pytest.raises(InvalidParameter):
        await world.verify.start_verification(
            world.service, StartRequest(to="12345", channel=Channel.SMS)
        )
    with pytest.raises(InvalidParameter):
        await world.verify.start_verification(
            world.service, StartRequest(to=PHONE, channel=Channel.SMS, locale="!!")
        )
    with pytest.raises(InvalidParameter):
        await world.verify.start_verification(
            world.service, StartRequest(to=PHONE, channel=Channel.SMS, code_length=3)
        )
    with pytest.raises(InvalidParameter):
        await world.verify.check_code(world.service, code="12ab56", to=PHONE)
    with pytest.raises(InvalidParameter):
        await world.verify.check_code(world.service, code="123456")
    assert await world.store.pending_deliveries() == 0


async def test_code_length_per_request(world: World) -> None:
    await world.verify.start_verification(
        world.service, StartRequest(to=PHONE, channel=Channel.SMS, code_length=8)
    )
    assert len(await world.code_for(PHONE)) == 8


async def test_a_taken_service_name_is_a_409_with_a_stable_code(world: World) -> None:
    with pytest.raises(TenantNameTaken) as taken:
        await world.tenants.create_tenant("acme", Policy())
    assert (taken.value.status, taken.value.code) == (409, "service_name_taken")
    # Two creations racing past the name check: the store refuses the second, typed too.
    twin = replace(world.service, id="VA" + "0" * 32)
    with pytest.raises(TenantNameTaken):
        await world.store.put_tenant(twin)


async def test_api_keys_authenticate_their_service_only(world: World) -> None:
    raw = await world.tenants.create_api_key("acme")
    assert (await world.tenants.authenticate(f"Bearer {raw}")).id == world.service.id
    for header in (None, "", raw, f"Basic {raw}", "Bearer wrong", "Bearer "):
        with pytest.raises(Unauthorized):
            await world.tenants.authenticate(header)
    stored = list(world.store._keys)
    assert raw.encode() not in b"".join(stored)


async def test_a_code_is_never_shorter_than_the_policy(clock: FakeClock) -> None:
    world = await make_world(clock, Policy(code_length=8, flags=frozenset({"custom_code"})))
    for length in (4, 7):
        with pytest.raises(InvalidParameter, match="8 to 10 digits"):
            await world.verify.start_verification(
                world.service, StartRequest(to=PHONE, channel=Channel.SMS, code_length=length)
            )
    with pytest.raises(InvalidParameter, match="8 to 10 digits"):
        await world.verify.start_verification(
            world.service, StartRequest(to=PHONE, channel=Channel.SMS, custom_code="1234567")
        )
    assert await world.store.pending_deliveries() == 0
    await world.verify.start_verification(
        world.service, StartRequest(to=PHONE, channel=Channel.SMS, code_length=10)
    )
    assert len(await world.code_for(PHONE)) == 10


async def test_a_resend_that_changes_what_the_code_means_starts_a_new_one(clock: FakeClock) -> None:
    world = await make_world(clock, Policy(flags=frozenset({"custom_code"})))
    first, _ = await world.verify.start_verification(
        world.service, StartRequest(to=PHONE, channel=Channel.SMS)
    )
    first_code = await world.code_for(PHONE)
    # Same terms (another channel, locale): the same verification, the same code.
    again, created = await world.verify.start_verification(
        world.service, StartRequest(to=PHONE, channel=Channel.CALL, locale="es")
    )
    assert (created, again.verification.id) == (False, first.verification.id)
    previous, codes = first, [first_code]
    for change in ({"code_length": 8}, {"custom_code": "24681357"}, {"friendly_name": "Bank"}):
        world.clock.advance(1)
        view, created = await world.verify.start_verification(
            world.service, StartRequest(to=PHONE, channel=Channel.SMS, **change)
        )
        assert created, change
        assert view.verification.id != previous.verification.id
        old = await world.verify.get(world.service, previous.verification.id)
        assert old.status is Status.CANCELED
        previous = view
        codes.append(await world.code_for(PHONE))
    assert len(codes[1]) == 8
    assert codes[2] == "24681357"
    assert "Bank" in (await world.inbox.latest(to=PHONE))[0].text
    assert len(set(codes)) == 4  # every new verification has a code of its own
    with pytest.raises(VerificationNotFound):
        await world.verify.check_code(
            world.service, code=first_code, verification_id=first.verification.id
        )


async def test_a_psd2_resend_with_other_terms_binds_a_new_code(clock: FakeClock) -> None:
    world = await make_world(clock, Policy(flags=frozenset({"psd2"})))
    first, _ = await world.verify.start_verification(
        world.service, StartRequest(to=PHONE, channel=Channel.SMS, payment=("1.00EUR", "Alice"))
    )
    first_code = await world.code_for(PHONE)
    second, created = await world.verify.start_verification(
        world.service,
        StartRequest(to=PHONE, channel=Channel.SMS, payment=("9999.00EUR", "Mallory")),
    )
    assert created
    await world.dispatcher.run_once()
    [message, *_] = await world.inbox.latest(to=PHONE)
    assert "9999.00EUR" in message.text
    assert "Mallory" in message.text
    second_code = code_in(message.text)
    with pytest.raises(VerificationNotFound):
        await world.verify.check_code(
            world.service,
            code=first_code,
            verification_id=first.verification.id,
            payment=("1.00EUR", "Alice"),
        )
    wrong_terms = await world.verify.check_code(
        world.service, code=second_code, to=PHONE, payment=("1.00EUR", "Alice")
    )
    assert wrong_terms.status is Status.PENDING
    approved = await world.verify.check_code(
        world.service, code=second_code, to=PHONE, payment=("9999.00EUR", "Mallory")
    )
    assert (approved.status, approved.verification.id) == (
        Status.APPROVED,
        second.verification.id,
    )


async def test_an_id_of_the_wrong_shape_never_reaches_the_store(world: World) -> None:
    calls: list[str] = []
    for name in ("get", "count_check", "transition"):
        real = getattr(world.store, name)

        async def spy(
            *args: object,
            _real: Callable[..., Awaitable[object]] = real,
            _name: str = name,
            **kwargs: object,
        ) -> object:
            calls.append(_name)
            return await _real(*args, **kwargs)

        setattr(world.store, name, spy)
    for bad in ("VE" + "0" * 32 + ":att", "VE" + "A" * 32, "VE123", "../VE" + "0" * 32):
        with pytest.raises(VerificationNotFound):
            await world.verify.get(world.service, bad)
        with pytest.raises(VerificationNotFound):
            await world.verify.cancel(world.service, bad)
        with pytest.raises(VerificationNotFound):
            await world.verify.check_code(world.service, code="123456", verification_id=bad)
    assert calls == []
    with pytest.raises(VerificationNotFound):
        await world.verify.get(world.service, "VE" + "0" * 32)
    assert calls == ["get"]  # a well-formed id is looked up


async def test_control_characters_never_reach_a_message(clock: FakeClock) -> None:
    world = await make_world(clock)
    for name in ("Bank.\r\nCall +19005550100", "Bank\u202e", "Bank\x00", " "):
        with pytest.raises(InvalidParameter):
            await world.verify.start_verification(
                world.service, StartRequest(to=PHONE, channel=Channel.SMS, friendly_name=name)
            )
        with pytest.raises(InvalidParameter, match="friendly name"):
            await world.tenants.create_tenant("bank", Policy(friendly_name=name))
    assert await world.store.pending_deliveries() == 0


async def test_a_policy_must_keep_the_guess_bound(world: World) -> None:
    with pytest.raises(
        InvalidParameter, match=r"15 failed checks .* 10,000 4-digit codes, 1 a day"
    ):
        await world.tenants.create_tenant("short", Policy(code_length=4))
    with pytest.raises(InvalidParameter, match="unbounded"):
        await world.tenants.create_tenant(
            "unbounded", Policy(limits=(("failed_checks_per_destination", "0/86400"),))
        )
    with pytest.raises(InvalidParameter, match=r"960 failed checks"):
        await world.tenants.update_policy(
            "acme", Policy(limits=(("failed_checks_per_destination", "10/900"),))
        )
    # A window longer than a day can be spent in one day: 1000 per 100 days is 1000 a day.
    with pytest.raises(InvalidParameter, match=r"1000 failed checks"):
        await world.tenants.create_tenant(
            "slow", Policy(limits=(("failed_checks_per_destination", "1000/8640000"),))
        )
    # Within the bound: 4 digits with at most 1 failed check a day, 5 digits with 10.
    await world.tenants.create_tenant(
        "short", Policy(code_length=4, limits=(("failed_checks_per_destination", "1/86400"),))
    )
    await world.tenants.create_tenant(
        "five", Policy(code_length=5, limits=(("failed_checks_per_destination", "10/86400"),))
    )


async def test_right_codes_never_spend_the_guess_budget(clock: FakeClock) -> None:
    from clave.verify.limits import Limits, RateLimiter
    from clave.verify.store.counters import Limit, MemoryCounters

    def limit(code: str, count: int, window: float = 86400) -> Limit:
        return Limit(code, count, window, code)

    world = await make_world(clock)
    limits = Limits(
        sends_per_ip=limit("ip", 1000),
        sends_per_service=limit("svc", 1000),
        sends_per_day=limit("day", 1000),
        failed_checks_per_ip=limit("fip", 1000),
        failed_checks_per_destination=limit("too_many_failed_checks", 3),
        spend_cap=limit("cap", 1000),
    )
    verify = VerifyService(
        world.store,
        world.verify._hasher,
        world.verify._providers,
        clock,
        limiter=RateLimiter(MemoryCounters(), limits),
    )
    for _ in range(5):  # five right codes by id and by destination: the budget of 3 is untouched
        for by_id in (True, False):
            view, _ = await verify.start_verification(
                world.service, StartRequest(to=PHONE, channel=Channel.SMS)
            )
            code = await world.code_for(PHONE)
            result = await verify.check_code(
                world.service,
                code=code,
                verification_id=view.verification.id if by_id else None,
                to=None if by_id else PHONE,
            )
            assert result.status is Status.APPROVED
            clock.advance(130)  # out of the send window's way
    view, _ = await verify.start_verification(
        world.service, StartRequest(to=PHONE, channel=Channel.SMS)
    )
    code = await world.code_for(PHONE)
    for _ in range(3):
        await verify.check_code(world.service, code=world.wrong(code), to=PHONE)
    with pytest.raises(RateLimited) as refused:
        await verify.check_code(world.service, code=code, verification_id=view.verification.id)
    assert refused.value.code == "too_many_failed_checks"
    assert refused.value.retry_after > 0
    with pytest.raises(RateLimited, match="too_many_failed_checks"):
        await verify.start_verification(world.service, StartRequest(to=PHONE, channel=Channel.SMS))
    _, created = await verify.start_verification(
        world.service, StartRequest(to="+14155552672", channel=Channel.SMS)
    )
    assert created


async def test_a_renamed_service_never_resends_a_code_under_its_new_name(world: World) -> None:
    first, _ = await world.verify.start_verification(
        world.service, StartRequest(to=PHONE, channel=Channel.SMS)
    )
    first_code = await world.code_for(PHONE)
    renamed = await world.tenants.update_policy("acme", Policy(friendly_name="Bank"))
    again, created = await world.verify.start_verification(
        renamed, StartRequest(to=PHONE, channel=Channel.SMS)
    )
    assert created
    assert again.verification.id != first.verification.id
    second_code = await world.code_for(PHONE)
    assert "Bank" in (await world.inbox.latest(to=PHONE))[0].text
    assert second_code != first_code


async def test_a_queued_message_keeps_the_name_it_was_sent_under(world: World) -> None:
    await world.verify.start_verification(
        world.service, StartRequest(to=PHONE, channel=Channel.SMS)
    )
    await world.tenants.update_policy("acme", Policy(friendly_name="Bank"))
    await world.dispatcher.run_once()  # delivered after the rename
    assert "Acme" in (await world.inbox.latest(to=PHONE))[0].text
