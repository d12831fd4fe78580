from clave.verify.languages import choose_locale
from clave.verify.messages import render
from clave.verify.models import Channel


def test_locale_by_request_then_by_phone_country() -> None:
    assert choose_locale("es-MX", "+14155552671") == "es"
    assert choose_locale("en_GB", "+34612345678") == "en-GB"
    assert choose_locale(None, "+34612345678") == "es"
    assert choose_locale(None, "+14155552671") == "en"
    assert choose_locale("fr", "+14155552671") == "fr"
    assert choose_locale(None, "+5511987654321") == "pt-BR"
    assert choose_locale(None, "+85291234567") == "zh-HK"
    assert choose_locale(None, "ana@example.com") == "en"


def test_sms_has_code_name_expiry_and_warning() -> None:
    en = render(Channel.SMS, "en", name="Acme", code="123456", minutes=10)
    assert "123456" in en.text
    assert "Acme" in en.text
    assert "10 minutes" in en.text
    assert "Do not share" in en.text
    es = render(Channel.WHATSAPP, "es", name="Acme", code="123456", minutes=7)
    assert "123456" in es.text
    assert "7 minutos" in es.text
    assert "No compartas" in es.text


def test_call_speaks_digits_twice() -> None:
    msg = render(Channel.CALL, "en", name="Acme", code="4821", minutes=5)
    assert msg.speech is not None
    assert msg.speech.count("4, 8, 2, 1") == 2


def test_email_has_subject_text_and_escaped_html() -> None:
    msg = render(Channel.EMAIL, "en", name="<Acme & Co>", code="123456", minutes=10)
    assert msg.subject == "Your <Acme & Co> verification code"
    assert msg.html is not None
    assert "&lt;Acme &amp; Co&gt;" in msg.html
    assert "<Acme" not in msg.html
    assert "123456" in msg.html
    assert "123456" in msg.text


def test_sms_autofill_lines_webotp_last() -> None:
    msg = render(
        Channel.SMS,
        "en",
        name="Acme",
        code="482913",
        minutes=10,
        app_hash="FA+9qCX9VSu",
        webotp_domain="acme.example",
    )
    lines = msg.text.splitlines()
    assert lines[-1] == "@acme.example #482913"
    assert "FA+9qCX9VSu" in lines
    assert len(msg.text.encode()) <= 160 * 2  # fits a two-part SMS at worst
    # Only SMS carries them.
    call = render(
        Channel.CALL, "en", name="Acme", code="482913", minutes=10, webotp_domain="acme.example"
    )
    assert "@acme.example" not in call.text


def test_the_warning_goes_when_the_tenant_turns_it_off() -> None:
    for lang, sentence in (("en", "Do not share"), ("es", "No compartas")):
        for channel in (Channel.SMS, Channel.WHATSAPP, Channel.CALL, Channel.EMAIL):
            kept = render(channel, lang, name="Acme", code="123456", minutes=10)
            gone = render(channel, lang, name="Acme", code="123456", minutes=10, warning=False)
            assert sentence in kept.text
            assert sentence not in gone.text
            assert "123456" in gone.text
            if channel is Channel.EMAIL:
                assert kept.html is not None
                assert gone.html is not None
                assert sentence in kept.html
                assert sentence not in gone.html
