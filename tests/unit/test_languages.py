"""Every language of verify/languages.py, as its messages render (verify/messages.py): the
catalogs are complete, their plural rules are CLDR's, and no English is left in a message."""

from __future__ import annotations

import re
from importlib import resources

import phonenumbers
import polib
import pytest
from babel.messages.plurals import get_plural

from clave.verify import messages
from clave.verify.delivery.twilio import twiml
from clave.verify.languages import LOCALES, canonical_locale, choose_locale, locale_for_country
from clave.verify.messages import catalog, render
from clave.verify.models import Channel
from clave.verify.requests import StartRequest

# Babel's name for each locale whose CLDR identifier differs from Twilio's spelling.
_CLDR = {
    "en-GB": "en_GB",
    "pt-BR": "pt_BR",
    "zh": "zh_Hans_CN",
    "zh-CN": "zh_Hans_CN",
    "zh-HK": "zh_Hant_HK",
}
_SOURCE = [
    messages.CODE_IS,
    *messages.EXPIRES,
    messages.DO_NOT_SHARE,
    messages.AUTHORIZES,
    messages.SUBJECT,
    messages.CODE_BELOW,
    messages.SPOKEN,
]
# Phrases of the English messages that no other language's message may contain (single words
# such as "minutes" or "code" are words of French or Dutch too).
_ENGLISH = re.compile(
    r"\b(your|verification code|expires in|do not share|with anyone|authori[sz]es a"
    r"|a payment of|again, your)\b",
    re.IGNORECASE,
)
_NOT_ENGLISH = [locale for locale in LOCALES if not locale.startswith("en")]
_PLACEHOLDER = re.compile(r"\{\w+\}")


def _po(locale: str) -> polib.POFile:
    path = resources.files("clave.verify") / "locales" / f"{locale}.po"
    return polib.pofile(path.read_text(encoding="utf-8"))


def test_there_is_a_catalog_for_every_locale_and_no_other() -> None:
    folder = resources.files("clave.verify") / "locales"
    found = {p.name[:-3] for p in folder.iterdir() if p.name.endswith(".po")}
    assert found == set(LOCALES)
    assert len(LOCALES) == 36


def test_the_source_strings_are_the_templates_ones() -> None:
    template = polib.pofile(
        (resources.files("clave.verify") / "locales" / "messages.pot").read_text("utf-8")
    )
    ids = {e.msgid for e in template} | {e.msgid_plural for e in template if e.msgid_plural}
    assert ids == set(_SOURCE)


@pytest.mark.parametrize("locale", LOCALES)
def test_every_catalog_is_complete_with_cldrs_plural_rule(locale: str) -> None:
    po = _po(locale)
    assert po.metadata["Language"] == locale
    rule = get_plural(_CLDR.get(locale, locale))
    assert po.metadata["Plural-Forms"] == f"nplurals={rule.num_plurals}; plural={rule.plural_expr};"
    assert po.percent_translated() == 100
    assert not po.fuzzy_entries()
    assert not po.obsolete_entries()
    for entry in po:
        wanted = sorted(_PLACEHOLDER.findall(entry.msgid))
        if entry.msgid_plural:
            assert len(entry.msgstr_plural) == rule.num_plurals, entry.msgid
            forms = list(entry.msgstr_plural.values())
        else:
            forms = [entry.msgstr]
        for form in forms:
            assert form.strip(), entry.msgid
            assert sorted(_PLACEHOLDER.findall(form)) == wanted, (entry.msgid, form)


