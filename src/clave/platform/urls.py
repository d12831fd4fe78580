"""URLs that may carry credentials."""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit


def redacted(url: str) -> str:
    """A URL fit for a log line or an error: its password replaced."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def with_password(url: str, password: str) -> str:
    """`url` with `password` put in, percent-quoted so that any character may be in it (a
    secret given apart from its URL, e.g. by ECS); ValueError when the URL holds one already."""
    parts = urlsplit(url)
    if parts.password is not None:
        raise ValueError("the URL holds a password already")
    # The user name as the URL gave it (already quoted), or none.
    user = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    netloc = f"{user}:{quote(password, safe='')}@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc))
