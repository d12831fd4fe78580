"""Secrets encrypted at rest (a TOTP factor's secret): AES-256-GCM under keys from
CLAVE_ENCRYPTION_KEYS, newest first.

A sealed secret is `key id`, a random 96-bit nonce and the ciphertext with its tag. The
factor's id is the associated data, so a sealed secret copied onto another factor does not
open. New secrets are sealed under the newest key; older keys stay readable while they are
configured, and `clave factors rekey` seals every secret under the newest one, after which an
old key may go. A copy of the database alone reveals no secret.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from typing import Any

from clave.platform.errors import StoreError
from clave.verify.factor_models import Sealed

KEY_BYTES = 32  # AES-256
_NONCE_BYTES = 12


class SecretBox:
    """Seals and opens secrets under a set of AES-256 keys by id."""

    def __init__(self, keys: Mapping[str, bytes], active_key_id: str) -> None:
        if active_key_id not in keys:
            raise ValueError(f"active key {active_key_id!r} is not among the configured keys")
        for key_id, key in keys.items():
            if len(key) != KEY_BYTES:
                raise ValueError(f"encryption key {key_id!r} must be {KEY_BYTES} bytes")
        self._keys = dict(keys)
        self._ciphers: dict[str, Any] = {}  # AESGCM by key id, made on first use
        self._active = active_key_id

    def _cipher(self, key_id: str) -> Any:
        """The key's AES-GCM (the cryptography package is loaded on first use: a worker
        that never touches a factor does not carry it)."""
        found = self._ciphers.get(key_id)
        if found is None and key_id in self._keys:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            found = self._ciphers[key_id] = AESGCM(self._keys[key_id])
        return found

    @property
    def active_key_id(self) -> str:
        """The key new secrets are sealed under."""
        return self._active

    def seal(self, secret: bytes, *, bound_to: str) -> Sealed:
        """`secret` encrypted under the newest key, bound to `bound_to` (the owner's id)."""
        nonce = os.urandom(_NONCE_BYTES)
        cipher = self._cipher(self._active)
        sealed: bytes = cipher.encrypt(nonce, secret, bound_to.encode())
        return Sealed(self._active, nonce, sealed)

    def open(self, sealed: Sealed, *, bound_to: str) -> bytes:
        """The secret; StoreError when its key is no longer configured or it does not open
        (tampered with, or sealed for another owner)."""
        cipher = self._cipher(sealed.key_id)
        if cipher is None:
            where = (
                f"CLAVE_HMAC_KEYS (it is derived from HMAC key {sealed.key_id[5:]!r}), then set "
                "CLAVE_ENCRYPTION_KEYS and run `clave factors rekey`"
                if sealed.key_id.startswith("hkdf-")
                else "CLAVE_ENCRYPTION_KEYS"
            )
            raise StoreError(
                f"a secret is sealed under encryption key {sealed.key_id!r}, which is not "
                f"configured: add it back to {where}"
            )
        from cryptography.exceptions import InvalidTag

        try:
            opened: bytes = cipher.decrypt(sealed.nonce, sealed.ciphertext, bound_to.encode())
        except InvalidTag:
            raise StoreError("a sealed secret does not open: altered, or not this one's") from None
        return opened

    def rekeyed(self, sealed: Sealed, *, bound_to: str) -> Sealed | None:
        """The secret sealed under the newest key, or None when it already is."""
        if sealed.key_id == self._active:
            return None
        return self.seal(self.open(sealed, bound_to=bound_to), bound_to=bound_to)


def hkdf_sha256(secret: bytes, *, info: bytes, length: int = KEY_BYTES) -> bytes:
    """RFC 5869's HKDF with SHA-256 and no salt (extract, then expand): a key for `info`
    derived from `secret`. (Written out with hmac so deriving keys at start-up does not load
    the cryptography package; the tests check it against that package's HKDF.)"""
    prk = hmac.new(b"\x00" * hashlib.sha256().digest_size, secret, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out, counter = out + block, counter + 1
    return out[:length]
