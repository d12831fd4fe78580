"""How a tenant's Policy is stored: one msgspec JSON encoding, shared by SQLite and Redis.

Fields added to Policy later decode from older records with their defaults, so a new rule
never needs a data migration; a record that does not decode is a StoreError, never a guess.
"""

from __future__ import annotations

import msgspec

from clave.platform.errors import StoreError
from clave.verify.models import Policy

# Deterministic: sets are written sorted, so the same policy is always the same bytes.
_ENCODER = msgspec.json.Encoder(order="deterministic")
_DECODER = msgspec.json.Decoder(Policy)


def encode_policy(policy: Policy) -> bytes:
    """The stored form of a policy."""
    return _ENCODER.encode(policy)


def decode_policy(data: bytes | str) -> Policy:
    """A policy read back from storage."""
    try:
        return _DECODER.decode(data)
    except msgspec.MsgspecError as exc:
        raise StoreError(f"a stored policy does not decode: {exc}") from exc
