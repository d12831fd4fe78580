"""TOTP (verify/totp.py) against RFC 6238's test vectors and an authenticator app's side
(pyotp); sealing (verify/sealing.py); QR codes read back by a real decoder (zxing-cpp)."""

from __future__ import annotations

import base64
import io
import os

import pyotp
import pytest
import zxingcpp
from PIL import Image

from clave.platform.errors import StoreError
from clave.verify.qr import png_data_url, svg_data_url
from clave.verify.sealing import SecretBox, hkdf_sha256
from clave.verify.totp import (
    TotpSettings,
    base32,
    hotp,
    matching_step,
    new_secret,
    otpauth_uri,
    step_at,
)

# RFC 6238 appendix B, SHA-1: the ASCII secret "12345678901234567890", 8 digits, 30 s steps.
RFC_SECRET = b"12345678901234567890"
RFC_VECTORS = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]
EIGHT = TotpSettings(time_step=30, code_length=8, skew=0)


@pytest.mark.parametrize(("when", "code"), RFC_VECTORS)
def test_rfc_6238_vectors(when: int, code: str) -> None:
    assert hotp(RFC_SECRET, step_at(when, EIGHT), 8) == code
    assert matching_step(RFC_SECRET, code, when, EIGHT) == when // 30


def test_rfc_4226_vectors() -> None:
    # RFC 4226 appendix D: HOTP values of counters 0-9, 6 digits.
    expected = [
        "755224",
        "287082",
        "359152",
        "969429",
        "338314",
        "254676",
        "287922",
        "162583",
        "399871",
        "520489",
    ]
    assert [hotp(RFC_SECRET, counter, 6) for counter in range(10)] == expected


def test_the_skew_window_and_nothing_beyond() -> None:
    settings = TotpSettings(skew=1)
    secret, now = new_secret(), 1_800_000_015.0
    step = step_at(now, settings)
    for offset in (-1, 0, 1):
        assert matching_step(secret, hotp(secret, step + offset, 6), now, settings) == step + offset
    for offset in (-2, 2):
        assert matching_step(secret, hotp(secret, step + offset, 6), now, settings) is None
    strict = TotpSettings(skew=0)
    assert matching_step(secret, hotp(secret, step - 1, 6), now, strict) is None
    for bad in ("", "12345", "1234567", "12345a", "١٢٣٤٥٦"):
        assert matching_step(secret, bad, now, settings) is None


def test_an_authenticator_app_enrolls_from_the_uri_and_its_codes_match() -> None:
    secret = new_secret()
    settings = TotpSettings(time_step=30, code_length=6, skew=1)
    uri = otpauth_uri(secret, issuer="Acme & Co", account="ana's phone", settings=settings)
    app = pyotp.parse_uri(uri)
    assert isinstance(app, pyotp.TOTP)
    assert (app.issuer, app.name, app.digits, app.interval) == ("Acme & Co", "ana's phone", 6, 30)
    assert app.secret == base32(secret)
    now = 1_800_000_000
    assert matching_step(secret, app.at(now), now, settings) == step_at(now, settings)
    longer = TotpSettings(time_step=60, code_length=8)
    app8 = pyotp.parse_uri(otpauth_uri(secret, issuer="A", account="b", settings=longer))
    assert isinstance(app8, pyotp.TOTP)
    assert matching_step(secret, app8.at(now), now, longer) == now // 60


def test_qr_codes_read_back_to_the_uri() -> None:
    uri = otpauth_uri(new_secret(), issuer="Acme", account="ana", settings=TotpSettings())
    png = png_data_url(uri)
    assert png.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(png.split(",", 1)[1])))
    [found] = zxingcpp.read_barcodes(image)
    assert found.text == uri
    assert found.format == zxingcpp.BarcodeFormat.QRCode
    svg = base64.b64decode(svg_data_url(uri).split(",", 1)[1]).decode()
    assert svg.startswith("<svg")
    assert "</svg>" in svg


def test_sealed_secrets_open_under_their_key_and_their_owner_only() -> None:
    old, new = os.urandom(32), os.urandom(32)
    before = SecretBox({"k1": old}, active_key_id="k1")
    sealed = before.seal(b"secret!", bound_to="YF1")
    assert b"secret!" not in sealed.ciphertext
    assert before.open(sealed, bound_to="YF1") == b"secret!"
    with pytest.raises(StoreError, match="does not open"):
        before.open(sealed, bound_to="YF2")  # copied onto another factor
    tampered = type(sealed)(
        sealed.key_id, sealed.nonce, bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:]
    )
    with pytest.raises(StoreError, match="does not open"):
        before.open(tampered, bound_to="YF1")
    # Rotation: the new key first, the old one still configured.
    after = SecretBox({"k2": new, "k1": old}, active_key_id="k2")
    assert after.open(sealed, bound_to="YF1") == b"secret!"
    moved = after.rekeyed(sealed, bound_to="YF1")
    assert moved is not None
    assert moved.key_id == "k2"
    assert after.rekeyed(moved, bound_to="YF1") is None
    only_new = SecretBox({"k2": new}, active_key_id="k2")
    assert only_new.open(moved, bound_to="YF1") == b"secret!"
    with pytest.raises(StoreError, match="not configured"):
        only_new.open(sealed, bound_to="YF1")
    with pytest.raises(ValueError, match="32 bytes"):
        SecretBox({"short": b"x" * 16}, active_key_id="short")


def test_hkdf_is_rfc_5869s() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    for secret in (b"k" * 32, os.urandom(48), b"\x00"):
        for info in (b"clave factor secrets", b""):
            expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info)
            assert hkdf_sha256(secret, info=info) == expected.derive(secret)
    assert len(hkdf_sha256(b"x", info=b"y", length=80)) == 80
