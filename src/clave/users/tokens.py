"""Forum users' bearer tokens: how they are made, stored and read, in one place.

A token is 256 random bits from `secrets` behind a prefix that says what it is (so a leaked one
is recognised by secret scanners and in logs). Only its SHA-256 is stored: the bits are random,
so a fast hash is enough (there is nothing to brute-force), and lookup is by that hash, so no
secret is ever compared in Python.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from clave.users.errors import Unauthorized
from clave.users.store.base import TokenStore

PREFIX = "clave_user_"
# token_urlsafe(32): 32 random bytes as 43 characters of the URL-safe base64 alphabet.
_TOKEN = re.compile(re.escape(PREFIX) + r"[A-Za-z0-9_-]{43}")
# Longer than any well-formed header; a longer one is refused before it is parsed.
_MAX_HEADER = 200


def new_token() -> str:
    """A fresh token (show it once: only its hash is kept)."""
    return PREFIX + secrets.token_urlsafe(32)


def hash_token(raw: str) -> bytes:
    """What the store keeps of a token, and looks it up by."""
    return hashlib.sha256(raw.encode()).digest()


def bearer_token(authorization: str | None) -> str:
    """The token of `Authorization: Bearer <token>`; Unauthorized when the header is missing
    or is not that (another scheme, non-ASCII, over-long, not a user token)."""
    if not authorization:
        raise Unauthorized("missing Authorization: Bearer <user token>")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if (
        len(authorization) > _MAX_HEADER
        or scheme.lower() != "bearer"
        or not _TOKEN.fullmatch(token)
    ):
        raise Unauthorized("use Authorization: Bearer <user token>")
    return token


async def issue_token(
    store: TokenStore, user_id: int, *, current: bytes | None = None
) -> str | None:
    """Give the user a new token, replacing its old one at once. With `current`, only while
    that is still the user's token (two rotations with one token: one wins). None when there
    is no such user (or `current` is no longer its token)."""
    raw = new_token()
    if not await store.set_token(user_id, hash_token(raw), current=current):
        return None
    return raw
