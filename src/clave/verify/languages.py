"""The languages clave writes its messages in: Twilio Verify's locales, how a requested
locale is read, and the default language of each country.

A message catalog per locale lives in `locales/<locale>.po` (messages.py renders them).
"""

from __future__ import annotations

import functools
import re

from clave.platform.contacts import region_of


def _words(text: str) -> tuple[str, ...]:
    """The space-separated words of `text` (tables of codes, kept short on the page)."""
    return tuple(text.split())


# Twilio Verify's locales, as it spells them. zh and zh-CN are Simplified Chinese, zh-HK is
# Traditional Chinese as written in Hong Kong; pt is European Portuguese, pt-BR Brazilian.
LOCALES = _words(
    "af ar ca cs da de el en en-GB es fi fr he hi hr hu id it ja "
    "ko ms nb nl pl pt pt-BR ro ru sv th tl tr vi zh zh-CN zh-HK"
)
DEFAULT_LOCALE = "en"
# Written right to left (the email's HTML says so).
RIGHT_TO_LEFT = frozenset({"ar", "he"})

_BY_LOWER = {locale.lower(): locale for locale in LOCALES}
# Other names of the same languages: older ISO codes, the macrolanguage, and Chinese by script
# or by region (the script is what matters for reading it).
_ALIASES = {
    "no": "nb",
    "iw": "he",
    "in": "id",
    "fil": "tl",
    "zh-hans": "zh",
    "zh-sg": "zh",
    "zh-hant": "zh-HK",
    "zh-tw": "zh-HK",
    "zh-mo": "zh-HK",
}


# A BCP 47 tag's shape: a 2-3 letter language, then subtags of 1-8 letters or digits.
_TAG = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*")


# Bounded: the argument comes from clients, who may send a new one each time.
@functools.lru_cache(maxsize=256)
def canonical_locale(requested: str) -> str | None:
    """The locale clave writes for `requested` (any case, `-` or `_`), or None when clave has
    no such language.

    A region or script clave has no catalog of its own for falls back to its language, which
    is the same language (es-MX is written as es, en-US as en, fr-CA as fr). Chinese is the
    exception: its script matters, so a zh tag that names neither a known region nor a
    script is unknown rather than guessed.
    """
    if not _TAG.fullmatch(requested):
        return None
    tag = requested.replace("_", "-").lower()
    for candidate in (tag, "-".join(tag.split("-")[:2])):
        found = _BY_LOWER.get(candidate) or _ALIASES.get(candidate)
        if found:
            return found
    language = tag.split("-", 1)[0]
    if language == "zh":
        return None
    return _BY_LOWER.get(language) or _ALIASES.get(language)


# The language a phone number's country gets when the request names none: the country's main
# language where clave has it, else English. Countries where English is the common written
# language among several (India, South Africa, the Philippines, Singapore) get English; an
# application that knows better says so with a locale.
_BY_COUNTRY = {
    country: locale
    for locale, countries in (
        ("ar", "AE BH DZ EG IQ JO KW LB LY MA MR OM PS QA SA SD SY TN YE"),
        ("ca", "AD"),
        ("cs", "CZ"),
        ("da", "DK FO GL"),
        ("de", "AT CH DE LI"),
        ("el", "CY GR"),
        ("en-GB", "AU GB GG IE IM JE NZ"),
        ("es", "AR BO CL CO CR CU DO EC ES GQ GT HN MX NI PA PE PR PY SV UY VE"),
        ("fi", "FI"),
        (
            "fr",
            "BE BF BJ BL CD CF CG CI CM DJ FR GA GF GN GP HT "
            "KM LU MC MF MG ML MQ NC NE PF PM RE SN TD TG WF YT",
        ),
        ("he", "IL"),
        ("hr", "HR"),
        ("hu", "HU"),
        ("id", "ID"),
        ("it", "IT SM VA"),
        ("ja", "JP"),
        ("ko", "KR"),
        ("ms", "BN MY"),
        ("nb", "NO SJ"),
        ("nl", "AW BQ CW NL SR SX"),
        ("pl", "PL"),
        ("pt", "AO CV GW MZ PT ST TL"),
        ("pt-BR", "BR"),
        ("ro", "MD RO"),
        ("ru", "BY KG KZ RU"),
        ("sv", "AX SE"),
        ("th", "TH"),
        ("tr", "TR"),
        ("vi", "VN"),
        ("zh", "CN"),
        ("zh-HK", "HK MO TW"),
    )
    for country in _words(countries)
}


def locale_for_country(region: str | None) -> str:
    """The default language for a destination in `region` (ISO 3166 alpha-2)."""
    return _BY_COUNTRY.get(region or "", DEFAULT_LOCALE)


def choose_locale(requested: str | None, destination: str) -> str:
    """The language of a message: the requested locale (validated when the verification was
    made), else the destination phone's country's (an email address has none: English)."""
    if requested:
        found = canonical_locale(requested)
        if found:
            return found
    return locale_for_country(region_of(destination))
