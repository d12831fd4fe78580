"""Plain data of the users domain."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Contact(StrEnum):
    """Which of a user's contacts a verification proves."""

    PHONE = "phone"
    EMAIL = "email"


@dataclass(frozen=True, slots=True)
class User:
    """A forum user."""

    id: int
    username: str
    name: str
    bio: str
    email: str | None
    phone: str | None
    email_verified: bool
    phone_verified: bool
    pending_verification: str | None
    pending_contact: Contact | None
    created_at: float
    updated_at: float
    # Where the pending verification's code went: it proves that contact only while the
    # user's contact is still that (a change meanwhile leaves nothing to approve).
    pending_to: str | None = None


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request acts as: the user whose token it carries, and that token's hash."""

    user: User
    token_hash: bytes


@dataclass(frozen=True, slots=True)
class StartCount:
    """A user's verification starts in its current window, after asking to count one more."""

    counted: bool  # within the limit: counted, the start may go ahead
    since: float  # when the window began; it ends a window's length later


@dataclass(frozen=True, slots=True)
class NewUser:
    """What creating a user needs (already validated)."""

    username: str
    name: str
    bio: str = ""
    email: str | None = None
    phone: str | None = None


# The four users of the original sample (awslabs/amazon-ecs-nodejs-microservices), seeded on
# first start when CLAVE_SEED is on.
SEED: tuple[tuple[int, NewUser], ...] = (
    (1, NewUser("marceline", "Marceline Abadeer", "1000 year old vampire queen, musician")),
    (
        2,
        NewUser(
            "finn", "Finn 'the Human' Mertens", "Adventurer and hero, last human, defender of good"
        ),
    ),
    (
        3,
        NewUser(
            "pb",
            "Bonnibel Bubblegum",
            "Scientist, bearer of candy power, ruler of the candy kingdom",
        ),
    ),
    (4, NewUser("jake", "Jake the Dog", "Former criminal, now magical dog adventurer, and father")),
)
