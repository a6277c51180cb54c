"""Review-app users and their browser sessions.

A user has one role (``Role``) and belongs to one or more schools. Passwords arrive here already
hashed (``monitor.web.auth.hash_password``); the store never sees a password and never writes a
hash to the audit log. A session is a random token in the browser's cookie; the table keeps only
its sha256, so a copy of the database cannot be used to sign in. Changing a user's password or
disabling them ends every session they have.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from connectors.base import require_utc
from monitor.store import tables as t
from monitor.store.audit import add_audit
from monitor.store.convert import must
from monitor.store.facade import Store
from monitor.store.rows import StoreError

__all__ = [
    "PASSWORD_SET_EVENT",
    "USER_ADDED_EVENT",
    "USER_DISABLED_EVENT",
    "Role",
    "UserRecord",
    "add_user",
    "create_session",
    "disable_user",
    "end_session",
    "find_user",
    "get_user",
    "list_users",
    "normalise_username",
    "session_user",
    "set_password",
]

USER_ADDED_EVENT = "user_added"
PASSWORD_SET_EVENT = "user_password_set"
USER_DISABLED_EVENT = "user_disabled"
USERNAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,99}")
MAX_TOKEN_CHARS = 128  # a cookie longer than any token we issue is not worth hashing
TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at is written at most this often per session


class Role(StrEnum):
    """What a user may do: moderators see non-safeguarding cases, DSLs everything."""

    MODERATOR = "moderator"
    DSL = "dsl"
    ADMIN = "admin"


@dataclass(frozen=True, kw_only=True)
class UserRecord:
    """A review-app user (never with the password hash)."""

    id: int
    username: str
    display_name: str
    email: str
    role: Role
    disabled: bool
    school_ids: tuple[int, ...]


def normalise_username(username: str) -> str:
    """The stored form of a username (trimmed, lower case); ValueError if it is not allowed."""
    name = username.strip().lower()
    if not USERNAME.fullmatch(name):
        raise ValueError(
            "a username is 1-100 characters: letters, digits and . _ @ - "
            "(starting with a letter or digit)"
        )
    return name


# -- users --------------------------------------------------------------------------------------


async def add_user(
    store: Store,
    *,
    username: str,
    display_name: str,
    email: str,
    role: Role,
    password_hash: str,
    school_ids: Sequence[int],
    actor: str,
    now: datetime,
) -> UserRecord:
    """Add a user; StoreError if the username is taken, ValueError for a malformed field."""
    name = normalise_username(username)
    row = t.User(
        username=name,
        display_name=_clean_text(display_name, "display name", 200),
        email=_clean_email(email),
        role=Role(role).value,
        password_hash=password_hash,
        created_at=require_utc(now, "now"),
        disabled_at=None,
    )
    schools = tuple(sorted(set(school_ids)))
    try:
        async with store.transaction() as s:
            if await s.scalar(select(t.User.id).where(t.User.username == name)) is not None:
                raise StoreError(f"a user called {name!r} already exists")
            s.add(row)
            await s.flush()
            s.add_all(t.UserSchool(user_id=row.id, school_id=school) for school in schools)
            detail = {"username": name, "role": row.role, "school_ids": list(schools)}
            _audit(s, schools, row.created_at, actor, USER_ADDED_EVENT, row.id, detail)
    except IntegrityError as err:  # another process added the same username meanwhile
        raise StoreError(f"a user called {name!r} already exists") from err
    return _record(row, schools)


async def set_password(
    store: Store, username: str, password_hash: str, *, actor: str, now: datetime
) -> None:
    """Replace a user's password hash and end their sessions; StoreError for an unknown user."""
    now = require_utc(now, "now")
    async with store.transaction() as s:
        row = await _user_row(s, username)
        row.password_hash = password_hash
        await _end_sessions(s, row.id)
        detail = {"username": row.username}
        _audit(s, await _schools(s, row.id), now, actor, PASSWORD_SET_EVENT, row.id, detail)


async def disable_user(store: Store, username: str, *, actor: str, now: datetime) -> None:
    """Disable a user (they can no longer sign in) and end their sessions."""
    now = require_utc(now, "now")
    async with store.transaction() as s:
        row = await _user_row(s, username)
        already = row.disabled_at is not None
        if not already:
            row.disabled_at = now
        await _end_sessions(s, row.id)
        detail = {"username": row.username, "already_disabled": already}
        _audit(s, await _schools(s, row.id), now, actor, USER_DISABLED_EVENT, row.id, detail)


async def find_user(store: Store, username: str) -> tuple[UserRecord, str | None] | None:
    """The user called ``username`` with their password hash, or None (disabled users too)."""
    try:
        name = normalise_username(username)
    except ValueError:
        return None
    async with _reading(store) as s:
        row = await s.scalar(select(t.User).where(t.User.username == name))
        if row is None:
            return None
        return _record(row, await _schools(s, row.id)), row.password_hash


async def get_user(store: Store, user_id: int) -> UserRecord | None:
    """The user with id ``user_id``, or None."""
    async with _reading(store) as s:
        row = await s.get(t.User, user_id)
        return None if row is None else _record(row, await _schools(s, row.id))


