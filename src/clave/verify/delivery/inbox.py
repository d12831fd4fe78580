"""The dev inbox: a provider that keeps messages locally for people and tests to read."""

from __future__ import annotations

import secrets
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from clave.platform.sqlite import SqliteDatabase
from clave.verify.delivery.base import OutgoingMessage
from clave.verify.models import ALL_CHANNELS, Channel

MIGRATIONS = (
    """
    CREATE TABLE messages (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        at REAL NOT NULL,
        channel TEXT NOT NULL,
        to_addr TEXT NOT NULL,
        verification_id TEXT NOT NULL,
        subject TEXT,
        text TEXT NOT NULL,
        html TEXT,
        speech TEXT
    );
    CREATE INDEX messages_by_to ON messages (to_addr, seq)
    """,
)


@dataclass(frozen=True, slots=True)
class InboxMessage:
    """One message as the dev inbox shows it."""

    id: str
    at: float
    channel: str
    to: str
    verification_id: str
    text: str
    subject: str | None = None
    html: str | None = None
    speech: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


class InboxStore(Protocol):
    """Where the dev inbox keeps messages."""

    async def open(self) -> None:
        """Connect."""
        ...

    async def close(self) -> None:
        """Disconnect."""
        ...

    async def add(self, message: InboxMessage) -> None:
        """Keep a message."""
        ...

    async def latest(self, *, to: str | None = None, limit: int = 50) -> list[InboxMessage]:
        """Newest first, optionally for one destination."""
        ...


class MemoryInboxStore:
    """Dev inbox messages in a list."""

    def __init__(self) -> None:
        self._messages: list[InboxMessage] = []

    async def open(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to disconnect."""

    async def add(self, message: InboxMessage) -> None:
        """Keep a message."""
        self._messages.append(message)

    async def latest(self, *, to: str | None = None, limit: int = 50) -> list[InboxMessage]:
        """Newest first."""
        found = [m for m in reversed(self._messages) if to is None or m.to == to]
        return found[:limit]


class SqliteInboxStore:
    """Dev inbox messages in their own SQLite file, apart from verify's database."""

    def __init__(self, path: Path | str) -> None:
        self._db = SqliteDatabase(path, MIGRATIONS)

    def setup(self) -> None:
        """Create or upgrade the schema synchronously (before workers start)."""
        self._db.setup()

    async def open(self) -> None:
        """Open the connection; the schema is brought up to date."""
        await self._db.open()

    async def close(self) -> None:
        """Close."""
        await self._db.close()

    async def add(self, message: InboxMessage) -> None:
        """Keep a message."""
        m = message

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO messages (id, at, channel, to_addr, verification_id, subject, "
                "text, html, speech) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    m.id,
                    m.at,
                    m.channel,
                    m.to,
                    m.verification_id,
                    m.subject,
                    m.text,
                    m.html,
                    m.speech,
                ),
            )

        await self._db.write(run)

    async def latest(self, *, to: str | None = None, limit: int = 50) -> list[InboxMessage]:
        """Newest first."""
        columns = "id, at, channel, to_addr, verification_id, text, subject, html, speech"

        def run(conn: sqlite3.Connection) -> list[InboxMessage]:
            if to is None:
                rows = conn.execute(
                    f"SELECT {columns} FROM messages ORDER BY seq DESC LIMIT ?",  # noqa: S608
                    (limit,),
                )
            else:
                rows = conn.execute(
                    f"SELECT {columns} FROM messages WHERE to_addr = ? "  # noqa: S608
                    "ORDER BY seq DESC LIMIT ?",
                    (to, limit),
                )
            return [InboxMessage(*row) for row in rows]

        return await self._db.read(run)


class InboxProvider:
    """Delivers every channel into the dev inbox."""

    name = "inbox"
    channels: frozenset[Channel] = ALL_CHANNELS

    def __init__(self, store: InboxStore) -> None:
        self.store = store

    async def send(self, outgoing: OutgoingMessage) -> str | None:
        """Keep the message; its id is the provider message id."""
        message = InboxMessage(
            id="IN" + secrets.token_hex(16),
            at=time.time(),
            channel=outgoing.channel.value,
            to=outgoing.to,
            verification_id=outgoing.verification_id,
            text=outgoing.message.text,
            subject=outgoing.message.subject,
            html=outgoing.message.html,
            speech=outgoing.message.speech,
        )
        await self.store.add(message)
        return message.id

    async def close(self) -> None:
        """The store is closed by its owner."""
