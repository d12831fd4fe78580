"""Typed errors of the posts domain."""

from __future__ import annotations

from clave.platform.errors import ClaveError


class PostNotFound(ClaveError):
    """No post with that id."""

    status = 404
    code = "post_not_found"


class UnknownReference(ClaveError):
    """The post names a thread or user that does not exist."""

    status = 422
    code = "unknown_reference"
