"""Conversion and delivery reporting: the attempts log (verify/attempts.py) read for a caller."""

from __future__ import annotations

from clave.verify.attempts import MAX_PAGE, AttemptQuery, AttemptRecord, AttemptSummary
from clave.verify.store.base import AttemptLog


class AttemptsLog:
    """Reads the log for a caller who may see `tenant_ids`."""

    def __init__(self, store: AttemptLog) -> None:
        self._store = store

    async def page(self, query: AttemptQuery, *, offset: int, limit: int) -> list[AttemptRecord]:
        """The newest sends matching `query`, skipping `offset`, at most `limit` (<= MAX_PAGE
        and the one more that says another page follows)."""
        if not query.tenant_ids:
            return []
        # A page and one more row (which tells whether another page follows).
        bounded = min(limit, MAX_PAGE + 1)
        return await self._store.find_attempts(query, offset=offset, limit=bounded)

    async def get(self, query: AttemptQuery, sid: str) -> AttemptRecord | None:
        """The send `sid`, if `query`'s tenants may see it."""
        found = await self.page(AttemptQuery(query.tenant_ids, sid=sid), offset=0, limit=1)
        return found[0] if found else None

    async def summary(self, query: AttemptQuery) -> AttemptSummary:
        """The totals of the sends matching `query`."""
        if not query.tenant_ids:
            return AttemptSummary(0, 0)
        total, converted = await self._store.count_attempts(query)
        return AttemptSummary(total, converted)
