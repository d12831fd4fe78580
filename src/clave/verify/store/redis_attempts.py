"""The attempts log in Redis: the AttemptLog half of RedisVerificationStore.

start.lua indexes each send twice: `attempts:<tenant id>`, a sorted set of send ids by time,
and `attempt-sid:<sid>`, the send id of a sid; both live as long as the sends' own keys. A
query reads the ids in its time range from its tenants' sets, newest first, then the sends
(`a:<id>`) and their verifications' statuses in pipelined batches, and filters them with
AttemptQuery.matches.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from redis.exceptions import RedisError

from clave.platform.errors import StoreError
from clave.verify.attempts import AttemptQuery, AttemptRecord
from clave.verify.errors import QueryTooBroad
from clave.verify.models import Channel, SendStatus, Status
from clave.verify.store import redis_codec as codec
from clave.verify.store.redis_connection import RedisConnection

# Sends read per round trip.
_BATCH = 500
# The most sends one query reads to filter them (a day of them on a busy deployment).
MAX_SCAN = 100_000


def _by_time_only(query: AttemptQuery) -> bool:
    """Whether the index (tenants, times, sid) decides every filter of `query`."""
    return (
        query.to is None
        and query.destination_prefix is None
        and query.country is None
        and query.channel is None
        and query.verification_id is None
        and query.converted is None
    )


class RedisAttempts(RedisConnection):
    """AttemptLog on the keys start.lua writes."""

    async def find_attempts(
        self, query: AttemptQuery, *, offset: int, limit: int
    ) -> list[AttemptRecord]:
        """The sends matching `query`, newest first."""
        found: list[AttemptRecord] = []
        if _by_time_only(query):  # the index alone decides: read just this page's sends
            try:
                ids = await self._ids(query, first=offset + limit)
                return [r for r in await self._records(ids[offset:]) if query.matches(r)][:limit]
            except (RedisError, OSError) as exc:
                raise StoreError(f"Redis unavailable: {exc}") from exc
        async for record in self._matching(query):
            if offset:
                offset -= 1
                continue
            found.append(record)
            if len(found) >= limit:
                break
        return found

    async def count_attempts(self, query: AttemptQuery) -> tuple[int, int]:
        """(matching sends, converted ones)."""
        total = converted = 0
        async for record in self._matching(query):
            total += 1
            converted += record.converted
        return total, converted

    async def _matching(self, query: AttemptQuery) -> AsyncIterator[AttemptRecord]:
        try:
            ids = await self._ids(query)
            for start in range(0, len(ids), _BATCH):
                for record in await self._records(ids[start : start + _BATCH]):
                    if query.matches(record):
                        yield record
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc

    async def _ids(self, query: AttemptQuery, *, first: int | None = None) -> list[str]:
        """The send ids the query may match, newest first (the `first` of them only, when
        given; else all, up to MAX_SCAN)."""
        redis, p = self._r(), self._prefix
        if query.sid is not None:
            found = await redis.get(p + "attempt-sid:" + query.sid)
            return [codec.text(found)] if found else []
        newest = f"({query.created_before}" if query.created_before is not None else "+inf"
        oldest = f"({query.created_after}" if query.created_after is not None else "-inf"
        tenants = sorted(query.tenant_ids)
        if first is None:
            async with redis.pipeline(transaction=False) as pipe:
                for tenant_id in tenants:
                    pipe.zcount(p + "attempts:" + tenant_id, oldest, newest)
                if sum(await pipe.execute()) > MAX_SCAN:
                    raise QueryTooBroad(
                        f"more than {MAX_SCAN} sends to read: narrow the dates "
                        "(DateCreatedAfter, DateCreatedBefore)"
                    )
        async with redis.pipeline(transaction=False) as pipe:
            for tenant_id in tenants:
                pipe.zrevrangebyscore(
                    p + "attempts:" + tenant_id,
                    newest,
                    oldest,
                    start=None if first is None else 0,
                    num=first,
                    withscores=True,
                )
            per_tenant: list[list[tuple[bytes, float]]] = await pipe.execute()
        # Each set is newest first: merged by (time, id), the later send first on a tie.
        keyed = (
            [((score, int(codec.text(aid))), codec.text(aid)) for aid, score in entries]
            for entries in per_tenant
        )
        return [aid for _, aid in heapq.merge(*keyed, key=lambda e: e[0], reverse=True)]

    async def _records(self, ids: Sequence[str]) -> list[AttemptRecord]:
        redis, p = self._r(), self._prefix
        async with redis.pipeline(transaction=False) as pipe:
            for aid in ids:
                pipe.hgetall(p + "a:" + aid)
            sends: list[dict[bytes, bytes]] = await pipe.execute()
        present = [{codec.text(k): v for k, v in s.items()} for s in sends if s]
        async with redis.pipeline(transaction=False) as pipe:
            for send in present:
                pipe.hget(p + "v:" + codec.text(send["vid"]), "status")
            statuses: list[bytes | None] = await pipe.execute()
        return [
            record
            for send, status in zip(present, statuses, strict=True)
            if status is not None and (record := _record(send, codec.text(status))) is not None
        ]


def _record(send: dict[str, Any], verification_status: str) -> AttemptRecord | None:
    """A send's hash as a record; None for one without a sid (stored before sends had one)."""
    raw = codec.text(send.get("options", b""))
    sid = json.loads(raw).get("attempt_sid") if raw else None
    if not sid:
        return None
    return AttemptRecord(
        sid=sid,
        tenant_id=codec.text(send["service_id"]),
        verification_id=codec.text(send["vid"]),
        to=codec.text(send["to"]),
        channel=Channel(codec.text(send["channel"])),
        status=SendStatus(codec.text(send["status"])),
        created_at=float(send["created_at"]),
        updated_at=float(send["updated_at"]),
        converted=verification_status == Status.APPROVED.value,
    )
