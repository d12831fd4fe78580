"""Redis verify store: for several clave tasks sharing one state, one round trip per operation.

Every read-modify-write is one Lua script, so it is atomic and costs one round trip. Keys of a
verification expire with it (plus `retention`, so a read still shows how it ended). The outbox is
a stream read through a consumer group: an entry handed to a dispatcher that died stays pending
in the group and is re-claimed (XCLAIM) by another once its lease, kept on clave's clock, has
passed; a retry waits in a sorted set until it is due. Scripts build key names from the prefix,
so this needs a single Redis (primary/replica, as ElastiCache's non-cluster mode), not Redis
Cluster.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Mapping

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from clave.platform.errors import StoreError
from clave.verify.models import (
    REPORTABLE,
    Channel,
    CheckGate,
    CheckOutcome,
    Delivery,
    Event,
    SendStatus,
    StartOutcome,
    Status,
    Verification,
)
from clave.verify.store import redis_codec as codec
from clave.verify.store.encoding import decode_options
from clave.verify.store.redis_attempts import RedisAttempts
from clave.verify.store.redis_factors import RedisFactors
from clave.verify.store.redis_tenants import RedisTenants

GROUP = "dispatch"


class RedisVerificationStore(RedisTenants, RedisAttempts, RedisFactors):
    """Verify's state in Redis (`CLAVE_VERIFY_STORE=redis://host:6379/0`)."""

    def __init__(
        self, url: str, *, prefix: str = "clave:", retention: float = 86400.0, events: bool = False
    ) -> None:
        super().__init__(url, prefix=prefix)
        self._events = events
        self._retention = retention
        self._consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"

    async def _prepare(self, redis: aioredis.Redis) -> None:
        """The consumer groups of the outbox and (when on) of the events."""
        await super()._prepare(redis)
        if self._events:
            await redis.set(self._prefix + "events-on", "1")
        else:
            await redis.delete(self._prefix + "events-on")
        for stream, group, wanted in (("events", "notify", self._events), ("outbox", GROUP, True)):
            if wanted:
                try:
                    await redis.xgroup_create(self._prefix + stream, group, id="0", mkstream=True)
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):  # BUSYGROUP: it exists already
                        raise StoreError(f"Redis: {exc}") from exc

    async def start(
        self,
        candidate: Verification,
        *,
        channel: Channel,
        locale: str | None,
        now: float,
        window: float,
        max_sends: int,
        deliver: bool = True,
        options: Mapping[str, str] | None = None,
    ) -> StartOutcome:
        """See VerificationStore.start; one round trip."""
        c = candidate
        result = await self._run(
            "start",
            repr(now),
            repr(float(window)),
            max_sends,
            channel.value,
            locale or "",
            repr(self._retention),
            "1" if deliver else "0",
            json.dumps(dict(options)) if options else "",
            *codec.verification_fields(c),
        )
        if codec.text(result[0]) == "limited":
            existing = codec.text(result[3])
            current = (await self.get(c.tenant_id, existing)) if existing else None
            return StartOutcome(current or c, False, int(result[2]), float(result[1]))
        return StartOutcome(codec.verification(result[4]), bool(int(result[2])), int(result[3]))

    async def get(self, tenant_id: str, verification_id: str) -> Verification | None:
        """A verification of the tenant."""
        loaded = await self._run("get", tenant_id, verification_id)
        return codec.verification(loaded) if loaded else None

    async def find_pending(self, tenant_id: str, to: str) -> Verification | None:
        """The pending verification for a destination."""
        loaded = await self._run("find_pending", tenant_id, to)
        return codec.verification(loaded) if loaded else None

    async def latest_sent(self, tenant_id: str, to: str, since: float) -> Verification | None:
        """The verification of the latest send to a destination after `since`."""
        loaded = await self._run("latest_sent", tenant_id, to, repr(since))
        return codec.verification(loaded) if loaded else None

    async def count_sends(self, tenant_id: str, to: str, since: float) -> int:
        """Send attempts to a destination after `since`."""
        try:
            return int(
                await self._r().zcount(
                    self._prefix + f"sends:{tenant_id}:{to}", f"({since!r}", "+inf"
                )
            )
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc

    async def count_check(
        self,
        tenant_id: str,
        *,
        now: float,
        window: float,
        verification_id: str | None = None,
        to: str | None = None,
    ) -> CheckOutcome:
        """See VerificationStore.count_check; one round trip."""
        result = await self._run(
            "count_check",
            tenant_id,
            verification_id or "",
            to or "",
            repr(now),
            repr(float(window)),
        )
        gate = CheckGate(codec.text(result[0]))
        if gate is CheckGate.NOT_FOUND:
            return CheckOutcome(gate)
        return CheckOutcome(gate, codec.verification(result[1]), int(result[2]))

    async def transition(
        self, verification_id: str, *, from_status: Status, to_status: Status, now: float
    ) -> bool:
        """Change the status only if it is still `from_status`."""
        done = await self._run(
            "transition", verification_id, from_status.value, to_status.value, repr(now)
        )
        return bool(int(done))

    async def claim_deliveries(
        self, now: float, *, lease_until: float, limit: int
    ) -> list[Delivery]:
        """Due retries back into the stream, lapsed leases re-claimed, new entries read."""
        rows = await self._run("claim", self._consumer, repr(now), repr(lease_until), limit)
        claimed = []
        for entry, aid, tries, channel, to, locale, name, loaded, options in rows:
            claimed.append(
                Delivery(
                    outbox_id=codec.text(entry),
                    attempt_id=int(aid),
                    tries=int(tries),
                    channel=Channel(codec.text(channel)),
                    to=codec.text(to),
                    locale=codec.text(locale) or None,
                    verification=codec.verification(loaded),
                    friendly_name=codec.text(name),
                    options=decode_options(options),
                )
            )
        return claimed

    async def finish_delivery(
        self,
        delivery: Delivery,
        *,
        status: SendStatus,
        provider: str | None,
        error: str | None,
        now: float,
        provider_message_id: str | None = None,
    ) -> None:
        """Acknowledge the entry and record the attempt's outcome."""
        await self._run(
            "finish",
            str(delivery.outbox_id),
            delivery.attempt_id,
            status.value,
            provider or "",
            error or "",
            repr(now),
            provider_message_id or "",
        )

    async def report_delivery(
        self,
        provider: str,
        provider_message_id: str,
        status: SendStatus,
        *,
        error: str | None,
        now: float,
    ) -> bool | None:
        """See VerificationStore.report_delivery; one round trip."""
        allowed = [s.value for s, targets in REPORTABLE.items() if status in targets]
        done = int(
            await self._run(
                "report",
                provider,
                provider_message_id,
                status.value,
                error or "",
                repr(now),
                *allowed,
            )
        )
        return None if done < 0 else bool(done)

    async def retry_delivery(
        self, delivery: Delivery, *, next_attempt_at: float, error: str
    ) -> None:
        """Acknowledge the entry and park the attempt until it is due again."""
        await self._run(
            "retry", str(delivery.outbox_id), delivery.attempt_id, repr(next_attempt_at), error
        )

    async def expire_due(self, now: float, *, limit: int) -> int:
        """See EventLog.expire_due; one round trip."""
        return int(await self._run("expire_due", repr(now), limit))

    async def claim_events(self, now: float, *, lease_until: float, limit: int) -> list[Event]:
        """See EventLog.claim_events; one round trip."""
        rows = await self._run("claim_events", self._consumer, repr(now), repr(lease_until), limit)
        return [
            Event(codec.text(i), codec.text(t), codec.text(v), codec.text(s), float(a), int(n))
            for i, t, v, s, a, n in rows
        ]

    async def finish_event(self, event: Event) -> None:
        """See EventLog.finish_event."""
        await self._run("finish_event", str(event.id))

    async def retry_event(self, event: Event, *, next_attempt_at: float) -> None:
        """See EventLog.retry_event: the lease runs until the next try."""
        try:
            await self._r().zadd(self._prefix + "events:leases", {str(event.id): next_attempt_at})
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc

    async def oldest_pending_at(self) -> float | None:
        """The stream's first entry (its id is when it was added) and the retry queued
        longest ago (its attempt's creation), whichever is older."""
        try:
            r = self._r()
            found = []
            first = await r.xrange(self._prefix + "outbox", count=1)
            if first:
                found.append(int(codec.text(first[0][0]).split("-", 1)[0]) / 1000)
            later = await r.zrange(self._prefix + "outbox:later", 0, 0)
            if later:
                created = await r.hget(self._prefix + "a:" + codec.text(later[0]), "created_at")
                if created is not None:
                    found.append(float(created))
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc
        return min(found, default=None)

    async def pending_deliveries(self) -> int:
        """Entries in the stream plus retries waiting."""
        try:
            r = self._r()
            return int(await r.xlen(self._prefix + "outbox")) + int(
                await r.zcard(self._prefix + "outbox:later")
            )
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc
