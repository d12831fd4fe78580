"""QR codes of `otpauth://` URIs for authenticator apps to scan, as `data:` URLs: the image
carries the secret, so it is handed over once, in the enrollment's answer, and never served
from a URL anyone could fetch again."""

from __future__ import annotations

import base64
import io
from typing import Any


def _qr(uri: str) -> Any:
    # Imported here: only enrollments draw QR codes, and segno costs a worker memory.
    import segno

    # Medium error correction: readable off a screen with some glare, still a small code.
    return segno.make(uri, error="m", micro=False)


def png_data_url(uri: str) -> str:
    """The QR code of `uri` as a PNG `data:` URL."""
    out = io.BytesIO()
    _qr(uri).save(out, kind="png", scale=6, border=4)
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def svg_data_url(uri: str) -> str:
    """The QR code of `uri` as an SVG `data:` URL."""
    out = io.BytesIO()
    _qr(uri).save(out, kind="svg", scale=6, border=4, xmldecl=False)
    return "data:image/svg+xml;base64," + base64.b64encode(out.getvalue()).decode()
