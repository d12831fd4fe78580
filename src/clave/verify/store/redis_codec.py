"""How the Redis store's hashes and script replies read back as verify's models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clave.verify.models import (
    ApiKey,
    Channel,
    SealedCode,
    SendAttempt,
    SendStatus,
    Status,
    Tenant,
    Verification,
    payment_of,
)
from clave.verify.store.encoding import current_policy, decode_options


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def pairs(flat: Sequence[Any]) -> dict[str, Any]:
    return {text(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}


def tenant(fields: dict[str, Any]) -> Tenant:
    """A tenant from its hash (`svc:<id>`, with "id" added)."""
    return Tenant(
        text(fields["id"]),
        text(fields["name"]),
        current_policy(fields.get("policy"), fields),
        float(fields["created_at"]),
        accounts=frozenset(a for a in text(fields.get("accounts", b"")).split(",") if a),
        updated_at=_optional_time(fields.get("updated_at")),
    )


def _optional_time(value: Any) -> float | None:
    found = text(value) if value is not None else ""
    return float(found) if found else None


def api_key(id_: str, fields: dict[str, Any]) -> ApiKey:
    return ApiKey(
        id=id_,
        tenant_id=text(fields["service_id"]),
        key_hash=bytes.fromhex(text(fields["hash"])),
        created_at=float(fields["created_at"]),
        name=text(fields.get("name", b"")),
        expires_at=_optional_time(fields.get("expires_at")),
        revoked_at=_optional_time(fields.get("revoked_at")),
        last_used_at=_optional_time(fields.get("last_used_at")),
    )


def _options(attempt: dict[str, Any]) -> dict[str, str]:
    """A send's options (stored as JSON; empty when it had none)."""
    return decode_options(attempt.get("options"))


def verification(loaded: Sequence[Any]) -> Verification:
    v = pairs(loaded[0])
    sends = []
    for flat in loaded[1]:
        a = pairs(flat)
        sends.append(
            SendAttempt(
                id=int(a["id"]),
                channel=Channel(text(a["channel"])),
                status=SendStatus(text(a["status"])),
                created_at=float(a["created_at"]),
                updated_at=float(a["updated_at"]),
                provider=text(a["provider"]) or None if "provider" in a else None,
                error=text(a["error"]) or None if "error" in a else None,
                provider_message_id=(
                    text(a["provider_message_id"]) or None if "provider_message_id" in a else None
                ),
                payment=payment_of(options := _options(a)),
                sid=options.get("attempt_sid"),
            )
        )
    locale = text(v.get("locale", b""))
    return Verification(
        id=text(v["id"]),
        tenant_id=text(v["service_id"]),
        to=text(v["to"]),
        channel=Channel(text(v["channel"])),
        locale=locale or None,
        code_length=int(v["code_length"]),
        code=SealedCode(key_id=text(v["key_id"]), seed=bytes(v["seed"]), digest=bytes(v["digest"])),
        status=Status(text(v["status"])),
        check_attempts=int(v["check_attempts"]),
        max_checks=int(v["max_checks"]),
        created_at=float(v["created_at"]),
        updated_at=float(v["updated_at"]),
        expires_at=float(v["expires_at"]),
        sends=tuple(sorted(sends, key=lambda s: s.id)),
        binding=bytes(v.get("binding", b"")),
    )


def verification_fields(c: Verification) -> list[Any]:
    """A new verification's hash (`v:<id>`) as name/value pairs; `verification` reads it."""
    return [
        *("id", c.id, "service_id", c.tenant_id, "to", c.to, "channel", c.channel.value),
        *("locale", c.locale or "", "code_length", c.code_length, "key_id", c.code.key_id),
        *("seed", c.code.seed, "digest", c.code.digest, "status", c.status.value),
        *("check_attempts", c.check_attempts, "max_checks", c.max_checks),
        *("created_at", repr(c.created_at), "updated_at", repr(c.updated_at)),
        *("expires_at", repr(c.expires_at), "binding", c.binding),
    ]
