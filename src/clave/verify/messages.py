"""Message templates per channel and locale, with the code, tenant name and expiry."""

from __future__ import annotations

import html
from dataclasses import dataclass

from clave.verify.destinations import region_of
from clave.verify.models import Channel

SUPPORTED_LOCALES = ("en", "es")
DEFAULT_LOCALE = "en"

# Countries whose main language is Spanish: a phone destination there gets Spanish by default.
_SPANISH_REGIONS = frozenset(
    "AR BO CL CO CR CU DO EC ES GQ GT HN MX NI PA PE PR PY SV UY VE".split()  # noqa: SIM905
)


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    """What a provider sends: `text` for SMS/WhatsApp, `speech` for calls, all three for email."""

    text: str
    subject: str | None = None
    html: str | None = None
    speech: str | None = None


_TEXT = {
    "en": "Your {name} verification code is {code}. It expires in {minutes} minutes.",
    "es": "Tu código de verificación de {name} es {code}. Caduca en {minutes} minutos.",
}
_WARNING = {
    "en": "Do not share this code with anyone.",
    "es": "No compartas este código con nadie.",
}
_PAYMENT = {
    "en": "It authorises a payment of {amount} to {payee}.",
    "es": "Autoriza un pago de {amount} a {payee}.",
}
_SUBJECT = {
    "en": "Your {name} verification code",
    "es": "Tu código de verificación de {name}",
}
_SPEECH = {
    "en": "Your {name} verification code is: {digits}. Again, your code is: {digits}.",
    "es": "Tu código de verificación de {name} es: {digits}. Repito, tu código es: {digits}.",
}
_HTML = """<!doctype html>
<html lang="{lang}"><body style="font-family:sans-serif">
<p>{intro}</p>
<p style="font-size:28px;letter-spacing:6px;font-weight:bold">{code}</p>
<p>{expiry}</p>
{warning}</body></html>
"""
_HTML_PARTS = {
    "en": ("Your {name} verification code is:", "It expires in {minutes} minutes."),
    "es": ("Tu código de verificación de {name} es:", "Caduca en {minutes} minutos."),
}


def choose_locale(requested: str | None, destination: str) -> str:
    """The template language: the requested locale if supported, else by the phone's country."""
    if requested:
        language = requested.replace("_", "-").split("-", 1)[0].lower()
        if language in SUPPORTED_LOCALES:
            return language
    if region_of(destination) in _SPANISH_REGIONS:
        return "es"
    return DEFAULT_LOCALE


def render(
    channel: Channel,
    locale: str,
    *,
    name: str,
    code: str,
    minutes: int,
    app_hash: str | None = None,
    webotp_domain: str | None = None,
    payment: tuple[str, str] | None = None,
    warning: bool = True,
) -> RenderedMessage:
    """Render the message for `channel` in `locale` (one of SUPPORTED_LOCALES).

    An SMS may carry the Android SMS Retriever app hash (on its own line) and the WebOTP origin
    line (`@domain #code`), which the WebOTP API requires to be the last line.
    """
    lang = locale if locale in SUPPORTED_LOCALES else DEFAULT_LOCALE
    text = _TEXT[lang].format(name=name, code=code, minutes=minutes)
    if warning:  # unless the tenant turned it off (no_share_warning)
        text = f"{text} {_WARNING[lang]}"
    # PSD2 dynamic linking: the person sees what the code authorises.
    authorises = _PAYMENT[lang].format(amount=payment[0], payee=payment[1]) if payment else ""
    if authorises:
        text = f"{text} {authorises}"
    if channel is Channel.SMS:
        if app_hash:
            text += f"\n\n{app_hash}"
        if webotp_domain:
            text += f"\n\n@{webotp_domain} #{code}"
    if channel is Channel.CALL:
        digits = ", ".join(code)
        speech = _SPEECH[lang].format(name=name, digits=digits)
        return RenderedMessage(text=text, speech=f"{speech} {authorises}".strip())
    if channel is Channel.EMAIL:
        intro, expiry = _HTML_PARTS[lang]
        body = _HTML.format(
            lang=lang,
            intro=html.escape(intro.format(name=name)),
            code=html.escape(code),
            expiry=html.escape(f"{expiry.format(minutes=minutes)} {authorises}".strip()),
            warning=f"<p><strong>{html.escape(_WARNING[lang])}</strong></p>\n" if warning else "",
        )
        return RenderedMessage(text=text, subject=_SUBJECT[lang].format(name=name), html=body)
    return RenderedMessage(text=text)
