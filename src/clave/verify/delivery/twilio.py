"""Twilio Programmable Messaging (sms, whatsapp) and Voice (call) providers, over its REST API."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from xml.sax.saxutils import escape

import httpx

from clave.verify.delivery.base import DeliveryError, OutgoingMessage
from clave.verify.models import Channel

# The <Say> language of each message locale (languages.LOCALES): Twilio speaks it with the
# account's default voice for that language (set per language in Twilio's console), so a
# deployment chooses its voices without clave naming one. Chinese is read in Mandarin
# (Simplified) or Cantonese (Hong Kong).
_VOICE_LANGUAGE = {
    "af": "af-ZA",
    "ar": "ar-XA",
    "ca": "ca-ES",
    "cs": "cs-CZ",
    "da": "da-DK",
    "de": "de-DE",
    "el": "el-GR",
    "en": "en-US",
    "en-GB": "en-GB",
    "es": "es-ES",
    "fi": "fi-FI",
    "fr": "fr-FR",
    "he": "he-IL",
    "hi": "hi-IN",
    "hr": "hr-HR",
    "hu": "hu-HU",
    "id": "id-ID",
    "it": "it-IT",
    "ja": "ja-JP",
    "ko": "ko-KR",
    "ms": "ms-MY",
    "nb": "nb-NO",
    "nl": "nl-NL",
    "pl": "pl-PL",
    "pt": "pt-PT",
    "pt-BR": "pt-BR",
    "ro": "ro-RO",
    "ru": "ru-RU",
    "sv": "sv-SE",
    "th": "th-TH",
    "tl": "fil-PH",
    "tr": "tr-TR",
    "vi": "vi-VN",
    "zh": "cmn-CN",
    "zh-CN": "cmn-CN",
    "zh-HK": "yue-HK",
}


@dataclass(frozen=True, slots=True)
class TwilioConfig:
    """Account credentials and senders."""

    account_sid: str
    auth_token: str
    sms_from: str | None = None
    whatsapp_from: str | None = None
    messaging_service_sid: str | None = None
    call_from: str | None = None
    base_url: str = "https://api.twilio.com"
    status_callback: str | None = None
    timeout: float = 10.0
    # Twilio Lookup v2, for SkipSmsToLandlines (verify/line_types.py).
    lookup_url: str = "https://lookups.twilio.com"


def request_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """Twilio's X-Twilio-Signature for a form POST to `url`."""
    signed = url + "".join(key + params[key] for key in sorted(params))
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def valid_signature(auth_token: str, url: str, params: dict[str, str], offered: str) -> bool:
    """Whether `offered` is Twilio's signature of this request (constant-time compare)."""
    if not offered.isascii():  # a signature is base64; compare_digest refuses non-ASCII text
        return False
    return hmac.compare_digest(request_signature(auth_token, url, params), offered)


def classify(response: httpx.Response) -> DeliveryError:
    """Twilio's answer as a DeliveryError: a 4xx is the request's fault (permanent, the next
    provider may still take it), except 429; a 5xx may pass (transient)."""
    try:
        body = response.json()
        detail = f"{body.get('code', '')} {body.get('message', '')}".strip()
    except ValueError:
        detail = response.text[:200]
    permanent = 400 <= response.status_code < 500 and response.status_code not in (408, 429)
    return DeliveryError(f"Twilio {response.status_code}: {detail}", permanent=permanent)


class _TwilioBase:
    def __init__(self, config: TwilioConfig) -> None:
        self.config = config
        self._http = httpx.AsyncClient(
            base_url=config.base_url.rstrip("/"),
            auth=(config.account_sid, config.auth_token),
            timeout=config.timeout,
        )

    async def _post(self, resource: str, form: dict[str, str]) -> str | None:
        if self.config.status_callback:
            form["StatusCallback"] = self.config.status_callback
        path = f"/2010-04-01/Accounts/{self.config.account_sid}/{resource}.json"
        try:
            response = await self._http.post(path, data=form)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"Twilio unreachable: {exc!r}", permanent=False) from exc
        if response.status_code not in (200, 201):
            raise classify(response)
        sid = response.json().get("sid")
        return str(sid) if sid else None

    async def close(self) -> None:
        """Close connections."""
        await self._http.aclose()


class TwilioMessagingProvider(_TwilioBase):
    """SMS and WhatsApp through `POST /2010-04-01/Accounts/{sid}/Messages.json`."""

    name = "twilio"

    def __init__(self, config: TwilioConfig) -> None:
        super().__init__(config)
        channels = set()
        if config.sms_from or config.messaging_service_sid:
            channels.add(Channel.SMS)
        if config.whatsapp_from:
            channels.add(Channel.WHATSAPP)
        self.channels = frozenset(channels)

    async def send(self, outgoing: OutgoingMessage) -> str | None:
        """Send the text; the Message SID is the provider message id."""
        form = {"Body": outgoing.message.text}
        if outgoing.channel is Channel.WHATSAPP:
            form["To"] = f"whatsapp:{outgoing.to}"
            form["From"] = f"whatsapp:{self.config.whatsapp_from}"
        elif outgoing.messaging_service_sid or self.config.messaging_service_sid:
            # The tenant's for the destination's country, else the deployment's.
            form["To"] = outgoing.to
            form["MessagingServiceSid"] = str(
                outgoing.messaging_service_sid or self.config.messaging_service_sid
            )
        else:
            form["To"] = outgoing.to
            form["From"] = str(self.config.sms_from)
        return await self._post("Messages", form)


def twiml(speech: str, locale: str) -> str:
    """TwiML that says `speech` (which already repeats the code) in the message's language."""
    language = _VOICE_LANGUAGE.get(locale, "en-US")
    return f'<Response><Say language="{language}">{escape(speech)}</Say></Response>'


class TwilioVoiceProvider(_TwilioBase):
    """Voice calls through `POST /2010-04-01/Accounts/{sid}/Calls.json` with inline TwiML."""

    name = "twilio-voice"
    channels = frozenset({Channel.CALL})

    async def send(self, outgoing: OutgoingMessage) -> str | None:
        """Call and speak the code digit by digit, twice; the Call SID is the message id."""
        speech = outgoing.message.speech or outgoing.message.text
        form = {
            "To": outgoing.to,
            "From": str(self.config.call_from or self.config.sms_from),
            "Twiml": twiml(speech, outgoing.locale),
        }
        return await self._post("Calls", form)
