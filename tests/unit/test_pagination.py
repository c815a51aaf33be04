"""CursorCodec: opaque, tamper-evident, filter-bound nextTokens."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outcrop.api.pagination import CursorCodec
from outcrop.errors import ValidationError

SECRET = bytes(range(32))
FILTERS: dict[str, str | None] = {
    "statusEquals": "Submitted",
    "nameContains": "job",
    "submitTimeAfter": None,
    "submitTimeBefore": "2024-08-28T22:47:53.811Z",
    "sortOrder": "Descending",
}


@pytest.fixture
def codec() -> CursorCodec:
    return CursorCodec(SECRET)


@given(
    submit_us=st.integers(min_value=0, max_value=2**62),
    job_id=st.from_regex(r"[a-z0-9]{12}", fullmatch=True),
    account=st.from_regex(r"[0-9]{12}", fullmatch=True),
)
def test_round_trip(submit_us: int, job_id: str, account: str):
    codec = CursorCodec(SECRET)
    token = codec.encode(account, FILTERS, (submit_us, job_id))
    assert codec.decode(token, account, FILTERS) == (submit_us, job_id)
    # Fits the PaginationToken shape: 1-2048 characters, no whitespace, URL-safe.
    assert 1 <= len(token) <= 2048
    assert all(c.isalnum() or c in "-_" for c in token)


def test_filter_order_does_not_matter(codec: CursorCodec):
    token = codec.encode("123456789012", FILTERS, (5, "abcdefghijkl"))
    reordered = dict(reversed(list(FILTERS.items())))
    assert codec.decode(token, "123456789012", reordered) == (5, "abcdefghijkl")


@pytest.mark.parametrize(
    "change",
    [
        {"statusEquals": "Stopping"},
        {"statusEquals": None},
        {"nameContains": "jo"},
        {"submitTimeAfter": "2024-01-01T00:00:00.000Z"},
        {"submitTimeBefore": None},
        {"sortOrder": "Ascending"},
    ],
)
def test_filter_mismatch_is_a_validation_error(codec: CursorCodec, change: dict[str, str | None]):
    token = codec.encode("123456789012", FILTERS, (5, "abcdefghijkl"))
    with pytest.raises(ValidationError, match="nextToken"):
        codec.decode(token, "123456789012", {**FILTERS, **change})


def test_another_account_cannot_use_the_token(codec: CursorCodec):
    token = codec.encode("123456789012", FILTERS, (5, "abcdefghijkl"))
    with pytest.raises(ValidationError):
        codec.decode(token, "210987654321", FILTERS)


def test_another_secret_cannot_read_the_token(codec: CursorCodec):
    token = codec.encode("123456789012", FILTERS, (5, "abcdefghijkl"))
    with pytest.raises(ValidationError):
        CursorCodec(b"another secret").decode(token, "123456789012", FILTERS)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def test_tampered_payload_is_a_validation_error(codec: CursorCodec):
    token = codec.encode("123456789012", FILTERS, (5, "abcdefghijkl"))
    raw = _unb64(token)
    forged = raw.replace(b"abcdefghijkl", b"zzzzzzzzzzzz")
    assert forged != raw
    with pytest.raises(ValidationError):
        codec.decode(_b64(forged), "123456789012", FILTERS)


@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_is_a_validation_error(position: int, bit: int):
    codec = CursorCodec(SECRET)
    raw = bytearray(_unb64(codec.encode("123456789012", FILTERS, (5, "abcdefghijkl"))))
    raw[position % len(raw)] ^= 1 << bit
    with pytest.raises(ValidationError):
        codec.decode(_b64(bytes(raw)), "123456789012", FILTERS)


def test_truncated_or_extended_tokens_are_validation_errors(codec: CursorCodec):
    token = codec.encode("123456789012", FILTERS, (5, "abcdefghijkl"))
    for bad in (token[:-1], token[:-4], token[:10], token + "A", token + "AAAA"):
        with pytest.raises(ValidationError):
            codec.decode(bad, "123456789012", FILTERS)


@given(garbage=st.text(max_size=300) | st.binary(max_size=300).map(_b64))
def test_garbage_is_a_validation_error(garbage: str):
    with pytest.raises(ValidationError):
        CursorCodec(SECRET).decode(garbage, "123456789012", FILTERS)


@pytest.mark.parametrize("garbage", ["", "=", "!!!!", "é", "a" * 2048, "AAAA" * 8, "\x00"])
def test_specific_garbage_is_a_validation_error(codec: CursorCodec, garbage: str):
    with pytest.raises(ValidationError):
        codec.decode(garbage, "123456789012", FILTERS)
