"""How a tenant's Policy is stored: one msgspec JSON encoding, shared by SQLite and Redis
(and how both read a send's options back).

Fields added to Policy later decode from older records with their defaults, so a new rule
never needs a data migration; a record that does not decode is a StoreError, never a guess.

Moving from the policy's separate fields (before this encoding) follows expand and contract,
so a rolling deploy or a rollback never meets a tenant it cannot read: this release writes the
encoding and, beside it, the old fields (`legacy_fields`) that a previous clave still running
reads and may update. `current_policy` reads the encoding, unless the old fields say something
else: then a previous clave changed them after this one wrote, and they win. The release after
this one stops writing and reading the old fields (and drops the SQLite columns).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import msgspec

from clave.platform.errors import StoreError
from clave.verify.models import Channel, Policy

# Deterministic: sets are written sorted, so the same policy is always the same bytes.
_ENCODER = msgspec.json.Encoder(order="deterministic")
_DECODER = msgspec.json.Decoder(Policy)
# A send's options, a JSON object read with every verification: a tenth of json.loads' time.
_OPTIONS = msgspec.json.Decoder(dict[str, Any])

# The policy's fields as an earlier clave stored them (SQLite columns, Redis hash fields).
LEGACY_FIELDS = (
    "friendly_name",
    "code_length",
    "code_ttl",
    "max_checks",
    "max_sends",
    "send_window",
    "channels",
    "countries",
    "limits",
    "flags",
)


def encode_policy(policy: Policy) -> bytes:
    """The stored form of a policy."""
    return _ENCODER.encode(_normal(policy))


def decode_policy(data: bytes | str) -> Policy:
    """A policy read back from storage."""
    try:
        return _DECODER.decode(data)
    except msgspec.MsgspecError as exc:
        raise StoreError(f"a stored policy does not decode: {exc}") from exc


def _normal(policy: Policy) -> Policy:
    return replace(
        policy, limits=tuple(sorted(policy.limits)), messaging=tuple(sorted(policy.messaging))
    )


def legacy_fields(policy: Policy) -> dict[str, str | int]:
    """The policy in the old fields, for a previous clave during the move (see above)."""
    p = policy
    return {
        "friendly_name": p.friendly_name,
        "code_length": p.code_length,
        "code_ttl": p.code_ttl,
        "max_checks": p.max_checks,
        "max_sends": p.max_sends,
        "send_window": p.send_window,
        "channels": ",".join(sorted(c.value for c in p.channels)),
        "countries": ",".join(sorted(p.countries)),
        "limits": ",".join(f"{k}={v}" for k, v in sorted(p.limits)),
        "flags": ",".join(sorted(p.flags)),
    }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def legacy_policy(fields: Mapping[str, Any]) -> Policy:
    """A policy from the old fields (str or bytes values, as SQLite or Redis give them)."""
    try:
        listed = {name: _text(fields.get(name, "")) for name in ("channels", "countries", "flags")}
        limits = (item.partition("=") for item in _text(fields.get("limits", "")).split(","))
        return Policy(
            friendly_name=_text(fields["friendly_name"]),
            code_length=int(fields["code_length"]),
            code_ttl=int(fields["code_ttl"]),
            max_checks=int(fields["max_checks"]),
            max_sends=int(fields["max_sends"]),
            send_window=int(fields["send_window"]),
            channels=frozenset(Channel(c) for c in listed["channels"].split(",") if c),
            countries=frozenset(c for c in listed["countries"].split(",") if c),
            limits=tuple(sorted((k, v) for k, sep, v in limits if sep)),
            flags=frozenset(f for f in listed["flags"].split(",") if f),
        )
    except (KeyError, ValueError) as exc:
        raise StoreError(f"a stored policy is incomplete: {exc!r}") from exc


def current_policy(encoded: bytes | str | None, fields: Mapping[str, Any]) -> Policy:
    """A tenant's policy during the move to one encoding: the encoding, unless the old fields
    (when present) were changed since by a previous clave; the old fields alone when a
    previous clave created the tenant."""
    has_legacy = fields.get("friendly_name") is not None
    if not encoded or encoded in ("{}", b"{}"):
        if not has_legacy:
            raise StoreError("a stored tenant has no policy")
        return legacy_policy(fields)
    policy = decode_policy(encoded)
    if has_legacy:
        older = legacy_policy(fields)
        if legacy_fields(older) != legacy_fields(policy):
            # A previous clave changed the old fields: their values win; what only the
            # encoding holds (fields added to Policy since, which it cannot know) stays.
            return replace(policy, **{name: getattr(older, name) for name in LEGACY_FIELDS})
    return policy


def decode_options(data: bytes | str | None) -> dict[str, Any]:
    """A send's stored options (a JSON object; empty when it had none). What msgspec refuses
    but json.dumps wrote (a lone surrogate's escape) is read as json reads it."""
    if not data:
        return {}
    try:
        return _OPTIONS.decode(data)
    except msgspec.DecodeError:
        found: dict[str, Any] = json.loads(data)
        return found
