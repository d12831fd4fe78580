"""The native API's timestamps: RFC 3339 UTC with milliseconds."""

from __future__ import annotations

import math
import time

_SECONDS: dict[int, str] = {}  # whole seconds already formatted (a response has five stamps)


def iso(ts: float) -> str:
    """RFC 3339 UTC with milliseconds: what `datetime.fromtimestamp(ts, UTC)` would print,
    rounded to the microsecond as it does (half to even), in a third of its time."""
    fraction, whole = math.modf(ts)
    micros, seconds = round(fraction * 1e6), int(whole)
    if micros >= 1_000_000:
        micros, seconds = micros - 1_000_000, seconds + 1
    elif micros < 0:
        micros, seconds = micros + 1_000_000, seconds - 1
    head = _SECONDS.get(seconds)
    if head is None:
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        head = _SECONDS[seconds] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{head}.{micros // 1000:03d}Z"
