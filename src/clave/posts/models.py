"""Plain data of the posts domain."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Post:
    """A post by a user in a thread."""

    id: int
    thread: int
    text: str
    user: int
    created_at: float
    updated_at: float


# The six posts of the original sample: (id, thread, text, user).
SEED: tuple[tuple[int, int, str, int], ...] = (
    (1, 1, "Has anyone checked on the lich recently?", 4),
    (2, 1, "I'll stop by and see how he's doing tomorrow!", 2),
    (3, 2, "Come party with the candy people tomorrow!", 3),
    (4, 2, "Mathematical!", 2),
    (5, 2, "I'll bring my guitar", 1),
    (6, 3, "I need a new guitar to play the most savory licks in Ooo", 1),
)
