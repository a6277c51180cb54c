"""Signing in to the review app: passwords, sessions, CSRF, roles and login throttling.

- **Passwords** are hashed with argon2id (argon2-cffi's ``PasswordHasher`` defaults); hashing
  and checking run in a worker thread, never on the event loop.
- **Sessions.** ``POST /login`` starts a session (``monitor.store.users.create_session``): the
  ``vigil_session`` cookie is HttpOnly, SameSite=Strict, Path=/, and Secure when ``[web]
  base_url`` is https. It has no Max-Age, so it goes when the browser closes; the server ends it
  after ``SESSION_LIFETIME`` in all, or ``SESSION_IDLE`` without a request.
- **Every state-changing request** (``requires``) must carry the session's CSRF token in the form
  field ``csrf`` and must not say it comes from another site (Origin, Referer, Sec-Fetch-Site).
- **Login throttling** (``LoginThrottle``): 5 failed sign-ins within 15 minutes for one username,
  or from one client address, block that username or address for 15 minutes. The counts live in
  the memory of the web process: each process counts on its own, and a restart forgets them.
  Behind a reverse proxy the client address is the proxy's unless uvicorn is told to trust its
  forwarded headers.
- **Redirects after sign-in** go only to a path on this site (never ``//host`` or a full URL).

A failed sign-in gets the same answer whether the username is unknown, the password wrong or
the user disabled, and an unknown username costs the same hashing time as a known one.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from monitor.logging import get_logger
from monitor.store.users import (
    Role,
    UserRecord,
    create_session,
    end_session,
    find_user,
    session_user,
)

__all__ = [
    "MAX_FORM_BYTES",
    "MIN_PASSWORD_CHARS",
    "SESSION_COOKIE",
    "SESSION_IDLE",
    "SESSION_LIFETIME",
    "LoginThrottle",
    "Viewer",
    "auth_routes",
    "can_see_case",
    "cross_site",
    "hash_password",
    "password_problem",
    "read_form",
    "requires",
    "safe_next",
    "verify_password",
    "viewer",
]

log = get_logger(__name__)

SESSION_COOKIE = "vigil_session"
SESSION_LIFETIME = timedelta(hours=12)  # one working day, then sign in again
SESSION_IDLE = timedelta(hours=1)  # long enough to read a case and write a note
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024  # argon2 hashes anything, but a megabyte "password" is an attack
MAX_FORM_BYTES = 64 * 1024  # notes are the longest field
MAX_FORM_FIELDS = 50
LOGIN_FAILED = "Wrong username or password."
THROTTLED = "Too many failed sign-ins. Wait 15 minutes and try again."
CROSS_SITE = "This form must be sent from the Vigil page itself."
STALE_FORM = "The form is out of date. Go back, reload the page and try again."
HASHER = PasswordHasher()  # argon2id with the library's current recommended cost


# -- passwords ----------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (salted; the encoded string carries its parameters)."""
    return HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True if ``password`` matches ``password_hash``; False for a mismatch or a malformed hash."""
    try:
        return HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def password_problem(password: str) -> str | None:
    """Why ``password`` may not be used, or None when it is acceptable."""
    if len(password) < MIN_PASSWORD_CHARS:
        return f"use at least {MIN_PASSWORD_CHARS} characters"
    if len(password) > MAX_PASSWORD_CHARS:
        return f"use at most {MAX_PASSWORD_CHARS} characters"
    if not password.strip():
        return "the password is only spaces"
    if len(set(password)) < 4:
        return "use more than a few different characters"
    return None


@functools.cache
def _dummy_hash() -> str:
    """A hash to check unknown usernames against, so they cost as long as known ones."""
    return hash_password("not a password: evens out the time of a failed sign-in")


# -- login throttling ---------------------------------------------------------------------------


class LoginThrottle:
    """Failed sign-ins per key in a sliding window; too many block the key for a while.

    In-memory and per process (see the module docstring). Keys are opaque strings; the login
    view uses ``user:<username>`` and ``ip:<client address>``.
    """

    MAX_KEYS = 10_000  # beyond this, forget keys with nothing recent (bounded memory)

    def __init__(
        self,
        *,
        limit: int = 5,
        window: timedelta = timedelta(minutes=15),
        block: timedelta = timedelta(minutes=15),
    ) -> None:
        self.limit, self.window, self.block = limit, window, block
        self._failures: dict[str, deque[datetime]] = {}
        self._blocked_until: dict[str, datetime] = {}

    def blocked(self, key: str, now: datetime) -> bool:
        """True while ``key`` is blocked."""
        until = self._blocked_until.get(key)
        if until is None:
            return False
        if now < until:
            return True
        del self._blocked_until[key]
        return False

    def failed(self, key: str, now: datetime) -> None:
        """Count a failed sign-in for ``key``; the ``limit``-th within ``window`` blocks it."""
        failures = self._failures.setdefault(key, deque())
        failures.append(now)
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if len(failures) >= self.limit:
            self._blocked_until[key] = now + self.block
            failures.clear()
        if len(self._failures) > self.MAX_KEYS:
            self._forget_stale(now)

    def succeeded(self, key: str) -> None:
        """Forget ``key``'s failures after a successful sign-in."""
        self._failures.pop(key, None)

    def _forget_stale(self, now: datetime) -> None:
        for key in [k for k, f in self._failures.items() if not f or f[-1] <= now - self.window]:
            del self._failures[key]
        for key in [k for k, until in self._blocked_until.items() if until <= now]:
            del self._blocked_until[key]


