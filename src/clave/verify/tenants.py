"""Tenants (a "service" to the CLI and the HTTP APIs) with their policies, Twilio-compatible
accounts, and API keys with a life cycle (named, expiring, revocable), stored only as hashes."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace

from clave.verify.errors import (
    InvalidParameter,
    KeyNotFound,
    TenantNameTaken,
    TenantNotFound,
    Unauthorized,
)
from clave.verify.models import DEFAULT_GUESS_BUDGET, ApiKey, Policy, Tenant, new_id
from clave.verify.store.base import TenantStore

DEFAULT_TENANT = "default"
# A Twilio-compatible account is a tenant row of its own: its id is the account sid (AC...),
# its name "twilio-<account name>", its keys "<AC sid>:<auth token>" and "<SK sid>:<secret>".
# It sees and manages only the tenants it created and those granted to it.
ACCOUNT_PREFIX = "twilio-"
DEFAULT_ACCOUNT = "account"
# The single account of clave before accounts had names (its credentials keep working).
TWILIO_ACCOUNT = ACCOUNT_PREFIX + DEFAULT_ACCOUNT
KEY_PREFIX = "clave_"
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
# The shape of `new_id("VA")`: another id is not looked up (nor used as a store key).
_TENANT_ID = re.compile(r"VA[0-9a-f]{32}")
# How often a key's last use is written down: a worker looks a key up once per cache period,
# and a write per lookup would cost more than the information is worth.
_TOUCH_EVERY = 60.0


def hash_key(raw: str) -> bytes:
    """SHA-256 of an API key.

    Keys are 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    Lookup is by this hash, so no comparison of secrets happens in Python at all.
    """
    return hashlib.sha256(raw.encode()).digest()


def is_account(tenant: Tenant) -> bool:
    """Whether a tenant row is a Twilio-compatible account (which owns tenants) rather than a
    tenant that verifies."""
    return tenant.id.startswith("AC")


@dataclass(frozen=True, slots=True)
class KeyListing:
    """An API key as `clave apikey list` shows it (never the secret)."""

    key: ApiKey
    owner: Tenant  # the tenant, or the account for /v2 credentials

    def status(self, now: float) -> str:
        """active, revoked or expired."""
        if self.key.revoked_at is not None:
            return "revoked"
        return "active" if self.key.valid_at(now) else "expired"


class Tenants:
    """Creates tenants, accounts and keys, and resolves a presented key to its tenant."""

    def __init__(
        self,
        store: TenantStore,
        clock: Callable[[], float],
        *,
        cache_seconds: float = 5.0,
        guess_budget: tuple[int, float] = DEFAULT_GUESS_BUDGET,
    ) -> None:
        self._guess_budget = guess_budget
        self._store = store
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._cache: dict[bytes, tuple[float, Tenant]] = {}
        self._by_id: dict[str, tuple[float, Tenant]] = {}

    # -- authentication ---------------------------------------------------------------------

    async def authenticate(self, authorization: str | None) -> Tenant:
        """The tenant of `Authorization: Bearer <key>`; Unauthorized when missing or wrong."""
        if not authorization:
            raise Unauthorized("missing Authorization: Bearer <API key>")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > 200:
            raise Unauthorized("use Authorization: Bearer <API key>")
        tenant = await self.tenant_for_key(token)
        if is_account(tenant):  # an account's credentials are for /v2 only
            raise Unauthorized("the API key is not valid")
        return tenant

    async def tenant_for_key(self, raw_key: str) -> Tenant:
        """The tenant of a valid (neither revoked nor expired) key. Results are cached per
        worker for `cache_seconds` at most, never past the key's expiry: a revoked key stops
        working everywhere within that time."""
        digest = hash_key(raw_key)
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = await self._store.key_for_hash(digest)
        if found is None or not found[0].valid_at(now):
            self._cache.pop(digest, None)
            raise Unauthorized("the API key is not valid")
        key, tenant = found
        if key.last_used_at is None or now - key.last_used_at >= _TOUCH_EVERY:
            await self._store.touch_api_key(key.id, now=now)
        if len(self._cache) > 10_000:
            self._cache.clear()
        until = now + self._cache_seconds
        if key.expires_at is not None:
            until = min(until, key.expires_at)
        self._cache[digest] = (until, tenant)
        return tenant

    async def authenticate_twilio(self, authorization: str | None) -> Tenant:
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
        account = await self.tenant_for_key(f"{user}:{secret}")
        if not is_account(account):
            raise Unauthorized("these are not Twilio-compatible API credentials")
        return account

    # -- tenants ----------------------------------------------------------------------------

    async def ensure_tenant(self, name: str, policy: Policy) -> Tenant:
        """Create the tenant if missing, else give it `policy`'s settings (the deployment's,
        from the environment), keeping what only the APIs manage: its messaging
        configurations, rate limits and TOTP settings."""
        existing = await self._store.get_tenant_by_name(name)
        if existing is None:
            return await self.create_tenant(name, policy)

        def settled(stored: Policy) -> Policy:
            return replace(
                policy, messaging=stored.messaging, rate_limits=stored.rate_limits, totp=stored.totp
            )

        if settled(existing.policy) != existing.policy:
            return await self.change_policy(name, settled)
        return existing

    async def get_tenant_by_id(self, tenant_id: str, *, account: Tenant) -> Tenant:
        """A tenant by id (the Twilio API's sid), as `account` may see it: one it created or
        was granted; any other is not found, like one that does not exist. Cached per worker
        for as long as keys are."""
        if not _TENANT_ID.fullmatch(tenant_id):
            raise TenantNotFound(f"no service {tenant_id}")
        now = self._clock()
        cached = self._by_id.get(tenant_id)
        if cached is not None and cached[0] > now:
            found: Tenant | None = cached[1]
        else:
            found = await self._store.get_tenant(tenant_id)
            if found is not None:
                if len(self._by_id) > 10_000:
                    self._by_id.clear()
                self._by_id[tenant_id] = (now + self._cache_seconds, found)
        if found is None or account.id not in found.accounts:
            raise TenantNotFound(f"no service {tenant_id}")
        return found

    async def create_tenant(
        self,
        name: str,
        policy: Policy,
        *,
        tenant_id: str | None = None,
        account: Tenant | None = None,
    ) -> Tenant:
        """A new tenant (names are lowercase words), owned by `account` when one made it."""
        if not _NAME.fullmatch(name) or name.startswith(ACCOUNT_PREFIX):
            raise InvalidParameter(
                "service names are 1-63 of a-z, 0-9, '-' and '_', not starting with "
                f"{ACCOUNT_PREFIX!r}"
            )
        self._validate(policy)
        if await self._store.get_tenant_by_name(name) is not None:
            raise TenantNameTaken(f"service {name!r} already exists")
        tenant = Tenant(
            id=tenant_id or new_id("VA"),
            name=name,
            policy=policy,
            created_at=self._clock(),
            accounts=frozenset({account.id}) if account else frozenset(),
        )
        await self._store.put_tenant(tenant)
        return tenant

    async def update_policy(self, name: str, policy: Policy) -> Tenant:
        """Replace a tenant's policy."""
        return await self.change_policy(name, lambda _: policy)

    async def change_policy(self, name: str, change: Callable[[Policy], Policy]) -> Tenant:
        """Apply `change` to the tenant's policy as stored now (not a cached copy, which
        another worker may have changed since), validate the result and store it."""
        existing = await self.get_tenant(name)
        now = self._clock()

        def changed(stored: Tenant) -> Tenant:
            policy = change(stored.policy)
            self._validate(policy)
            return replace(stored, policy=policy, updated_at=now)

        return await self._change(existing, changed)

    async def _change(self, tenant: Tenant, change: Callable[[Tenant], Tenant]) -> Tenant:
        """Apply `change` to the tenant as stored, atomically (the store's change_tenant):
        a concurrent change of another field is kept, a concurrent delete wins."""
        updated = await self._store.change_tenant(tenant.id, change)
        self._forget()  # this worker sees the change at once; others within the TTL
        if updated is None:
            raise TenantNotFound(f"no service named {tenant.name!r}")
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
        """The tenants whose policy breaks the guess bound under this deployment's budget,
        each with why (a deployment budget raised after they were created)."""
        return [
            f"{s.name}: {problem}"
            for s in await self.list_tenants()
            if (problem := s.policy.guess_problem(self._guess_budget))
        ]

    async def get_tenant(self, name: str) -> Tenant:
        """A tenant by name."""
        found = await self._store.get_tenant_by_name(name)
        if found is None or is_account(found):
            raise TenantNotFound(f"no service named {name!r}")
        return found

    async def list_tenants(self, *, account: Tenant | None = None) -> list[Tenant]:
        """Every tenant (accounts are not tenants); with `account`, those it may see."""
        return [
            s
            for s in await self._store.list_tenants()
            if not is_account(s) and (account is None or account.id in s.accounts)
        ]

    async def delete_tenant(self, tenant: Tenant) -> None:
        """Delete a tenant and its keys."""
        if is_account(tenant):
            raise InvalidParameter("an account is not a service")
        await self._store.delete_tenant(tenant.id)
        self._forget()

    async def grant(self, tenant_name: str, account_name: str, *, granted: bool = True) -> Tenant:
        """Let an account see and manage a tenant through /v2 (or, `granted=False`, stop)."""
        tenant = await self.get_tenant(tenant_name)
        account = await self.get_account(account_name)

        def change(stored: Tenant) -> Tenant:
            accounts = stored.accounts - {account.id}
            return replace(stored, accounts=accounts | {account.id} if granted else accounts)

        return await self._change(tenant, change)

    async def adopt_v2_tenants(self) -> int:
        """Hand the tenants made through /v2 before accounts owned tenants (named after
        their own sid) to the one account of that time; how many. Idempotent."""
        legacy = await self._store.get_tenant_by_name(TWILIO_ACCOUNT)
        if legacy is None:
            return 0
        adopted = 0
        for tenant in await self.list_tenants():
            if not tenant.accounts and tenant.name == tenant.id.lower():
                await self._change(tenant, lambda t: replace(t, accounts=t.accounts | {legacy.id}))
                adopted += 1
        return adopted

    def _forget(self) -> None:
        self._cache.clear()
        self._by_id.clear()

    # -- accounts ----------------------------------------------------------------------------

    async def list_accounts(self) -> list[Tenant]:
        """Every Twilio-compatible account."""
        return [s for s in await self._store.list_tenants() if is_account(s)]

    async def get_account(self, name: str) -> Tenant:
        """A Twilio-compatible account by its name."""
        found = await self._store.get_tenant_by_name(ACCOUNT_PREFIX + name)
        if found is None or not is_account(found):
            raise TenantNotFound(f"no account named {name!r}")
        return found

    async def create_twilio_credentials(
        self, policy: Policy, *, account: str = DEFAULT_ACCOUNT, expires_at: float | None = None
    ) -> tuple[str, str, str, str]:
        """(account sid, auth token, API key sid, API key secret) for the Twilio-compatible
        API: the account is created on first use; each call adds a token and an API key to it.
        Only hashes are stored, so show them once."""
        if not _NAME.fullmatch(account):
            raise InvalidParameter("account names are 1-63 of a-z, 0-9, '-' and '_'")
        owner = await self._store.get_tenant_by_name(ACCOUNT_PREFIX + account)
        if owner is None:
            owner = Tenant(
                id=new_id("AC"),
                name=ACCOUNT_PREFIX + account,
                policy=policy,
                created_at=self._clock(),
            )
            await self._store.put_tenant(owner)
        token = secrets.token_hex(16)
        key_sid, key_secret = new_id("SK"), secrets.token_urlsafe(24)
        await self._add_key(
            owner.id, f"{owner.id}:{token}", name="auth token", expires_at=expires_at
        )
        await self._add_key(
            owner.id,
            f"{key_sid}:{key_secret}",
            key_id=key_sid,
            name="API key",
            expires_at=expires_at,
        )
        return owner.id, token, key_sid, key_secret

    # -- keys --------------------------------------------------------------------------------

    async def create_api_key(
        self,
        tenant_name: str = DEFAULT_TENANT,
        *,
        name: str = "",
        expires_at: float | None = None,
    ) -> str:
        """A new API key for the tenant; only its hash is stored, so show it once."""
        tenant = await self.get_tenant(tenant_name)
        raw = KEY_PREFIX + secrets.token_urlsafe(32)
        await self._add_key(tenant.id, raw, name=name, expires_at=expires_at)
        return raw

    async def install_api_key(self, tenant_name: str, raw: str, *, name: str) -> bool:
        """Accept a key made elsewhere (a deployment's secret, installed under `name`) for the
        tenant; False when it was already there. The keys installed under the same name
        before are revoked: rotating the secret ends the old one. Only its hash is stored."""
        if len(raw) < 32 or len(raw) > 200 or not raw.isprintable() or " " in raw:
            raise InvalidParameter("an installed API key must be 32-200 printable characters")
        tenant = await self.get_tenant(tenant_name)
        existing = await self._store.key_for_hash(hash_key(raw))
        now = self._clock()
        if existing is not None and existing[1].id != tenant.id:
            raise InvalidParameter("that API key belongs to another service")
        if existing is not None and existing[0].revoked_at is not None:
            raise InvalidParameter("that API key was revoked: install a new secret")
        for key in await self._store.list_api_keys(tenant.id):
            if key.name == name and key.revoked_at is None and key.key_hash != hash_key(raw):
                await self._store.revoke_api_key(key.id, now=now)
        if existing is not None:
            return False
        await self._add_key(tenant.id, raw, name=name)
        return True

    async def list_api_keys(
        self, *, tenant: str | None = None, account: str | None = None, twilio: bool = False
    ) -> list[KeyListing]:
        """Keys with their owners: of one tenant, of one account, of every account
        (`twilio`), or of every tenant."""
        owners = {s.id: s for s in await self._store.list_tenants()}
        if tenant is not None:
            wanted = {(await self.get_tenant(tenant)).id}
        elif account is not None:
            wanted = {(await self.get_account(account)).id}
        else:
            wanted = {sid for sid, s in owners.items() if is_account(s) == twilio}
        return [
            KeyListing(key, owners[key.tenant_id])
            for key in await self._store.list_api_keys()
            if key.tenant_id in wanted
        ]

    async def revoke_api_key(self, key_id: str) -> None:
        """End a key (every worker refuses it within the key cache period)."""
        if not await self._store.revoke_api_key(key_id, now=self._clock()):
            raise KeyNotFound(f"no active API key {key_id!r}")
        self._forget()

    async def _add_key(
        self,
        tenant_id: str,
        raw: str,
        *,
        key_id: str | None = None,
        name: str = "",
        expires_at: float | None = None,
    ) -> None:
        """Store a key for the tenant: its hash only."""
        if expires_at is not None and expires_at <= self._clock():
            raise InvalidParameter("a key's expiry must be in the future")
        await self._store.add_api_key(
            ApiKey(
                id=key_id or new_id("SK"),
                tenant_id=tenant_id,
                key_hash=hash_key(raw),
                created_at=self._clock(),
                name=name,
                expires_at=expires_at,
            )
        )
