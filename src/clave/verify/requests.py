"""The validated requests the verify use cases take, built by each API adapter (native, /v2),
and what a request means under a tenant's policy.

A request is checked once, when it is built, for everything that does not depend on the
policy; `terms_of` then applies the policy's rules on a code (its length, a custom code, a
PSD2 payment), for the use cases in `service.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from clave.platform.client_ip import ip_bucket
from clave.platform.contacts import region_of
from clave.platform.text import is_single_line
from clave.verify.destinations import normalize
from clave.verify.errors import InvalidParameter
from clave.verify.languages import LOCALES, canonical_locale
from clave.verify.models import (
    CODE_DIGITS,
    FRIENDLY_NAME_RULE,
    MAX_AMOUNT_LENGTH,
    MAX_CODE_LENGTH,
    MAX_PAYEE_LENGTH,
    MIN_CODE_LENGTH,
    Channel,
    Policy,
    is_code,
    valid_friendly_name,
)
from clave.verify.service_rate_limits import MAX_RATE_LIMITS

# The longest value each API accepts for a field (the adapters' size guards; the patterns below
# decide what is valid).
MAX_DESTINATION_LENGTH = 254  # an email address (RFC 5321 path)
MAX_LOCALE_LENGTH = 35  # a BCP 47 tag with extensions
MAX_IP_LENGTH = 45  # an IPv6 address with an embedded IPv4 one
APP_HASH_LENGTH = 11
MAX_DOMAIN_LENGTH = 253
MAX_RATE_LIMIT_VALUE = 256

_APP_HASH = re.compile(rf"[A-Za-z0-9+/]{{{APP_HASH_LENGTH}}}")
_DOMAIN = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


@dataclass(frozen=True, slots=True)
class StartRequest:
    """A request to send a code, as every API hands it to `VerifyService.start_verification`.

    Checked once, on construction, for everything that does not depend on the tenant's policy
    (the policy's rules apply in the use case): a bad value raises InvalidParameter
    (InvalidDestination for `to`). `to` is normalised for the channel.
    """

    to: str
    channel: Channel
    locale: str | None = None
    # More digits than the tenant's codes (never fewer).
    code_length: int | None = None
    # The end user's IP, for the per-IP limits (clave usually sees the caller's server).
    client_ip: str | None = None
    # SMS autofill: the Android SMS Retriever app hash, and the WebOTP origin (`@domain #code`).
    app_hash: str | None = None
    webotp_domain: str | None = None
    # The code to send instead of a random one (tenants with the custom_code flag).
    custom_code: str | None = None
    # (amount, payee): required by psd2 tenants and bound to the code; ignored by others.
    payment: tuple[str, str] | None = None
    # The name this verification's messages show instead of the tenant's.
    friendly_name: str | None = None
    # (rate limit unique name, value): the service rate limits this send counts against, and
    # the value of each one's key (an end user's id, IP, session; Twilio's `RateLimits`).
    rate_limits: tuple[tuple[str, str], ...] = ()
    # What the per-IP limits count for `client_ip` (an IPv6 address by its /64).
    counted_ip: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        # Frozen: the normalised values are written once, here.
        object.__setattr__(self, "to", normalize(self.to, self.channel))
        length = self.code_length
        if length is not None and not MIN_CODE_LENGTH <= length <= MAX_CODE_LENGTH:
            raise InvalidParameter(f"code_length must be {CODE_DIGITS}")
        if self.custom_code is not None and not is_code(self.custom_code):
            raise InvalidParameter(f"a custom code must be {CODE_DIGITS}")
        if self.locale is not None:
            locale = (
                canonical_locale(self.locale) if len(self.locale) <= MAX_LOCALE_LENGTH else None
            )
            if locale is None:  # never a silent fallback to another language
                raise InvalidParameter(
                    f"locale must be one of clave's languages: {', '.join(LOCALES)}"
                )
            object.__setattr__(self, "locale", locale)
        if self.app_hash is not None and not _APP_HASH.fullmatch(self.app_hash):
            raise InvalidParameter("app_hash must be the 11-character Android app hash")
        if self.webotp_domain is not None:
            domain = self.webotp_domain.lower()
            if len(domain) > MAX_DOMAIN_LENGTH or not _DOMAIN.fullmatch(domain):
                raise InvalidParameter("webotp_domain must be a host name such as example.com")
            object.__setattr__(self, "webotp_domain", domain)
        if self.friendly_name is not None and not valid_friendly_name(self.friendly_name):
            raise InvalidParameter(FRIENDLY_NAME_RULE)
        if len(self.rate_limits) > MAX_RATE_LIMITS or any(
            not name or not value or len(name) > 64 or len(value) > MAX_RATE_LIMIT_VALUE
            for name, value in self.rate_limits
        ):
            raise InvalidParameter(
                f"RateLimits names at most {MAX_RATE_LIMITS} rate limits, each with a value of "
                f"1 to {MAX_RATE_LIMIT_VALUE} characters"
            )
        object.__setattr__(self, "counted_ip", counted_ip(self.client_ip))


@dataclass(frozen=True, slots=True)
class Terms:
    """What a new code means under the tenant's policy."""

    length: int
    # The PSD2 (amount, payee) bound to the code; None unless the tenant is psd2.
    payment: tuple[str, str] | None
    # The name its messages show: fixed with the send (a later rename of the tenant neither
    # changes a queued message nor re-sends a code under another name).
    name: str
    # Whether its messages carry "do not share this code" (unless the tenant turned it off).
    share_warning: bool = True
    # The Twilio Messaging Service for an SMS to the destination's country, if configured.
    messaging_service_sid: str | None = None


def terms_of(policy: Policy, request: StartRequest) -> Terms:
    """What the request's new code means under `policy`, refused where the policy forbids it."""
    return Terms(
        length=_code_length(policy, request),
        payment=bound_payment(policy, request.payment),
        name=request.friendly_name or policy.friendly_name,
        share_warning="no_share_warning" not in policy.flags,
        messaging_service_sid=(
            policy.messaging_service(region_of(request.to))
            if request.channel is Channel.SMS and policy.messaging
            else None
        ),
    )


def _code_length(policy: Policy, request: StartRequest) -> int:
    """The digits of a new code: the policy's, or more when the caller asks (a custom code is
    its own length); never fewer than the policy says."""
    requested = request.code_length
    if request.custom_code is not None:
        if "custom_code" not in policy.flags:
            raise InvalidParameter("custom codes are not enabled for this service")
        requested = len(request.custom_code)
    length = policy.code_length if requested is None else requested
    if not policy.code_length <= length <= MAX_CODE_LENGTH:
        what = "a custom code" if request.custom_code is not None else "code_length"
        raise InvalidParameter(
            f"{what} must be {policy.code_length} to {MAX_CODE_LENGTH} digits: this service's "
            f"codes are {policy.code_length} digits or longer"
        )
    return length


def bound_payment(policy: Policy, payment: tuple[str, str] | None) -> tuple[str, str] | None:
    """The (amount, payee) a psd2 tenant binds to the code (PSD2 dynamic linking), trimmed
    and validated; other tenants bind nothing and ignore a payment."""
    if "psd2" not in policy.flags:
        return None
    if payment is None or not all(part.strip() for part in payment):
        raise InvalidParameter("this service needs an amount and a payee (PSD2)")
    amount, payee = (part.strip() for part in payment)
    if len(amount) > MAX_AMOUNT_LENGTH or len(payee) > MAX_PAYEE_LENGTH:
        raise InvalidParameter(
            f"amount is at most {MAX_AMOUNT_LENGTH} and payee at most {MAX_PAYEE_LENGTH} characters"
        )
    if not (is_single_line(amount) and is_single_line(payee)):
        raise InvalidParameter("amount and payee must be printable text")
    return amount, payee


def counted_ip(client_ip: str | None) -> str | None:
    """What the per-IP limits count for an end user's address (IPv6 by its /64)."""
    if client_ip is None:
        return None
    try:
        return ip_bucket(client_ip)
    except ValueError:
        raise InvalidParameter("client_ip is not an IP address") from None