# -- the signed-in user -------------------------------------------------------------------------


@dataclass(frozen=True)
class Viewer:
    """The signed-in user of a request, with their session's CSRF token."""

    user: UserRecord
    csrf: str


async def viewer(request: Request) -> Viewer | None:
    """The request's signed-in user, or None (no cookie, or an ended, expired or idle session)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    context = request.app.state.vigil
    found = await session_user(
        context.require_store(), token, now=context.clock(), idle=SESSION_IDLE
    )
    return None if found is None else Viewer(user=found[0], csrf=found[1])


def can_see_case(viewer: Viewer, restricted: bool) -> bool:
    """Only a DSL may see a safeguarding-restricted case; anyone signed in may see the rest."""
    return not restricted or viewer.user.role == Role.DSL


View = Callable[[Request, Viewer], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]
SAFE_METHODS = frozenset({"GET", "HEAD"})


def requires(*roles: Role) -> Callable[[View], Endpoint]:
    """Wrap ``async def view(request, viewer)`` as a Starlette endpoint for users with ``roles``.

    No roles means any signed-in user. An anonymous GET is sent to the login page (coming back
    afterwards); an anonymous POST, a user without the role, a POST from another site and a
    POST without the session's CSRF token all get 403. A POST's urlencoded form is parsed here
    and left on ``request.state.form``.
    """
    allowed = frozenset(roles) or frozenset(Role)

    def decorate(view: View) -> Endpoint:
        @functools.wraps(view)
        async def endpoint(request: Request) -> Response:
            if request.method in SAFE_METHODS:
                return await _safe_request(request, view, allowed)
            return await _unsafe_request(request, view, allowed)

        return endpoint

    return decorate


async def _safe_request(request: Request, view: View, allowed: frozenset[Role]) -> Response:
    who = await viewer(request)
    if who is None:
        return RedirectResponse(_login_url(request), status_code=303)
    if who.user.role not in allowed:
        return _refused(request, who, "Your role does not allow this page.")
    request.state.form = {}
    return await view(request, who)


async def _unsafe_request(request: Request, view: View, allowed: frozenset[Role]) -> Response:
    if cross_site(request):
        return _refused(request, None, CROSS_SITE)
    who = await viewer(request)
    if who is None:
        return _refused(request, None, "Your session has ended. Sign in again.")
    form = await read_form(request)
    if form is None:
        return _bad_form(request, who)
    if not _csrf_ok(form, who):
        return _refused(request, who, STALE_FORM)
    if who.user.role not in allowed:
        return _refused(request, who, "Your role does not allow this.")
    request.state.form = form
    return await view(request, who)


def _csrf_ok(form: dict[str, str], who: Viewer) -> bool:
    # bytes: compare_digest refuses non-ASCII str, and the field is attacker-controlled
    return hmac.compare_digest(form.get("csrf", "").encode("utf-8"), who.csrf.encode("utf-8"))


def _login_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/login?" + urlencode({"next": target})


# -- /login and /logout -------------------------------------------------------------------------


def auth_routes() -> list[Route]:
    """``GET``/``POST /login`` and ``POST /logout``."""
    return [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login_submit, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]


async def login_page(request: Request) -> Response:
    """The sign-in form (or straight on to ``next`` when already signed in)."""
    target = safe_next(request.query_params.get("next", "/"))
    if await viewer(request) is not None:
        return RedirectResponse(target, status_code=303)
    return _login_form(request, target)


async def login_submit(request: Request) -> Response:
    """Check the username and password, then start a session and go on to ``next``."""
    if cross_site(request):
        return _refused(request, None, CROSS_SITE)
    form = await read_form(request)
    if form is None:
        return _bad_form(request, None)
    target = safe_next(form.get("next", "/"))
    username = form.get("username", "").strip().lower()[:100]
    context = request.app.state.vigil
    now: datetime = context.clock()
    throttle, keys = _throttle(request), _throttle_keys(request, username)
    if any(throttle.blocked(key, now) for key in keys):
        log.warning("login_throttled")
        return _login_form(request, target, username=username, error=THROTTLED, status=429)
    user = await _check_password(request, username, form.get("password", ""))
    if user is None:
        for key in keys:
            throttle.failed(key, now)
        # the name typed is recorded (it may be nobody's): repeated failures are worth seeing
        await _audit_sign_in(request, None, "login_failed", actor=username or "(blank)")
        return _login_form(request, target, username=username, error=LOGIN_FAILED, status=400)
    for key in keys:
        throttle.succeeded(key)
    return await _start_session(request, user, target)


async def logout(request: Request) -> Response:
    """End the session (the form carries its CSRF token) and go to the sign-in page."""
    if cross_site(request):
        return _refused(request, None, CROSS_SITE)
    who = await viewer(request)
    if who is not None:
        form = await read_form(request)
        if form is None or not _csrf_ok(form, who):
            return _refused(request, who, STALE_FORM)
        await end_session(request.app.state.vigil.require_store(), request.cookies[SESSION_COOKIE])
        log.info("logged_out", user_id=who.user.id)
        await _audit_sign_in(request, who.user, "logged_out", actor=who.user.username)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request)
    )
    return response


async def _audit_sign_in(
    request: Request, user: UserRecord | None, event: str, *, actor: str
) -> None:
    """Sign-ins, failed sign-ins and sign-outs go in the audit log (never a password)."""
    context = request.app.state.vigil
    await context.require_store().audit(
        school_id=user.school_ids[0] if user is not None and user.school_ids else None,
        actor=actor[:200],
        now=context.clock(),
        event=event,
        subject_type="user",
        subject_id=user.id if user is not None else None,
        detail={"client": request.client.host if request.client else None},
    )


async def _check_password(request: Request, username: str, password: str) -> UserRecord | None:
    """The user if the password is theirs and they are not disabled; else None."""
    if not username or not password or len(password) > MAX_PASSWORD_CHARS:
        return None
    found = await find_user(request.app.state.vigil.require_store(), username)
    user, stored = found if found is not None else (None, None)
    # check even when there is no user or hash, so a failure takes the same time either way
    matches = await asyncio.to_thread(verify_password, stored or _dummy_hash(), password)
    if user is None or stored is None or not matches or user.disabled:
        log.info("login_failed", user_id=user.id if user else None)
        return None
    return user


async def _start_session(request: Request, user: UserRecord, target: str) -> Response:
    context = request.app.state.vigil
    store = context.require_store()
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        await end_session(store, old)
    token, _csrf = await create_session(
        store, user.id, now=context.clock(), lifetime=SESSION_LIFETIME
    )
    log.info("logged_in", user_id=user.id, role=user.role.value)
    await _audit_sign_in(request, user, "logged_in", actor=user.username)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


def safe_next(value: str) -> str:
    """``value`` if it is a path on this site, else ``/`` (no open redirect)."""
    if (
        not value.startswith("/")
        or value.startswith("//")
        or len(value) > 2000
        or any(ch == "\\" or ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value)
    ):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or parts.path in ("/login", "/logout"):
        return "/"
    return value


def _throttle(request: Request) -> LoginThrottle:
    """The app's throttle, made on first use (one per app, so one per process)."""
    state = request.app.state
    throttle = getattr(state, "login_throttle", None)
    if not isinstance(throttle, LoginThrottle):
        throttle = LoginThrottle()
        state.login_throttle = throttle
    return throttle


