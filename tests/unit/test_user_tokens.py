"""Forum users' tokens: their shape, their hash, and reading them from a header."""

from __future__ import annotations

import hashlib

import pytest

from clave.users.errors import Unauthorized
from clave.users.tokens import PREFIX, bearer_token, hash_token, new_token


def test_a_token_is_256_random_bits_behind_its_prefix() -> None:
    tokens = {new_token() for _ in range(1000)}
    assert len(tokens) == 1000
    for token in tokens:
        assert token.startswith(PREFIX)
        assert len(token) == len(PREFIX) + 43  # 32 bytes, URL-safe base64 without padding
    assert hash_token("clave_user_x") == hashlib.sha256(b"clave_user_x").digest()


@pytest.mark.parametrize(
    "header",
    ["Bearer {t}", "bearer {t}", "BEARER {t}", "  Bearer   {t}  "],
)
def test_the_bearer_scheme_is_read_leniently(header: str) -> None:
    token = new_token()
    assert bearer_token(header.format(t=token)) == token


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic Zm9vOmJhcg==",
        "Token " + "clave_user_" + "A" * 43,
        "Bearer\tclave_user_" + "A" * 43,  # RFC 6750: one space after the scheme
        "Bearer clave_user_" + "A" * 42,
        "Bearer clave_user_" + "A" * 44,
        "Bearer clave_user_" + "A" * 42 + "=",
        "Bearer clave_" + "A" * 43,
        "Bearer clave_user_" + "\u00e9" * 43,
        "Bearer clave_user_" + "\uff21" * 43,  # fullwidth A: not ASCII
        "Bearer clave_user_" + "A" * 43 + " extra",
        "Bearer " + "A" * 100_000,
    ],
)
def test_anything_else_is_unauthorized_naming_the_realm(header: str | None) -> None:
    with pytest.raises(Unauthorized) as caught:
        bearer_token(header)
    assert caught.value.status == 401
    assert caught.value.headers == {"WWW-Authenticate": 'Bearer realm="clave"'}
