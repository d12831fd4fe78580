"""Typed errors of the threads domain."""

from __future__ import annotations

from clave.platform.errors import ClaveError


class ThreadNotFound(ClaveError):
    """No thread with that id."""

    status = 404
    code = "thread_not_found"


class UnknownUser(ClaveError):
    """`createdBy` names no user."""

    status = 422
    code = "unknown_user"
