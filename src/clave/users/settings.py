"""Settings of the users domain, read once at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from clave.platform.settings import Env


@dataclass(frozen=True, slots=True)
class UsersSettings:
    """How much one forum user may ask of verify."""

    # Verification starts per user per day, whatever its phone or email: changing the contact
    # between starts must not buy a fresh budget (verify's own limits count per destination).
    verifications_per_day: int

    @classmethod
    def from_env(cls, env: Env) -> UsersSettings:
        """Build from `CLAVE_USERS_*` variables."""
        return cls(
            verifications_per_day=env.integer("USERS_VERIFICATIONS_PER_DAY", 5, low=1, high=1000),
        )
