"""One-time codes: derived from `secrets` randomness, kept only as keyed HMACs.

The store never holds a code. It holds, per verification, a key id, a random seed and
HMAC-SHA256(key, code). The code is a keyed function of the seed, so delivery and resends
render the same code from the seed without it ever being written down, while a copy of the
database alone reveals nothing. Checks compare in constant time against every configured key,
so keys can rotate: new codes use the first (newest) key, older ones stay checkable while their
key stays configured.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping

from clave.verify.models import SealedCode

_SEED_LABEL = b"clave/code-seed/v1\x00"
_DIGEST_LABEL = b"clave/code-digest/v1\x00"
_BINDING_LABEL = b"clave/binding/v1\x00"
MIN_KEY_BYTES = 32
_SEED_BYTES = 16


class CodeHasher:
    """Issues, reveals and checks codes under a set of HMAC keys."""

    def __init__(self, keys: Mapping[str, bytes], active_key_id: str) -> None:
        if active_key_id not in keys:
            raise ValueError(f"active key {active_key_id!r} is not among the configured keys")
        for key_id, secret in keys.items():
            if len(secret) < MIN_KEY_BYTES:
                raise ValueError(f"HMAC key {key_id!r} is shorter than {MIN_KEY_BYTES} bytes")
        self._keys = dict(keys)
        self._active = active_key_id

    @property
    def active_key_id(self) -> str:
        """The key id new codes are sealed under."""
        return self._active

    def issue(self, verification_id: str, length: int, context: str = "") -> SealedCode:
        """Seal a fresh random code for `verification_id`. A non-empty `context` (PSD2: the
        amount and the payee) is bound into the digest: a check must repeat it to match."""
        seed = secrets.token_bytes(_SEED_BYTES)
        code = self._derive(self._keys[self._active], verification_id, seed, length)
        digest = self._digest(self._keys[self._active], verification_id, code + context)
        return SealedCode(key_id=self._active, seed=seed, digest=digest)

    def seal(self, verification_id: str, code: str, context: str = "") -> SealedCode:
        """Seal a given code (a test destination's fixed code); its seed reveals nothing."""
        seed = secrets.token_bytes(_SEED_BYTES)
        digest = self._digest(self._keys[self._active], verification_id, code + context)
        return SealedCode(key_id=self._active, seed=seed, digest=digest)

    def seal_deliverable(self, verification_id: str, code: str, context: str = "") -> SealedCode:
        """Seal a code the caller chose (digits) so that it can still be delivered: the seed
        carries the code's digits offset by the pad this key derives from the seed, a one-time
        pad that only the server key removes. The database alone reveals nothing."""
        if not code.isdigit():
            raise ValueError("a deliverable custom code is digits only")
        base = secrets.token_bytes(_SEED_BYTES)
        pad = self._derive(self._keys[self._active], verification_id, base, len(code))
        offset = bytes((int(c) - int(p)) % 10 for c, p in zip(code, pad, strict=True))
        digest = self._digest(self._keys[self._active], verification_id, code + context)
        return SealedCode(key_id=self._active, seed=base + offset, digest=digest)

    def reveal(self, verification_id: str, sealed: SealedCode, length: int) -> str:
        """The plain code, for rendering a message at delivery time only."""
        key = self._keys.get(sealed.key_id)
        if key is None:
            raise LookupError(f"HMAC key {sealed.key_id!r} is no longer configured")
        base, offset = sealed.seed[:_SEED_BYTES], sealed.seed[_SEED_BYTES:]
        pad = self._derive(key, verification_id, base, length)
        if not offset:
            return pad
        return "".join(str((int(p) + o) % 10) for p, o in zip(pad, offset, strict=True))

    def matches(
        self, verification_id: str, sealed: SealedCode, candidate: str, context: str = ""
    ) -> bool:
        """Whether `candidate` (with its `context`) is the code, compared in constant time
        under every key."""
        found = False
        for key in self._keys.values():
            # No early exit: every configured key costs the same, hit or miss.
            digest = self._digest(key, verification_id, candidate + context)
            found |= hmac.compare_digest(digest, sealed.digest)
        return found

    def binding(self, *terms: str) -> bytes:
        """A keyed digest of what a code means (its length, a custom code, an amount and a
        payee, the name shown): equal terms give equal bindings under the active key. Keyed,
        because a custom code is short enough to brute-force from a plain hash."""
        message = _BINDING_LABEL + json.dumps(terms).encode()
        return hmac.new(self._keys[self._active], message, hashlib.sha256).digest()

    @staticmethod
    def _derive(key: bytes, verification_id: str, seed: bytes, length: int) -> str:
        message = _SEED_LABEL + verification_id.encode() + b"\x00" + seed
        material = hmac.new(key, message, hashlib.sha256).digest()
        # 256 bits reduced modulo 10**length: the bias is below 10**10 / 2**256, i.e. none.
        return str(int.from_bytes(material, "big") % 10**length).zfill(length)

    @staticmethod
    def _digest(key: bytes, verification_id: str, code: str) -> bytes:
        message = _DIGEST_LABEL + verification_id.encode() + b"\x00" + code.encode()
        return hmac.new(key, message, hashlib.sha256).digest()


def bound_terms(payment: tuple[str, str] | None) -> str:
    """What is hashed with a code besides its digits: nothing, or a PSD2 payment. Codes are
    digits and the parts printable, so the NUL separators keep every (code, amount, payee)
    distinct."""
    return f"\x00{payment[0]}\x00{payment[1]}" if payment else ""