async def list_users(store: Store) -> list[UserRecord]:
    """Every user, disabled ones included, by username."""
    async with _reading(store) as s:
        rows = (await s.scalars(select(t.User).order_by(t.User.username))).all()
        links = (await s.execute(select(t.UserSchool.user_id, t.UserSchool.school_id))).all()
    schools: dict[int, list[int]] = {}
    for user_id, school_id in links:
        schools.setdefault(user_id, []).append(school_id)
    return [_record(row, tuple(sorted(schools.get(row.id, ())))) for row in rows]


# -- sessions -----------------------------------------------------------------------------------


async def create_session(
    store: Store, user_id: int, *, now: datetime, lifetime: timedelta
) -> tuple[str, str]:
    """Start a session: (cookie token, CSRF token). Only the token's sha256 is stored."""
    now = require_utc(now, "now")
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    async with store.transaction() as s:
        s.add(
            t.WebSession(
                token_hash=_token_hash(token),
                user_id=user_id,
                csrf_token=csrf,
                created_at=now,
                last_seen_at=now,
                expires_at=now + lifetime,
            )
        )
    return token, csrf


async def session_user(
    store: Store, token: str, *, now: datetime, idle: timedelta
) -> tuple[UserRecord, str] | None:
    """(user, CSRF token) for a live session; None if unknown, expired, idle or user disabled.

    A dead session is deleted; a live one has ``last_seen_at`` moved on (at most once a minute).
    """
    now = require_utc(now, "now")
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    digest = _token_hash(token)
    async with _reading(store) as s:  # most requests only read: no write lock on SQLite
        found = (
            await s.execute(
                select(t.WebSession, t.User)
                .join(t.User, t.User.id == t.WebSession.user_id)
                .where(t.WebSession.token_hash == digest)
            )
        ).first()
        if found is None:
            return None
        session, user = found
        record = _record(user, await _schools(s, user.id))
    if not _alive(session, user, now, idle):
        await end_session(store, token)
        return None
    if now - must(session.last_seen_at) >= TOUCH_EVERY:
        async with store.transaction() as s:
            await s.execute(
                update(t.WebSession).where(t.WebSession.id == session.id).values(last_seen_at=now)
            )
    return record, session.csrf_token


async def end_session(store: Store, token: str) -> None:
    """End the session whose cookie holds ``token`` (nothing happens for an unknown token)."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return
    async with store.transaction() as s:
        await s.execute(delete(t.WebSession).where(t.WebSession.token_hash == _token_hash(token)))


# -- helpers ------------------------------------------------------------------------------------


@asynccontextmanager
async def _reading(store: Store) -> AsyncIterator[AsyncSession]:
    """A read-only session: on SQLite it starts deferred, so it never waits for a writer."""
    async with AsyncSession(store.engine, expire_on_commit=False) as session:
        yield session


def _alive(session: t.WebSession, user: t.User, now: datetime, idle: timedelta) -> bool:
    return (
        user.disabled_at is None
        and now < must(session.expires_at)
        and now - must(session.last_seen_at) < idle
    )


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


async def _user_row(s: AsyncSession, username: str) -> t.User:
    """The user row, locked for update; StoreError if there is none."""
    try:
        name = normalise_username(username)
    except ValueError:
        name = username
    row = await s.scalar(select(t.User).where(t.User.username == name).with_for_update())
    if row is None:
        raise StoreError(f"no user called {name!r}")
    return row


async def _schools(s: AsyncSession, user_id: int) -> tuple[int, ...]:
    rows = await s.scalars(
        select(t.UserSchool.school_id)
        .where(t.UserSchool.user_id == user_id)
        .order_by(t.UserSchool.school_id)
    )
    return tuple(rows.all())


async def _end_sessions(s: AsyncSession, user_id: int) -> None:
    await s.execute(delete(t.WebSession).where(t.WebSession.user_id == user_id))


def _audit(
    s: AsyncSession,
    schools: Sequence[int],
    now: datetime,
    actor: str,
    event: str,
    user_id: int,
    detail: dict[str, Any],
) -> None:
    """One entry in each of the user's schools' audit logs (one without a school if none)."""
    for school_id in schools or (None,):
        add_audit(s, school_id, now, actor, event, "user", user_id, detail)


def _record(row: t.User, school_ids: tuple[int, ...]) -> UserRecord:
    return UserRecord(
        id=row.id,
        username=row.username,
        display_name=row.display_name,
        email=row.email,
        role=Role(row.role),
        disabled=row.disabled_at is not None,
        school_ids=school_ids,
    )


def _clean_text(value: str, what: str, limit: int) -> str:
    text = " ".join(value.split())
    if not text:
        raise ValueError(f"the {what} is empty")
    if len(text) > limit or any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise ValueError(f"the {what} is longer than {limit} characters or has control characters")
    return text


def _clean_email(value: str) -> str:
    email = value.strip()
    local, _, domain = email.rpartition("@")
    if not local or "." not in domain or len(email) > 300 or any(ch.isspace() for ch in email):
        raise ValueError(f"{email!r} is not an email address")
    return email
