"""Time-based one-time passwords (RFC 6238 over RFC 4226's HOTP), as authenticator apps
(Google Authenticator, 1Password, Authy, Aegis) compute them: HMAC-SHA1, 6 digits, 30 s steps
by default, and the `otpauth://` URI their QR codes carry."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass
from urllib.parse import quote, urlencode

# 160 bits: RFC 4226's recommended secret length for HMAC-SHA1.
SECRET_BYTES = 20


@dataclass(frozen=True, slots=True)
class TotpSettings:
    """A service's TOTP parameters (Twilio's `Totp.*` service settings)."""

    # Seconds per step.
    time_step: int = 30
    # Digits per code.
    code_length: int = 6
    # Steps before and after the current one a code may come from (a phone's clock drifts).
    skew: int = 1

    def problems(self) -> list[str]:
        """Why these settings cannot be used; empty when they can."""
        found = []
        if not 20 <= self.time_step <= 60:
            found.append("totp time_step must be between 20 and 60 seconds")
        if not 3 <= self.code_length <= 8:
            found.append("totp code_length must be between 3 and 8 digits")
        if not 0 <= self.skew <= 2:
            found.append("totp skew must be between 0 and 2 steps")
        return found


# What authenticator apps assume when told nothing: SHA-1, 6 digits, 30 s steps.
DEFAULT_TOTP = TotpSettings()


def new_secret() -> bytes:
    """A random TOTP secret."""
    return secrets.token_bytes(SECRET_BYTES)


def base32(secret: bytes) -> str:
    """The secret as authenticator apps take it: RFC 4648 base32 without padding."""
    return base64.b32encode(secret).decode().rstrip("=")


def hotp(secret: bytes, counter: int, digits: int) -> str:
    """RFC 4226's HOTP value of `counter`, `digits` long."""
    digest = hmac.new(secret, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def step_at(now: float, settings: TotpSettings) -> int:
    """The time step `now` falls in."""
    return int(now // settings.time_step)


def matching_step(secret: bytes, code: str, now: float, settings: TotpSettings) -> int | None:
    """The step within the skew window whose code `code` is, or None.

    Every candidate step is computed and compared (constant time each, no early exit), so the
    time taken does not tell which step matched or how close a guess came.
    """
    if len(code) != settings.code_length or not code.isascii() or not code.isdigit():
        return None
    current = step_at(now, settings)
    found = None
    for step in range(current - settings.skew, current + settings.skew + 1):
        if hmac.compare_digest(hotp(secret, step, settings.code_length), code):
            found = step
    return found


def otpauth_uri(secret: bytes, *, issuer: str, account: str, settings: TotpSettings) -> str:
    """The `otpauth://totp/...` URI an authenticator app enrolls from (Google's Key Uri
    Format): the issuer in the label and as a parameter, the secret in base32."""
    label = f"{quote(issuer, safe='')}:{quote(account, safe='')}"
    params = {
        "secret": base32(secret),
        "issuer": issuer,
        "algorithm": "SHA1",
        "digits": str(settings.code_length),
        "period": str(settings.time_step),
    }
    return f"otpauth://totp/{label}?{urlencode(params, quote_via=quote)}"
