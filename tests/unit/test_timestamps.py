"""The API's timestamps: verify.timestamps.iso prints what datetime prints, faster."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from clave.verify.timestamps import iso


def reference(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.mark.parametrize(
    "ts",
    [
        0.0,
        0.0005,
        0.9995,
        0.9999995,  # rounds up to the next second
        1.0000005,
        59.9999999,
        1_700_000_000.0,
        1_700_000_000.0005,
        1_700_000_000.9995,
        1_700_000_000.9999996,
        4_102_444_799.999,  # 2099-12-31T23:59:59.999Z
    ],
)
def test_edges_match_datetime(ts: float) -> None:
    assert iso(ts) == reference(ts)


def test_random_stamps_match_datetime() -> None:
    rng = random.Random(13)
    for _ in range(200_000):
        ts = rng.uniform(0, 4e9)
        assert iso(ts) == reference(ts), ts
        # Stamps as clocks and stores give them: a few decimals.
        ts = round(rng.uniform(1.6e9, 1.9e9), rng.randint(0, 6))
        assert iso(ts) == reference(ts), ts
