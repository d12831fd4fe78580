"""Typed errors of the users domain."""

from __future__ import annotations

from clave.platform.errors import ClaveError


class InvalidUser(ClaveError):
    """A field of a user is not acceptable."""

    status = 400
    code = "invalid_parameter"


class UserNotFound(ClaveError):
    """No user with that id."""

    status = 404
    code = "user_not_found"


class UsernameTaken(ClaveError):
    """Another user has that username."""

    status = 409
    code = "username_taken"


class ContactMissing(ClaveError):
    """The user has no phone number (or email) to verify."""

    status = 422
    code = "contact_missing"


class NoPendingVerification(ClaveError):
    """There is no verification of the user's contact to check."""

    status = 409
    code = "no_pending_verification"


class Unauthorized(ClaveError):
    """No valid user token: missing, malformed, unknown or revoked."""

    status = 401
    code = "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="clave"'})


class Forbidden(ClaveError):
    """A valid token, of another user than the one the request acts on."""

    status = 403
    code = "forbidden"


class TooManyVerifications(ClaveError):
    """The user started as many verifications as a day allows."""

    status = 429
    code = "too_many_verifications"


class SecondFactorRequired(ClaveError):
    """The user signs in with an authenticator app too: its code is missing or wrong."""

    status = 401
    code = "second_factor_required"


class NoAuthenticatorToConfirm(ClaveError):
    """The user added no authenticator app waiting for its first code."""

    status = 409
    code = "no_authenticator_to_confirm"


class TooManyAuthenticators(ClaveError):
    """The user has as many authenticator apps waiting for a first code as it may."""

    status = 409
    code = "too_many_authenticators"
