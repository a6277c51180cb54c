"""Signed links: round trip, expiry, purpose, forgery and malformed tokens."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from monitor.config import Secret
from monitor.links import ACK, DEFAULT_TTL, ack_url, sign, verify

KEY = b"k" * 32
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
LATER = NOW + DEFAULT_TTL


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_token_verifies_until_it_expires() -> None:
    token = sign(KEY, ACK, 42, LATER)
    assert verify(KEY, token, ACK, NOW) == 42
    assert verify(KEY, token, ACK, LATER - timedelta(seconds=1)) == 42
    assert verify(KEY, token, ACK, LATER) is None
    assert verify(KEY, token, ACK, LATER + timedelta(days=1)) is None


def test_tokens_are_url_safe_and_deterministic() -> None:
    token = sign(KEY, ACK, 42, LATER)
    assert token == sign(KEY, ACK, 42, LATER)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert len(token) < 80


def test_another_secret_purpose_or_id_does_not_verify() -> None:
    token = sign(KEY, ACK, 42, LATER)
    assert verify(b"other-secret", token, ACK, NOW) is None
    assert verify(KEY, token, "session", NOW) is None
    assert verify(KEY, sign(KEY, "session", 42, LATER), ACK, NOW) is None


def test_changing_the_id_or_the_expiry_breaks_the_mac() -> None:
    token = sign(KEY, ACK, 42, LATER)
    _, mac = token.split(".")
    expiry = int(LATER.timestamp())
    assert verify(KEY, f"{b64(f'43.{expiry}'.encode())}.{mac}", ACK, NOW) is None
    assert verify(KEY, f"{b64(f'42.{expiry + 86400}'.encode())}.{mac}", ACK, NOW) is None


@pytest.mark.parametrize(
    "token",
    [
        "",
        ".",
        "abc",
        "a.b.c",
        "é.é",
        "../../etc/passwd",
        "a" * 500 + "." + "b" * 43,
        b64(b"42.1893456000") + ".",
        b64(b"42.1893456000") + "." + b64(b"short"),
        b64(b"-1.1893456000") + "." + b64(b"x" * 32),
        b64(b"042.1893456000") + "." + b64(b"x" * 32),
        b64(b"42.1893456000.7") + "." + b64(b"x" * 32),
        b64(b"\xff\xfe") + "." + b64(b"x" * 32),
        b64(b"42.1893456000") + "=." + b64(b"x" * 32),
    ],
)
def test_malformed_tokens_are_rejected_quietly(token: str) -> None:
    assert verify(KEY, token, ACK, NOW) is None


def test_bad_arguments_are_programming_errors() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sign(KEY, ACK, 1, datetime(2026, 11, 9))
    with pytest.raises(ValueError, match="non-empty"):
        sign(b"", ACK, 1, LATER)
    with pytest.raises(ValueError, match="purpose"):
        sign(KEY, "a|b", 1, LATER)
    with pytest.raises(ValueError, match="positive"):
        sign(KEY, ACK, 0, LATER)
    with pytest.raises(ValueError, match="timezone-aware"):
        verify(KEY, sign(KEY, ACK, 1, LATER), ACK, datetime(2026, 11, 2))


def test_ack_url_signs_a_seven_day_link() -> None:
    url = ack_url("https://vigil.example.sch.uk/", Secret("k" * 32), 7, NOW)
    assert url is not None and url.startswith("https://vigil.example.sch.uk/ack/")
    token = url.rsplit("/", 1)[1]
    assert verify(KEY, token, ACK, NOW + timedelta(days=6)) == 7
    assert verify(KEY, token, ACK, NOW + timedelta(days=7)) is None
    short = ack_url("https://v.example", KEY, 7, NOW, ttl=timedelta(hours=1))
    assert short is not None
    assert verify(KEY, short.rsplit("/", 1)[1], ACK, NOW + timedelta(hours=2)) is None


def test_no_secret_means_no_links() -> None:
    assert ack_url("https://vigil.example.sch.uk", None, 7, NOW) is None
