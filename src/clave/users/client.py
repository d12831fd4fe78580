"""The users domain's client, for other domains."""

from __future__ import annotations

import httpx

from clave.platform.client import DependencyUnavailable, ServiceClient
from clave.users.errors import Unauthorized
from clave.users.tokens import bearer_token


class UsersClient:
    """Ask the users service who a request's bearer token belongs to."""

    def __init__(self, http: httpx.AsyncClient, *, retries: int = 2) -> None:
        # The caller's token goes with each request, so the ServiceClient (its retries, its
        # typed failures) is made per call over this one connection pool.
        self._http = http
        self._retries = retries

    async def caller(self, authorization: str | None) -> int:
        """The id of the user whose token `authorization` (the incoming request's header)
        carries; Unauthorized (401) when there is none or it is not valid,
        DependencyUnavailable (503) when users does not answer."""
        # A malformed header is refused here, as users would: it is never forwarded (httpx
        # could not even encode a non-ASCII one).
        token = bearer_token(authorization)
        client = ServiceClient(
            "users", self._http, retries=self._retries, headers={"Authorization": f"Bearer {token}"}
        )
        response = await client.request("GET", "/api/users/me")
        if response.status_code == 401:
            raise Unauthorized("the token is not valid")
        if response.status_code != 200:
            raise client.refused(response)
        try:
            return int(response.json()["id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DependencyUnavailable("the users service answered without a user") from exc

    async def aclose(self) -> None:
        """Close connections."""
        await self._http.aclose()
