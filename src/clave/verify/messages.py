"""Messages per channel and language, with the code, the service's name and the expiry.

The words come from the gettext catalogs in `locales/` (one `<locale>.po` per language of
languages.LOCALES, the source strings in `messages.pot`), read once per worker on first use;
gettext applies each catalog's plural rule to the expiry.
"""

from __future__ import annotations

import functools
import gettext
import html
import io
from dataclasses import dataclass
from importlib import resources

from clave.verify.languages import DEFAULT_LOCALE, LOCALES, RIGHT_TO_LEFT
from clave.verify.models import Channel


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    """What a provider sends: `text` for SMS/WhatsApp, `speech` for calls, all three for email."""

    text: str
    subject: str | None = None
    html: str | None = None
    speech: str | None = None


# The source strings (messages.pot), as the catalogs translate them.
CODE_IS = "Your {name} verification code is {code}."
EXPIRES = ("It expires in {minutes} minute.", "It expires in {minutes} minutes.")
DO_NOT_SHARE = "Do not share this code with anyone."
AUTHORIZES = "It authorizes a payment of {amount} to {payee}."
SUBJECT = "Your {name} verification code"
CODE_BELOW = "Your {name} verification code is:"
SPOKEN = "Your {name} verification code is: {digits}. Again, your code is: {digits}."

_HTML = """<!doctype html>
<html lang="{lang}" dir="{direction}"><body style="font-family:sans-serif">
<p>{intro}</p>
<p style="font-size:28px;letter-spacing:6px;font-weight:bold" dir="ltr">{code}</p>
<p>{expiry}</p>
{warning}</body></html>
"""
# Sentence ends after which the next sentence follows with no space (Chinese, Japanese).
# The ideographic full stop and the full-width exclamation and question marks.
_FULL_WIDTH_ENDS = ("\u3002", "\uff01", "\uff1f")


@functools.cache
def catalog(locale: str) -> gettext.GNUTranslations:
    """The messages of one language (LOCALES), read from its `.po` file once per worker."""
    if locale not in LOCALES:
        raise ValueError(f"clave has no messages in {locale!r}")
    import polib  # here: only a worker that renders a message reads catalogs

    source = resources.files("clave.verify") / "locales" / f"{locale}.po"
    entries = polib.pofile(source.read_text(encoding="utf-8"))
    return gettext.GNUTranslations(io.BytesIO(entries.to_binary()))


def _sentences(*parts: str) -> str:
    """Sentences of one paragraph, spaced as their script spaces them."""
    text = ""
    for part in filter(None, parts):
        joiner = "" if not text or text.endswith(_FULL_WIDTH_ENDS) else " "
        text = f"{text}{joiner}{part}"
    return text


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
    """Render the message for `channel` in `locale` (one of LOCALES; another is English).

    An SMS may carry the Android SMS Retriever app hash (on its own line) and the WebOTP origin
    line (`@domain #code`), which the WebOTP API requires to be the last line.
    """
    lang = locale if locale in LOCALES else DEFAULT_LOCALE
    words = catalog(lang)
    expiry = words.ngettext(*EXPIRES, minutes).format(minutes=minutes)
    share = words.gettext(DO_NOT_SHARE) if warning else ""  # unless the tenant turned it off
    # PSD2 dynamic linking: the person sees what the code authorises.
    authorises = (
        words.gettext(AUTHORIZES).format(amount=payment[0], payee=payment[1]) if payment else ""
    )
    text = _sentences(
        words.gettext(CODE_IS).format(name=name, code=code), expiry, share, authorises
    )
    if channel is Channel.SMS:
        if app_hash:
            text += f"\n\n{app_hash}"
        if webotp_domain:
            text += f"\n\n@{webotp_domain} #{code}"
    if channel is Channel.CALL:
        spoken = words.gettext(SPOKEN).format(name=name, digits=", ".join(code))
        return RenderedMessage(text=text, speech=_sentences(spoken, authorises))
    if channel is Channel.EMAIL:
        body = _HTML.format(
            lang=lang,
            direction="rtl" if lang in RIGHT_TO_LEFT else "ltr",
            intro=html.escape(words.gettext(CODE_BELOW).format(name=name)),
            code=html.escape(code),
            expiry=html.escape(_sentences(expiry, authorises)),
            warning=f"<p><strong>{html.escape(share)}</strong></p>\n" if share else "",
        )
        subject = words.gettext(SUBJECT).format(name=name)
        return RenderedMessage(text=text, subject=subject, html=body)
    return RenderedMessage(text=text)
