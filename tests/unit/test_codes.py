import pytest

from clave.verify.codes import CodeHasher


def hasher(**keys: bytes) -> CodeHasher:
    return CodeHasher(keys, active_key_id=next(iter(keys)))


def test_issued_code_reveals_and_matches_only_itself() -> None:
    h = hasher(a=b"a" * 32)
    sealed = h.issue("VE1", 6)
    code = h.reveal("VE1", sealed, 6)
    assert len(code) == 6
    assert code.isdigit()
    assert h.matches("VE1", sealed, code)
    wrong = str((int(code) + 1) % 10**6).zfill(6)
    assert not h.matches("VE1", sealed, wrong)


def test_sealed_code_is_bound_to_its_verification() -> None:
    h = hasher(a=b"a" * 32)
    sealed = h.issue("VE1", 6)
    code = h.reveal("VE1", sealed, 6)
    assert not h.matches("VE2", sealed, code)


def test_nothing_stored_contains_the_code() -> None:
    h = hasher(a=b"a" * 32)
    for _ in range(50):
        sealed = h.issue("VE1", 8)
        code = h.reveal("VE1", sealed, 8).encode()
        assert code not in sealed.seed
        assert code not in sealed.digest
        assert code not in sealed.key_id.encode()


def test_lengths_and_spread() -> None:
    h = hasher(a=b"a" * 32)
    for length in (4, 6, 10):
        codes = {h.reveal("VE1", h.issue("VE1", length), length) for _ in range(200)}
        assert all(len(c) == length and c.isdigit() for c in codes)
        assert len(codes) > 150  # random, not a constant


def test_rotation_new_key_for_new_codes_old_codes_still_check() -> None:
    old = hasher(old=b"o" * 32)
    sealed_before = old.issue("VE1", 6)
    code_before = old.reveal("VE1", sealed_before, 6)

    rotated = CodeHasher({"new": b"n" * 32, "old": b"o" * 32}, active_key_id="new")
    assert rotated.matches("VE1", sealed_before, code_before)
    assert rotated.reveal("VE1", sealed_before, 6) == code_before
    sealed_after = rotated.issue("VE2", 6)
    assert sealed_after.key_id == "new"

    retired = hasher(new=b"n" * 32)
    assert not retired.matches("VE1", sealed_before, code_before)
    with pytest.raises(LookupError):
        retired.reveal("VE1", sealed_before, 6)


def test_short_keys_and_unknown_active_key_are_refused() -> None:
    with pytest.raises(ValueError, match="shorter"):
        CodeHasher({"a": b"short"}, active_key_id="a")
    with pytest.raises(ValueError, match="active key"):
        CodeHasher({"a": b"a" * 32}, active_key_id="b")


def test_a_custom_code_is_delivered_but_not_stored() -> None:
    hasher = CodeHasher({"k1": b"k" * 32}, "k1")
    sealed = hasher.seal_deliverable("VE1", "204913")
    assert hasher.reveal("VE1", sealed, 6) == "204913"
    assert hasher.matches("VE1", sealed, "204913")
    assert not hasher.matches("VE1", sealed, "204914")
    assert b"204913" not in sealed.seed + sealed.digest
    # Under another key the pad differs: the stored offset alone says nothing.
    other = CodeHasher({"k1": b"o" * 32}, "k1")
    assert other.reveal("VE1", sealed, 6) != "204913"


def test_context_is_bound_into_the_digest() -> None:
    hasher = CodeHasher({"k1": b"k" * 32}, "k1")
    sealed = hasher.issue("VE1", 6, context="\x00100.00\x00Acme")
    code = hasher.reveal("VE1", sealed, 6)
    assert hasher.matches("VE1", sealed, code, context="\x00100.00\x00Acme")
    assert not hasher.matches("VE1", sealed, code, context="\x00999.00\x00Acme")
    assert not hasher.matches("VE1", sealed, code)