def _throttle_keys(request: Request, username: str) -> tuple[str, ...]:
    address = request.client.host if request.client else "unknown"
    return (f"user:{username}", f"ip:{address}")


def _login_form(
    request: Request, target: str, *, username: str = "", error: str = "", status: int = 200
) -> Response:
    return _page(request, "login.html", status, None, next=target, username=username, error=error)


# -- shared helpers -----------------------------------------------------------------------------


def _secure(request: Request) -> bool:
    base_url: str = request.app.state.vigil.settings.web.base_url
    return base_url.lower().startswith("https://")


def cross_site(request: Request) -> bool:
    """True when the browser says the request comes from another site (or origin).

    Under ``Referrer-Policy: no-referrer`` a same-origin form sends ``Origin: null``, so "null"
    is accepted; the CSRF token (or, for /login, the password) is what authorises the request.
    """
    if request.headers.get("sec-fetch-site", "") in ("cross-site", "same-site"):
        return True
    origin = request.headers.get("origin")
    if origin is None:
        referer = request.headers.get("referer")
        origin = _origin(referer) if referer else None
    if origin is None or origin == "null":
        return False
    context = request.app.state.vigil
    allowed = {_origin(context.settings.web.base_url), _origin(str(request.base_url))}
    return origin.rstrip("/").lower() not in allowed


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


async def read_form(request: Request, limit: int = MAX_FORM_BYTES) -> dict[str, str] | None:
    """A urlencoded form of at most ``limit`` bytes; None if too big, another type or not UTF-8."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    try:
        fields = parse_qs(
            body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS
        )
    except (UnicodeDecodeError, ValueError):
        return None
    return {key: values[0] for key, values in fields.items() if values}


def _bad_form(request: Request, who: Viewer | None) -> Response:
    message = "The form could not be read."
    return _page(request, "error.html", 400, who, title="Bad request", message=message)


def _refused(request: Request, who: Viewer | None, message: str) -> Response:
    return _page(request, "error.html", 403, who, title="Not allowed", message=message)


def _page(
    request: Request, template: str, status: int, who: Viewer | None, **values: Any
) -> Response:
    """Render ``template``; every page gets ``viewer`` (None when signed out) for the header."""
    templates = request.app.state.vigil.templates
    html = templates.get_template(template).render(viewer=who, **values)
    return HTMLResponse(html, status_code=status)
