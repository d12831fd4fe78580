"""Plain data of the threads domain."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Thread:
    """A discussion thread."""

    id: int
    title: str
    created_by: int
    created_at: float
    updated_at: float


# The three threads of the original sample, seeded on first start when CLAVE_SEED is on.
SEED: tuple[tuple[int, str, int], ...] = (
    (1, "What's up with the Lich?", 4),
    (2, "Party at the candy kingdom tomorrow", 3),
    (3, "In search of a new guitar", 1),
)
