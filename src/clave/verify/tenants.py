"""Tenants: services with their policies, and API keys stored only as hashes."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import replace

from clave.verify.errors import InvalidParameter, ServiceNotFound, Unauthorized
from clave.verify.models import DEFAULT_GUESS_BUDGET, ApiKey, Policy, Service, new_id
from clave.verify.store.base import VerificationStore

DEFAULT_SERVICE = "default"
# The tenant that holds the Twilio-compatible API's account: its id is the account sid (AC...),
# its keys are "<AC sid>:<auth token>" and "<SK sid>:<secret>". It manages every service.
TWILIO_ACCOUNT = "twilio-account"
KEY_PREFIX = "clave_"
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
# The shape of `new_id("VA")`: another id is not looked up (nor used as a store key).
_SERVICE_ID = re.compile(r"VA[0-9a-f]{32}")


def hash_key(raw: str) -> bytes:
    """SHA-256 of an API key.

    Keys are 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    Lookup is by this hash, so no comparison of secrets happens in Python at all.
    """
    return hashlib.sha256(raw.encode()).digest()


class TenantService:
    """Creates services and keys, and resolves a bearer key to its service."""

    def __init__(
        self,
        store: VerificationStore,
        clock: Callable[[], float],
        *,
        cache_seconds: float = 5.0,
        guess_budget: tuple[int, float] = DEFAULT_GUESS_BUDGET,
    ) -> None:
        self._guess_budget = guess_budget
        self._store = store
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._cache: dict[bytes, tuple[float, Service]] = {}
        self._by_id: dict[str, tuple[float, Service]] = {}

    async def authenticate(self, authorization: str | None) -> Service:
        """The service of `Authorization: Bearer <key>`; Unauthorized when missing or wrong."""
        if not authorization:
            raise Unauthorized("missing Authorization: Bearer <API key>")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > 200:
            raise Unauthorized("use Authorization: Bearer <API key>")
        service = await self.service_for_key(token)
        if service.name == TWILIO_ACCOUNT:  # its credentials are for /v2 only
            raise Unauthorized("the API key is not valid")
        return service

    async def service_for_key(self, raw_key: str) -> Service:
        """Resolve a raw key; results are cached for a few seconds per worker."""
        digest = hash_key(raw_key)
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        service = await self._store.service_for_key(digest)
        if service is None:
            raise Unauthorized("the API key is not valid")
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now + self._cache_seconds, service)
        return service

    async def ensure_service(self, name: str, policy: Policy) -> Service:
        """Create the service if missing, else set its policy to `policy`."""
        existing = await self._store.get_service_by_name(name)
        if existing is None:
            return await self.create_service(name, policy)
        if existing.policy != policy:
            existing = replace(existing, policy=policy)
            await self._store.put_service(existing)
        return existing

    async def get_service_by_id(self, service_id: str) -> Service:
        """A service by id (the Twilio API's sid), cached per worker for as long as keys are;
        the account is not a service."""
        if not _SERVICE_ID.fullmatch(service_id):
            raise ServiceNotFound(f"no service {service_id}")
        now = self._clock()
        cached = self._by_id.get(service_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = await self._store.get_service(service_id)
        if found is None or found.name == TWILIO_ACCOUNT:
            raise ServiceNotFound(f"no service {service_id}")
        if len(self._by_id) > 10_000:
            self._by_id.clear()
        self._by_id[service_id] = (now + self._cache_seconds, found)
        return found

    async def create_service(
        self, name: str, policy: Policy, *, service_id: str | None = None
    ) -> Service:
        """A new service; names are lowercase words."""
        if not _NAME.fullmatch(name):
            raise InvalidParameter("service names are 1-63 of a-z, 0-9, '-' and '_'")
        self._validate(policy)
        if await self._store.get_service_by_name(name) is not None:
            raise InvalidParameter(f"service {name!r} already exists")
        service = Service(
            id=service_id or new_id("VA"), name=name, policy=policy, created_at=self._clock()
        )
        await self._store.put_service(service)
        return service

    async def update_policy(self, name: str, policy: Policy) -> Service:
        """Replace a service's policy."""
        self._validate(policy)
        existing = await self.get_service(name)
        updated = replace(existing, policy=policy)
        await self._store.put_service(updated)
        self._cache.clear()  # this worker sees the change at once; others within the TTL
        self._by_id.clear()
        return updated

    def _validate(self, policy: Policy) -> None:
        """InvalidParameter naming every problem, the guess bound included."""
        problems = policy.problems()
        guess_problem = policy.guess_problem(self._guess_budget)
        if guess_problem:
            problems.append(guess_problem)
        if problems:
            raise InvalidParameter("; ".join(problems))

    async def over_the_guess_bound(self) -> list[str]:
        """The services whose policy breaks the guess bound under this deployment's budget,
        each with why (a deployment budget raised after they were created)."""
        return [
            f"{s.name}: {problem}"
            for s in await self.list_services()
            if (problem := s.policy.guess_problem(self._guess_budget))
        ]

    async def get_service(self, name: str) -> Service:
        """A service by name."""
        found = await self._store.get_service_by_name(name)
        if found is None:
            raise ServiceNotFound(f"no service named {name!r}")
        return found

    async def list_services(self) -> list[Service]:
        """Every service (the Twilio API's account is not one)."""
        return [s for s in await self._store.list_services() if s.name != TWILIO_ACCOUNT]

    async def install_api_key(self, service_name: str, raw: str) -> bool:
        """Accept a key made elsewhere (a deployment's secret) for the service; False when it
        was already there. Only its hash is stored."""
        if len(raw) < 32 or len(raw) > 200 or not raw.isprintable() or " " in raw:
            raise InvalidParameter("an installed API key must be 32-200 printable characters")
        service = await self.get_service(service_name)
        existing = await self._store.service_for_key(hash_key(raw))
        if existing is not None:
            if existing.id != service.id:
                raise InvalidParameter("that API key belongs to another service")
            return False
        await self._add_key(service.id, raw)
        return True

    async def create_twilio_credentials(self, policy: Policy) -> tuple[str, str, str, str]:
        """(account sid, auth token, API key sid, API key secret) for the Twilio-compatible
        API: the account is created on first use; each call adds a token and an API key.
        Only hashes are stored, so show them once."""
        account = await self._store.get_service_by_name(TWILIO_ACCOUNT)
        if account is None:
            account = Service(
                id=new_id("AC"), name=TWILIO_ACCOUNT, policy=policy, created_at=self._clock()
            )
            await self._store.put_service(account)
        token = secrets.token_hex(16)
        key_sid, key_secret = new_id("SK"), secrets.token_urlsafe(24)
        await self._add_key(account.id, f"{account.id}:{token}")
        await self._add_key(account.id, f"{key_sid}:{key_secret}", key_id=key_sid)
        return account.id, token, key_sid, key_secret

    async def authenticate_twilio(self, authorization: str | None) -> Service:
        """The Twilio account of `Authorization: Basic base64(sid:secret)` (an account sid
        with its auth token, or an API key sid with its secret); Unauthorized otherwise."""
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic" or not encoded.strip() or len(encoded) > 400:
            raise Unauthorized("use HTTP Basic: account sid and auth token, or API key and secret")
        if not encoded.isascii():  # base64 is ASCII; b64decode would raise a bare ValueError
            raise Unauthorized("the Authorization header is not valid Basic credentials")
        try:
            user, sep, secret = (
                base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("the Authorization header is not valid Basic credentials") from None
        if not sep or not user or not secret:
            raise Unauthorized("the Authorization header is not valid Basic credentials")
        account = await self.service_for_key(f"{user}:{secret}")
        if account.name != TWILIO_ACCOUNT:
            raise Unauthorized("these are not Twilio-compatible API credentials")
        return account

    async def delete_service(self, service: Service) -> None:
        """Delete a service and its keys."""
        if service.name == TWILIO_ACCOUNT:
            raise InvalidParameter("the account is not a service")
        await self._store.delete_service(service.id)
        self._cache.clear()
        self._by_id.clear()

    async def create_api_key(self, service_name: str = DEFAULT_SERVICE) -> str:
        """A new API key for the service; only its hash is stored, so show it once."""
        service = await self.get_service(service_name)
        raw = KEY_PREFIX + secrets.token_urlsafe(32)
        await self._add_key(service.id, raw)
        return raw

    async def _add_key(self, service_id: str, raw: str, *, key_id: str | None = None) -> None:
        """Store a key for the service: its hash only."""
        await self._store.add_api_key(
            ApiKey(
                id=key_id or new_id("SK"),
                service_id=service_id,
                key_hash=hash_key(raw),
                created_at=self._clock(),
            )
        )
