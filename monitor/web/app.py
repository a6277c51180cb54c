"""The web app: a thin Starlette app over the Store (STYLE rule 14).

It serves the review app (``monitor.web.review``, ``decisions``, ``evidence``, ``oversight``
and ``admin``; signing in is ``monitor.web.auth``), the DSL's acknowledgement links and
``/healthz``. Views call the same store functions as the CLI and hold no business logic. Every
page treats what it shows as hostile: Jinja2 autoescaping is on, nothing is marked safe, and
the CSP allows no inline script or style at all (the one stylesheet is ``/static/app.css``;
there is no script). ``/readyz`` and ``/metrics`` live in ``monitor.web.health``.

Acknowledgement links (``monitor.links``): the signed token in the URL is the capability.
``GET /ack/<token>`` only shows what would be acknowledged (mail scanners prefetch links, so
a GET must never change anything); the form POSTs back to the same URL, carrying the token
again, and only that acknowledges. The acknowledgement page shows ids, platform, flags and
severity only — never post text or media — and sets no cookie, so there is no ambient authority
for a cross-site request to borrow; a POST that says it comes from another site is refused all
the same. Every bad token (forged, expired, for another purpose, unknown row) gets one 404.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from classifiers.taxonomy import Severity
from monitor.config import Settings
from monitor.links import ACK, MAX_TOKEN_CHARS, verify
from monitor.logging import get_logger
from monitor.metrics import Metrics
from monitor.store import Store, StoreError
from monitor.store.escalations import (
    MAX_NAME_CHARS,
    EscalationSummary,
    acknowledge,
    escalation_summary,
)
from monitor.web.admin import admin_routes
from monitor.web.auth import auth_routes, cross_site, read_form
from monitor.web.decisions import decision_routes
from monitor.web.evidence import evidence_routes
from monitor.web.health import SchedulerView, health_routes
from monitor.web.oversight import oversight_routes
from monitor.web.pages import install_filters
from monitor.web.review import queue_routes

__all__ = ["SECURITY_HEADERS", "create_app"]

log = get_logger(__name__)
UK = ZoneInfo("Europe/London")
TEMPLATES = Path(__file__).resolve().parent / "templates"
ACK_FORM_BYTES = 4096  # a token and a name
STATIC = Path(__file__).resolve().parent / "static"
SECURITY_HEADERS: Mapping[str, str] = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-robots-tag": "noindex, nofollow",
}


@dataclass(kw_only=True)
class WebContext:
    """What the views need; ``store`` is set by the lifespan unless the caller passed one."""

    settings: Settings
    store: Store | None
    clock: Callable[[], datetime]
    templates: Environment
    _school_id: int | None = field(default=None, init=False, repr=False)

    @property
    def secret(self) -> bytes | None:
        """The link-signing key, or None when ``[web] secret`` is not configured."""
        secret = self.settings.web.secret
        return secret.reveal().encode("utf-8") if secret is not None else None

    def require_store(self) -> Store:
        """The open store (the lifespan opens it before the first request)."""
        if self.store is None:
            raise RuntimeError("the web app's store is not open (lifespan not run)")
        return self.store

    async def school_id(self) -> int:
        """The configured school's id (made on first use, as the daemon does)."""
        if self._school_id is None:
            school = self.settings.school
            self._school_id = await self.require_store().ensure_school(
                school.slug, school.name, self.clock()
            )
        return self._school_id


def create_app(
    settings: Settings,
    store: Store | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
    metrics: Metrics | None = None,
    scheduler: SchedulerView | None = None,
) -> Starlette:
    """The Starlette app; with no ``store`` its lifespan opens (and closes) one from settings.

    Inside ``vigil run`` the daemon passes its ``metrics`` (counters for ``/metrics``) and its
    ``scheduler`` probe (for ``/readyz``); ``vigil web`` alone has neither.
    """
    templates = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined
    )
    install_filters(templates)
    context = WebContext(
        settings=settings,
        store=store,
        clock=clock or (lambda: datetime.now(UTC)),
        templates=templates,
    )
    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            *health_routes(metrics=metrics, scheduler=scheduler),
            Route("/ack/{token}", ack_page, methods=["GET"]),
            Route("/ack/{token}", ack_submit, methods=["POST"]),
            *auth_routes(),
            *queue_routes(),
            *decision_routes(),
            *evidence_routes(),
            *oversight_routes(),
            *admin_routes(),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={HTTPException: http_error, Exception: server_error},
        lifespan=_lifespan(context, owns_store=store is None),
    )
    app.state.vigil = context
    return app


def _lifespan(context: WebContext, *, owns_store: bool) -> Callable[[Starlette], Any]:
    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if not owns_store:
            yield
            return
        from monitor.app import check_schema  # the daemon's check; heavy imports, so here

        db = context.settings.database
        store = Store.open(
            context.settings.database_url(),
            busy_timeout=db.busy_timeout,
            pool_size=db.pool_size,
            echo=db.echo,
        )
        try:
            await check_schema(store)
            context.store = store
            log.info("web_ready", links=context.secret is not None)
            yield
        finally:
            context.store = None
            await store.close()

    return lifespan


