import pytest

from clave.verify.destinations import mask, normalize, normalize_any, region_of
from clave.verify.errors import InvalidDestination
from clave.verify.models import Channel


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("+1 (415) 555-2671", "+14155552671"), ("+34 612 34 56 78", "+34612345678")],
)
def test_phone_numbers_are_normalised_to_e164(raw: str, expected: str) -> None:
    assert normalize(raw, Channel.SMS) == expected
    assert normalize(raw, Channel.CALL) == expected


@pytest.mark.parametrize("raw", ["4155552671", "+1 555", "+999999999999", "hello", "+"])
def test_bad_phone_numbers_are_refused(raw: str) -> None:
    with pytest.raises(InvalidDestination):
        normalize(raw, Channel.SMS)


def test_email_is_normalised_without_dns() -> None:
    assert normalize("Ana@Example.COM", Channel.EMAIL) == "Ana@example.com"
    with pytest.raises(InvalidDestination):
        normalize("not-an-email", Channel.EMAIL)
    with pytest.raises(InvalidDestination):
        normalize("+14155552671", Channel.EMAIL)


def test_normalize_any_infers_the_kind() -> None:
    assert normalize_any("+1 415 555 2671") == "+14155552671"
    assert normalize_any("a@example.com") == "a@example.com"


def test_mask_hides_the_middle() -> None:
    assert mask("+14155552671") == "+14******671"
    assert mask("ana@example.com") == "a***@example.com"
    assert "5552" not in mask("+14155552671")


def test_region() -> None:
    assert region_of("+34612345678") == "ES"
    assert region_of("a@example.com") is None
