"""A service's own rate limits (Twilio Verify's Service Rate Limits and their Buckets), as a
tenant's policy holds them. limits.py counts the sends against them."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Service rate limits (Twilio's programmable rate limits): how many a service and a limit hold,
# and the bounds of a bucket.
MAX_RATE_LIMITS = 10
MAX_BUCKETS = 10
BUCKET_MAX = 1_000_000
BUCKET_INTERVAL = 30 * 86400
_UNIQUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True, slots=True)
class Bucket:
    """At most `max` sends per `interval` seconds for each value of its rate limit's key."""

    sid: str  # BL and 32 hex digits
    max: int
    interval: int
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class ServiceRateLimit:
    """A key a send names a value for (`RateLimits={"<unique_name>": "<value>"}`: an end
    user's id, IP or session), and the buckets each value's sends are counted in."""

    sid: str  # RK and 32 hex digits
    unique_name: str
    description: str | None
    created_at: float
    updated_at: float
    buckets: tuple[Bucket, ...] = ()


def rate_limit_problems(rate_limits: tuple[ServiceRateLimit, ...]) -> list[str]:
    """Why these rate limits cannot be stored; empty when they can."""
    found = []
    if len(rate_limits) > MAX_RATE_LIMITS:
        found.append(f"a service has at most {MAX_RATE_LIMITS} rate limits")
    if len({r.unique_name for r in rate_limits}) != len(rate_limits):
        found.append("rate limit unique names are unique within a service")
    for rule in rate_limits:
        if not _UNIQUE_NAME.fullmatch(rule.unique_name):
            found.append("a rate limit's unique name is 1 to 64 of A-Z, a-z, 0-9, '.', '_' and '-'")
        if len(rule.buckets) > MAX_BUCKETS:
            found.append(f"a rate limit has at most {MAX_BUCKETS} buckets")
        for bucket in rule.buckets:
            if not 1 <= bucket.max <= BUCKET_MAX:
                found.append(f"a bucket's max is 1 to {BUCKET_MAX}")
            if not 1 <= bucket.interval <= BUCKET_INTERVAL:
                found.append(f"a bucket's interval is 1 to {BUCKET_INTERVAL} seconds")
    return found