class SecurityHeaders:
    """Adds ``SECURITY_HEADERS`` to every response, error pages included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


# --- views -----------------------------------------------------------------------------------


async def healthz(_request: Request) -> Response:
    """Liveness for systemd, a load balancer or a monitoring check: no content, no database."""
    return PlainTextResponse("ok")


async def ack_page(request: Request) -> Response:
    """Show what the link would acknowledge, with the form; never acknowledges."""
    context, found = await _escalation_for(request)
    if found is None:
        return _not_found(context)
    escalation_id, summary = found
    log.info("ack_page_viewed", escalation_id=escalation_id)
    if summary.acknowledged_at is not None:
        return _render(
            context,
            "ack_done.html",
            summary,
            newly=False,
            by=summary.acknowledged_by or "-",
            at=_uk(summary.acknowledged_at),
        )
    return _form(context, request, summary)


async def ack_submit(request: Request) -> Response:
    """Acknowledge the escalation named by the token, as the name given in the form."""
    context, found = await _escalation_for(request)
    if found is None:
        return _not_found(context)
    if cross_site(request):
        return _error(context, 403, "Refused", "This form must be sent from the Vigil page itself.")
    form = await read_form(request, limit=ACK_FORM_BYTES)
    if form is None:
        return _error(context, 400, "Bad request", "The form could not be read.")
    escalation_id, summary = found
    if not hmac.compare_digest(form.get("token", ""), request.path_params["token"]):
        return _error(context, 400, "Bad request", "The form does not match this link.")
    try:
        result = await acknowledge(
            context.require_store(),
            escalation_id,
            form.get("name", ""),
            context.clock(),
            via="link",
        )
    except ValueError as err:
        return _form(context, request, summary, error=str(err), name=form.get("name", ""))
    log.info("ack_link_used", escalation_id=escalation_id, newly=result.newly)
    summary = await escalation_summary(context.require_store(), escalation_id) or summary
    return _render(
        context,
        "ack_done.html",
        summary,
        newly=result.newly,
        by=result.acknowledged_by,
        at=_uk(result.acknowledged_at),
    )


async def http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and wrong methods get a plain page, never a traceback."""
    context: WebContext = request.app.state.vigil
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404 and request.url.path.startswith("/ack/"):
        return _not_found(context)
    if status == 404:
        return _error(context, 404, "Page not found", "There is no page at this address.")
    return _error(context, status, "Error", "That request cannot be answered.")


async def server_error(request: Request, exc: Exception) -> Response:
    """A bug: log its type (never the URL, which holds the token) and show a plain page."""
    log.error("web_request_failed", error=type(exc).__name__)
    return _error(request.app.state.vigil, 500, "Error", "Something went wrong.")


# --- helpers -------------------------------------------------------------------------------


async def _escalation_for(
    request: Request,
) -> tuple[WebContext, tuple[int, EscalationSummary] | None]:
    """The escalation a valid, unexpired ack token names, or None for any bad token."""
    context: WebContext = request.app.state.vigil
    token = request.path_params["token"]
    secret = context.secret
    if secret is None or len(token) > MAX_TOKEN_CHARS:
        return context, None
    escalation_id = verify(secret, token, ACK, context.clock())
    if escalation_id is None:
        return context, None
    try:
        summary = await escalation_summary(context.require_store(), escalation_id)
    except StoreError:
        summary = None
    return context, None if summary is None else (escalation_id, summary)


def _form(
    context: WebContext,
    request: Request,
    summary: EscalationSummary,
    *,
    error: str = "",
    name: str = "",
) -> Response:
    status = 400 if error else 200
    return _render(
        context,
        "ack.html",
        summary,
        status=status,
        token=request.path_params["token"],
        error=error,
        name=name[:MAX_NAME_CHARS],
        max_name=MAX_NAME_CHARS,
    )


def _render(
    context: WebContext,
    template: str,
    summary: EscalationSummary,
    *,
    status: int = 200,
    **values: Any,
) -> Response:
    html = context.templates.get_template(template).render(
        e=summary,
        severity=_severity(summary.severity),
        sent_at=_uk(summary.sent_at) if summary.sent_at else "",
        due_at=_uk(summary.response_due_at),
        **values,
    )
    return HTMLResponse(html, status_code=status)


def _not_found(context: WebContext) -> Response:
    return _error(
        context,
        404,
        "Link not found",
        "This link is not valid or has expired. Acknowledge the escalation in the Vigil review "
        "app, or ask your Vigil administrator to run `vigil escalations ack`.",
    )


def _error(context: WebContext, status: int, title: str, message: str) -> Response:
    html = context.templates.get_template("error.html").render(title=title, message=message)
    return HTMLResponse(html, status_code=status, headers=dict(SECURITY_HEADERS))


def _severity(value: int) -> str:
    try:
        return Severity(value).label
    except ValueError:
        return str(value)


def _uk(value: datetime) -> str:
    return f"{value.astimezone(UK):%A %d %B %Y %H:%M} UK time"
