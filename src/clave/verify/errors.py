"""Typed errors of the verify domain; each carries its HTTP status and a stable code."""

from __future__ import annotations

import math

from clave.platform.errors import ClaveError


class InvalidParameter(ClaveError):
    """A request value is not acceptable."""

    status = 400
    code = "invalid_parameter"


class QueryTooBroad(InvalidParameter):
    """A report would read more rows than one request may: narrow it."""


class TooManyBuckets(InvalidParameter):
    """A rate limit holds its most buckets already (Twilio's 60210)."""

    code = "too_many_buckets"


class NoTargetVerification(InvalidParameter):
    """A check that names neither the verification nor its destination (Twilio's 60221)."""

    code = "no_target_verification"


class InvalidDestination(InvalidParameter):
    """`to` is not a valid phone number or email address for the channel."""

    code = "invalid_destination"


class ChannelNotAllowed(ClaveError):
    """The tenant's policy does not allow this channel."""

    status = 422
    code = "channel_not_allowed"


class SmsToLandline(ClaveError):
    """An SMS to a fixed line, refused because the tenant skips them (skip_sms_to_landlines)."""

    status = 422
    code = "sms_to_landline"


class ChannelUnavailable(ClaveError):
    """No delivery provider is configured for this channel, so a send would be lost."""

    status = 422
    code = "channel_unavailable"


class Unauthorized(ClaveError):
    """The API key is missing or wrong."""

    status = 401
    code = "unauthorized"

    def __init__(self, message: str = "a valid API key is required") -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="clave"'})


class Forbidden(ClaveError):
    """The caller may not use this route from where it is."""

    status = 403
    code = "forbidden"


class VerificationNotFound(ClaveError):
    """No such verification, or it is no longer pending (approved, expired, canceled)."""

    status = 404
    code = "verification_not_found"


class VerificationNotPending(ClaveError):
    """The verification is closed and cannot change."""

    status = 409
    code = "verification_not_pending"


class MaxChecksReached(ClaveError):
    """Every check attempt of the verification is used; it is locked."""

    status = 429
    code = "max_check_attempts_reached"


class MaxSendsReached(ClaveError):
    """Too many sends to this destination in the window."""

    status = 429
    code = "max_send_attempts_reached"

    def __init__(self, message: str, retry_after: float) -> None:
        seconds = max(1, math.ceil(retry_after))
        super().__init__(message, headers={"Retry-After": str(seconds)})
        self.retry_after = seconds


class RateLimited(ClaveError):
    """A limit is reached; Retry-After says when to try again. Each limit has its own code."""

    status = 429

    def __init__(self, code: str, message: str, retry_after: float) -> None:
        seconds = max(1, math.ceil(retry_after))
        super().__init__(message, headers={"Retry-After": str(seconds)})
        self.code = code
        self.retry_after = seconds


class TenantNotFound(ClaveError):
    """No such tenant."""

    status = 404
    code = "service_not_found"


class FactorNotFound(ClaveError):
    """No such factor of the tenant (or none to challenge)."""

    status = 404
    code = "factor_not_found"


class TenantNameTaken(ClaveError):
    """Another tenant already has that name (names are unique)."""

    status = 409
    code = "service_name_taken"


class KeyNotFound(ClaveError):
    """No such API key (or it was already revoked)."""

    status = 404
    code = "api_key_not_found"


class BadSignature(ClaveError):
    """A provider callback is not signed with the shared secret (or is stale)."""

    status = 403
    code = "bad_signature"


class UnknownMessage(ClaveError):
    """No send attempt has that provider message id."""

    status = 404
    code = "unknown_message"


class CountryNotAllowed(ClaveError):
    """The tenant does not send to the destination's country (geo permissions)."""

    status = 403
    code = "country_not_allowed"


class DestinationBlocked(ClaveError):
    """The destination is in a blocked number range."""

    status = 403
    code = "destination_blocked"
