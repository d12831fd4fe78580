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
