from __future__ import annotations

from clave.verify.codes import CodeHasher
from clave.verify.delivery.base import DeliveryError, OutgoingMessage, Provider, ProviderRouter
from clave.verify.delivery.dispatcher import Dispatcher, OutboxPolicy
from clave.verify.delivery.inbox import InboxProvider, MemoryInboxStore
from clave.verify.models import Channel, Policy, SendStatus, Status, Tenant
from clave.verify.requests import StartRequest
from clave.verify.service import VerifyService
from clave.verify.store.memory import MemoryVerificationStore
from clave.verify.tenants import Tenants
from tests.support import FakeClock

PHONE = "+14155552671"


class Refusing:
    """A provider that refuses every message (transient or permanent)."""

    name = "refusing"
    channels = frozenset(Channel)

    def __init__(self, *, permanent: bool) -> None:
        self.permanent = permanent
        self.calls = 0

    async def send(self, outgoing: OutgoingMessage) -> str | None:
        self.calls += 1
        raise DeliveryError("nope", permanent=self.permanent)

    async def close(self) -> None:
        pass


async def setup(
    clock: FakeClock, providers: list[Provider], policy: OutboxPolicy
) -> tuple[MemoryVerificationStore, VerifyService, Dispatcher, Tenant]:
    store = MemoryVerificationStore()
    router = ProviderRouter({c: providers for c in Channel})
    hasher = CodeHasher({"k": b"k" * 32}, active_key_id="k")
    service = await Tenants(store, clock).create_tenant("acme", Policy())
    verify = VerifyService(store, hasher, router, clock)
    dispatcher = Dispatcher(store, hasher, router, clock, policy)
    return store, verify, dispatcher, service


async def test_transient_failures_retry_with_backoff_then_fail(clock: FakeClock) -> None:
    refusing = Refusing(permanent=False)
    policy = OutboxPolicy(max_tries=3, backoff_base=10, backoff_max=1000)
    store, verify, dispatcher, service = await setup(clock, [refusing], policy)
    view, _ = await verify.start_verification(service, StartRequest(to=PHONE, channel=Channel.SMS))

    assert await dispatcher.run_once() == 1
    assert await dispatcher.run_once() == 0  # backing off: not due yet
    clock.advance(7)  # below the first delay of 10 s minus 20 % jitter
    assert await dispatcher.run_once() == 0
    clock.advance(6)
    assert await dispatcher.run_once() == 1
    clock.advance(25)
    assert await dispatcher.run_once() == 1
    assert refusing.calls == 3
    assert await store.pending_deliveries() == 0
    read = await verify.get(service, view.verification.id)
    assert read.verification.sends[0].status is SendStatus.FAILED
    assert "nope" in (read.verification.sends[0].error or "")
    assert read.status is Status.FAILED


async def test_falls_back_to_the_next_provider(clock: FakeClock) -> None:
    inbox = MemoryInboxStore()
    refusing = Refusing(permanent=True)
    _store, verify, dispatcher, service = await setup(
        clock, [refusing, InboxProvider(inbox)], OutboxPolicy()
    )
    view, _ = await verify.start_verification(service, StartRequest(to=PHONE, channel=Channel.SMS))
    await dispatcher.run_once()
    assert refusing.calls == 1
    assert len(await inbox.latest(to=PHONE)) == 1
    read = await verify.get(service, view.verification.id)
    assert read.verification.sends[0].status is SendStatus.SENT
    assert read.verification.sends[0].provider == "inbox"


async def test_closed_verification_is_not_sent(clock: FakeClock) -> None:
    inbox = MemoryInboxStore()
    _store, verify, dispatcher, service = await setup(clock, [InboxProvider(inbox)], OutboxPolicy())
    view, _ = await verify.start_verification(service, StartRequest(to=PHONE, channel=Channel.SMS))
    await verify.cancel(service, view.verification.id)
    await dispatcher.run_once()
    assert await inbox.latest() == []
    read = await verify.get(service, view.verification.id)
    assert read.verification.sends[0].status is SendStatus.SKIPPED


async def test_a_lease_held_by_a_dead_worker_is_taken_over(clock: FakeClock) -> None:
    inbox = MemoryInboxStore()
    store, verify, dispatcher, service = await setup(
        clock, [InboxProvider(inbox)], OutboxPolicy(lease=30)
    )
    await verify.start_verification(service, StartRequest(to=PHONE, channel=Channel.SMS))
    # A worker claims the send and dies before delivering it.
    claimed = await store.claim_deliveries(clock(), lease_until=clock() + 30, limit=10)
    assert len(claimed) == 1
    assert await dispatcher.run_once() == 0
    clock.advance(31)
    assert await dispatcher.run_once() == 1
    assert len(await inbox.latest(to=PHONE)) == 1
