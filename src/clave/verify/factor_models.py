"""Plain data of authenticator-app factors (TOTP): no web, database or crypto imports."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from clave.verify.totp import TotpSettings

# An entity is the application's own id for its user (Twilio's `Identity`): never PII, by
# Twilio's advice, but clave stores it as given and shows it only to its tenant.
MAX_ENTITY_LENGTH = 128
# Twilio's rule for an Identity: letters and digits, in groups joined by a dash (or an
# underscore), up to 128 characters (the same rule in JSON Schema). Nothing a URL path or an
# SDK's formatting could read another way ('/', '%', '.', '?').
ENTITY_PATTERN = "^(?=.{1,128}$)[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)*$"
MAX_FACTOR_NAME_LENGTH = 64


@dataclass(frozen=True, slots=True)
class Sealed:
    """A secret encrypted at rest (sealing.py): the key's id, the nonce, the ciphertext."""

    key_id: str
    nonce: bytes
    ciphertext: bytes  # with GCM's 16-byte tag


class FactorStatus(StrEnum):
    """An enrolled factor is unverified until a first code proves the app holds its secret."""

    UNVERIFIED = "unverified"
    VERIFIED = "verified"


@dataclass(frozen=True, slots=True)
class Factor:
    """A TOTP factor of an entity: its secret only sealed (sealing.py), its parameters fixed
    at enrollment (an app computes codes with the ones it was given)."""

    id: str  # YF and 32 hex digits
    tenant_id: str
    entity: str
    friendly_name: str
    status: FactorStatus
    secret: Sealed
    totp: TotpSettings
    created_at: float
    updated_at: float
    # The newest time step a code was accepted for: a code of this step or an older one is a
    # replay (RFC 6238 section 5.2), refused.
    last_step: int = -1


@dataclass(frozen=True, slots=True)
class Entity:
    """An application's user, as the Twilio API names it (`Identity`), with its sid."""

    sid: str  # YE and 32 hex digits
    tenant_id: str
    identity: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Challenge:
    """One code checked against a factor through the Twilio API (kept to be read back)."""

    sid: str  # YC and 32 hex digits
    tenant_id: str
    identity: str
    factor_id: str
    # approved, or pending (the code did not prove the factor)
    status: str
    created_at: float
    updated_at: float
