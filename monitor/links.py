"""Signed, expiring links: a token that lets whoever holds it do one thing to one row.

A token is ``<body>.<mac>``, both unpadded URL-safe base64: the body is ``<id>.<expiry>``
(expiry in Unix seconds) and the MAC is HMAC-SHA256 over ``<purpose>|<id>|<expiry>`` with
the ``[web] secret``. The purpose is signed but not carried, so an acknowledgement token is
worthless for anything else. Verification compares in constant time and rejects anything
malformed, forged, for another purpose or expired by returning None (never an exception), so
the web app can answer every bad token with the same 404.

Tokens are capabilities: never log them (uvicorn's access log is off for this reason).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from datetime import datetime, timedelta

from connectors.base import require_utc
from monitor.config import Secret

__all__ = ["ACK", "DEFAULT_TTL", "MAX_TOKEN_CHARS", "ack_url", "sign", "verify"]

ACK = "ack"  # the purpose of escalation acknowledgement links
DEFAULT_TTL = timedelta(days=7)
MAX_TOKEN_CHARS = 200  # far more than a real token; anything longer is rejected unread
_PURPOSE = re.compile(r"[a-z][a-z0-9_.-]{0,39}")
_BODY = re.compile(r"([1-9][0-9]{0,17})\.([1-9][0-9]{0,11})")
_B64 = re.compile(r"[A-Za-z0-9_-]+")


def sign(secret: bytes, purpose: str, subject_id: int, expires: datetime) -> str:
    """A token allowing ``purpose`` on row ``subject_id`` until ``expires`` (aware UTC)."""
    _check_secret(secret)
    _check_purpose(purpose)
    if subject_id < 1:
        raise ValueError("subject_id must be a positive row id")
    expiry = int(require_utc(expires, "expires").timestamp())
    if expiry < 1:
        raise ValueError("expires must be after 1970")
    body = _b64encode(f"{subject_id}.{expiry}".encode("ascii"))
    return f"{body}.{_b64encode(_mac(secret, purpose, subject_id, expiry))}"


def verify(secret: bytes, token: str, purpose: str, now: datetime) -> int | None:
    """The row id ``token`` grants ``purpose`` on, or None if forged, malformed or expired."""
    _check_secret(secret)
    _check_purpose(purpose)
    parsed = _parse(token)
    if parsed is None:
        return None
    subject_id, expiry, mac = parsed
    if not hmac.compare_digest(mac, _mac(secret, purpose, subject_id, expiry)):
        return None
    if require_utc(now, "now").timestamp() >= expiry:
        return None
    return subject_id


def ack_url(
    base_url: str,
    secret: Secret | bytes | None,
    escalation_id: int,
    now: datetime,
    *,
    ttl: timedelta = DEFAULT_TTL,
) -> str | None:
    """The acknowledgement link for one escalation, or None when no ``[web] secret`` is set.

    Without a secret there are no links: the email tells the DSL to acknowledge in the
    review app or with ``vigil escalations ack`` instead.
    """
    if secret is None:
        return None
    key = secret.reveal().encode("utf-8") if isinstance(secret, Secret) else secret
    token = sign(key, ACK, escalation_id, require_utc(now, "now") + ttl)
    return f"{base_url.rstrip('/')}/ack/{token}"


def _mac(secret: bytes, purpose: str, subject_id: int, expiry: int) -> bytes:
    message = f"{purpose}|{subject_id}|{expiry}".encode("ascii")
    return hmac.new(secret, message, hashlib.sha256).digest()


def _parse(token: str) -> tuple[int, int, bytes] | None:
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        return None
    body_part, mac_part = token.split(".")
    if not (_B64.fullmatch(body_part) and _B64.fullmatch(mac_part)):
        return None
    body, mac = _b64decode(body_part), _b64decode(mac_part)
    if body is None or mac is None or len(mac) != hashlib.sha256().digest_size:
        return None
    match = _BODY.fullmatch(body.decode("ascii", errors="replace"))
    if match is None:
        return None
    return int(match[1]), int(match[2]), mac


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def _check_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes) or not secret:
        raise ValueError("the signing secret must be non-empty bytes")


def _check_purpose(purpose: str) -> None:
    if not _PURPOSE.fullmatch(purpose):
        raise ValueError("purpose must be a short lower-case name such as 'ack'")