@pytest.mark.parametrize("locale", _NOT_ENGLISH)
def test_no_english_is_left_in_another_language(locale: str) -> None:
    words = catalog(locale)
    for source in _SOURCE:
        if source not in messages.EXPIRES:
            assert words.gettext(source) != source, source
    for n in (1, 2, 5, 21):
        assert words.ngettext(*messages.EXPIRES, n) not in messages.EXPIRES


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("channel", list(Channel))
def test_every_message_kind_renders_in_every_language(locale: str, channel: Channel) -> None:
    for minutes in (1, 2, 5, 10, 22):
        msg = render(
            channel,
            locale,
            name="Acme",
            code="482913",
            minutes=minutes,
            payment=("EUR 12.50", "Shop Ltd"),
        )
        parts = [msg.text]
        if channel is Channel.CALL:
            assert msg.speech is not None
            assert msg.speech.count("4, 8, 2, 9, 1, 3") == 2
            assert "Acme" in msg.speech
            assert "EUR 12.50" in msg.speech
            parts.append(msg.speech)
        if channel is Channel.EMAIL:
            assert msg.subject is not None
            assert msg.html is not None
            assert "Acme" in msg.subject
            assert f'lang="{locale}"' in msg.html
            assert 'dir="rtl"' in msg.html if locale in ("ar", "he") else 'dir="ltr"' in msg.html
            for needed in ("482913", "Acme", str(minutes), "Shop Ltd"):
                assert needed in msg.html
            parts += [msg.subject, msg.html]
        assert "482913" in msg.text
        assert "Acme" in msg.text
        assert re.search(rf"(?<!\d){minutes}(?!\d)", msg.text), msg.text
        assert "EUR 12.50" in msg.text
        assert "Shop Ltd" in msg.text
        assert catalog(locale).gettext(messages.DO_NOT_SHARE) in msg.text
        assert "{" not in msg.text
        assert "}" not in msg.text
        if not locale.startswith("en"):
            for part in parts:
                assert not _ENGLISH.search(part.replace("Shop Ltd", "")), (locale, part)


def test_the_plural_forms_differ_where_the_language_has_them() -> None:
    expiry = catalog("ru").ngettext
    got = [expiry(*messages.EXPIRES, n).format(minutes=n) for n in (1, 2, 5, 21, 22, 11)]
    assert [g.split()[-1] for g in got] == [
        "минуту.",
        "минуты.",
        "минут.",
        "минуту.",
        "минуты.",
        "минут.",
    ]
    polish = catalog("pl").ngettext
    assert polish(*messages.EXPIRES, 22) != polish(*messages.EXPIRES, 25)
    assert "Caduca en 1 minuto." in render(Channel.SMS, "es", name="A", code="1234", minutes=1).text


def test_chinese_and_japanese_sentences_join_without_spaces() -> None:
    for locale in ("zh", "zh-HK", "ja"):
        text = render(Channel.SMS, locale, name="Acme", code="482913", minutes=5).text
        assert "。 " not in text, text


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ("pt-BR", "pt-BR"),
        ("pt_br", "pt-BR"),
        ("PT", "pt"),
        ("pt-PT", "pt"),
        ("es-MX", "es"),
        ("en-US", "en"),
        ("en_GB", "en-GB"),
        ("fr-CA", "fr"),
        ("zh-hk", "zh-HK"),
        ("zh-TW", "zh-HK"),
        ("zh-Hant-TW", "zh-HK"),
        ("zh-Hans", "zh"),
        ("zh-CN", "zh-CN"),
        ("no", "nb"),
        ("fil", "tl"),
        ("iw", "he"),
        ("xx", None),
        ("eo", None),
        ("zh-XY", None),
        ("klingon", None),
        ("", None),
        ("en-!!", None),
        ("en-\x00", None),
        ("en--US", None),
        ("en-US-", None),
    ],
)
def test_a_requested_locale_is_read_or_refused(requested: str, expected: str | None) -> None:
    assert canonical_locale(requested) == expected


def test_an_unknown_locale_is_refused_when_the_verification_is_made() -> None:
    assert StartRequest(to="+14155552671", channel=Channel.SMS, locale="pt_br").locale == "pt-BR"
    with pytest.raises(Exception, match="locale must be one of") as refused:
        StartRequest(to="+14155552671", channel=Channel.SMS, locale="xx-YY")
    assert type(refused.value).__name__ == "InvalidParameter"


def test_without_a_locale_the_phones_country_decides() -> None:
    assert choose_locale(None, "+5511987654321") == "pt-BR"
    assert choose_locale(None, "+351912345678") == "pt"
    assert choose_locale(None, "+81312345678") == "ja"
    assert choose_locale(None, "+966501234567") == "ar"
    assert choose_locale(None, "+12025550123") == "en"
    assert choose_locale("de", "+5511987654321") == "de"  # the request wins
    regions = phonenumbers.SUPPORTED_REGIONS
    assert all(locale_for_country(r) in LOCALES for r in regions)


@pytest.mark.parametrize("locale", LOCALES)
def test_a_call_is_spoken_in_the_messages_language(locale: str) -> None:
    said = twiml("…", locale)
    language = re.search(r'language="([^"]+)"', said)
    assert language is not None
    spoken = language.group(1)
    assert spoken.split("-")[0] in {locale.split("-")[0], "cmn", "yue", "fil"}, (locale, spoken)
