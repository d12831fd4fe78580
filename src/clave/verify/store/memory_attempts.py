"""The attempts log in memory: the AttemptLog half of MemoryVerificationStore."""

from __future__ import annotations

from typing import Any

from clave.verify.attempts import AttemptQuery, AttemptRecord
from clave.verify.models import Status, Verification


class MemoryAttempts:
    """AttemptLog over the store's sends and verifications, filtered with AttemptQuery.matches."""

    _attempts: dict[int, Any]
    _verifications: dict[str, Verification]

    def _records(self, query: AttemptQuery) -> list[AttemptRecord]:
        found = []
        for attempt_id, a in sorted(self._attempts.items(), reverse=True):
            verification = self._verifications.get(a.verification_id)
            if verification is None or a.attempt.sid is None:
                continue
            record = AttemptRecord(
                sid=a.attempt.sid,
                tenant_id=a.tenant_id,
                verification_id=a.verification_id,
                to=a.to,
                channel=a.attempt.channel,
                status=a.attempt.status,
                created_at=a.attempt.created_at,
                updated_at=a.attempt.updated_at,
                converted=verification.status is Status.APPROVED,
            )
            if query.matches(record):
                found.append((record.created_at, attempt_id, record))
        return [record for _, _, record in sorted(found, key=lambda f: f[:2], reverse=True)]

    async def find_attempts(
        self, query: AttemptQuery, *, offset: int, limit: int
    ) -> list[AttemptRecord]:
        """The sends matching `query`, newest first."""
        return self._records(query)[offset : offset + limit]

    async def count_attempts(self, query: AttemptQuery) -> tuple[int, int]:
        """(matching sends, converted ones)."""
        records = self._records(query)
        return len(records), sum(r.converted for r in records)
