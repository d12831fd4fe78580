"""Typed errors of the threads domain."""

from __future__ import annotations

from clave.platform.errors import ClaveError


class ThreadNotFound(ClaveError):
    """No thread with that id."""

    status = 404
    code = "thread_not_found"


class InvalidThread(ClaveError):
    """A field of a thread is not acceptable."""

    status = 400
    code = "invalid_parameter"


class NotCreator(ClaveError):
    """The token is not the thread's creator's (or `createdBy` is not the token's user)."""

    status = 403
    code = "forbidden"
