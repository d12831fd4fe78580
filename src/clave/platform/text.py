"""Checks on free text that reaches messages, pages and logs."""

from __future__ import annotations

# Line breaks and tabs are the only non-printable characters multi-line text may hold.
_LAYOUT = str.maketrans("", "", "\n\r\t")


def is_single_line(text: str) -> bool:
    """No control, format or separator characters (only the plain space): safe to put into an
    SMS, a subject or a log line as it is. A name with `\\r\\n` or a right-to-left override
    could otherwise forge a line of the message it is shown in."""
    return text.isprintable()


def is_plain_text(text: str) -> bool:
    """Like `is_single_line`, but line breaks and tabs are allowed (a bio, a post)."""
    return text.translate(_LAYOUT).isprintable()
