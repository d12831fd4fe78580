"""Typed errors of the posts domain."""

from __future__ import annotations

from clave.platform.errors import ClaveError


class PostNotFound(ClaveError):
    """No post with that id."""

    status = 404
    code = "post_not_found"


class InvalidPost(ClaveError):
    """A field of a post is not acceptable."""

    status = 400
    code = "invalid_parameter"


class NotAuthor(ClaveError):
    """The token is not the post's author's (or `user` is not the token's user)."""

    status = 403
    code = "forbidden"


class UnknownReference(ClaveError):
    """The post names a thread that does not exist."""

    status = 422
    code = "unknown_reference"
