"""The DSL's and the administrator's pages: escalations, audit log, sources, accounts, report.

Roles (``monitor.web.pages``): escalations are for DSLs only; the audit log, sources, the
accounts register and the governors' report for DSLs and administrators. Nothing here shows
post text. Every CSV cell is made formula-safe before a spreadsheet sees it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from monitor.store import StoreError, review
from monitor.store.escalations import (
    EscalationSummary,
    acknowledge,
    escalation_summary,
    list_escalations,
)
from monitor.web.auth import Viewer, requires
from monitor.web.pages import (
    DSL_ONLY,
    OVERSIGHT,
    UK,
    actor,
    csv_response,
    csv_text,
    error_page,
    not_your_school,
    render,
    school_of,
    uk_day_bounds,
    web_context,
)
from monitor.web.review import DONE

__all__ = ["oversight_routes"]

MAX_FILTER_CHARS = 100
AUDIT_PAGE_ROWS = 500
MAX_OUTCOME_NOTE_CHARS = 2000
REPORT_DAYS = 30  # the default report period, ending today
MAX_REPORT_DAYS = 3660
ACCOUNT_COLUMNS = (
    "platform",
    "handle",
    "account_id",
    "master_administrator",
    "approved_posters",
    "opened",
    "closed",
)


def oversight_routes() -> list[Route]:
    """The escalations, audit, sources, accounts and report routes."""
    return [
        Route("/escalations", escalations_page, methods=["GET"]),
        Route("/escalations/{id:int}/ack", escalation_ack, methods=["POST"]),
        Route("/escalations/{id:int}/outcome", escalation_outcome, methods=["POST"]),
        Route("/audit", audit_page, methods=["GET"]),
        Route("/audit.csv", audit_download, methods=["GET"]),
        Route("/sources", sources_page, methods=["GET"]),
        Route("/accounts", accounts_page, methods=["GET"]),
        Route("/accounts.csv", accounts_download, methods=["GET"]),
        Route("/report", report_page, methods=["GET"]),
        Route("/report.csv", report_download, methods=["GET"]),
    ]


# --- escalations ---------------------------------------------------------------------------


@requires(*DSL_ONLY)
async def escalations_page(request: Request, viewer: Viewer) -> Response:
    """Every escalation of the school, those still waiting for a DSL first."""
    school_id = await school_of(request, viewer)
    if school_id is None:
        return not_your_school(request, viewer)
    rows = await list_escalations(web_context(request).require_store(), school_id)
    return render(
        request,
        viewer,
        "escalations.html",
        section="escalations",
        rows=rows,
        outcomes=review.ESCALATION_OUTCOMES,
        done=DONE.get(request.query_params.get("done", ""), ""),
    )


@requires(*DSL_ONLY)
async def escalation_ack(request: Request, viewer: Viewer) -> Response:
    """Acknowledge an escalation as the signed-in DSL."""
    found = await _escalation(request, viewer)
    if found is None:
        return _no_escalation(request, viewer)
    context = web_context(request)
    await acknowledge(
        context.require_store(), found.id, viewer.user.display_name, context.clock(), via="app"
    )
    return _back(request, found.case_id, "acknowledged")


@requires(*DSL_ONLY)
async def escalation_outcome(request: Request, viewer: Viewer) -> Response:
    """Record what the DSL did (CEOP, police, LADO, parents, no further action)."""
    found = await _escalation(request, viewer)
    if found is None:
        return _no_escalation(request, viewer)
    form: Mapping[str, str] = request.state.form
    outcome = form.get("outcome", "")
    note = form.get("note", "").strip()
    back = _back_url(request, found.case_id)
    if outcome not in review.ESCALATION_OUTCOMES or len(note) > MAX_OUTCOME_NOTE_CHARS:
        message = "Choose an outcome (and keep the note under 2,000 characters)."
        return error_page(request, viewer, 400, "Not recorded", message, back=back)
    context = web_context(request)
    try:
        await review.record_escalation_outcome(
            context.require_store(),
            found.id,
            outcome,
            note,
            actor=actor(viewer),
            now=context.clock(),
        )
    except (StoreError, ValueError) as err:
        return error_page(request, viewer, 409, "Not recorded", str(err), back=back)
    return _back(request, found.case_id, "outcome")


async def _escalation(request: Request, viewer: Viewer) -> EscalationSummary | None:
    school_id = await school_of(request, viewer)
    if school_id is None:
        return None
    store = web_context(request).require_store()
    found = await escalation_summary(store, int(request.path_params["id"]))
    return found if found is not None and found.school_id == school_id else None


def _back_url(request: Request, case_id: int) -> str:
    """Where the form came from: the case page or the escalations page (never a free URL)."""
    form: Mapping[str, str] = request.state.form
    return f"/cases/{case_id}" if form.get("back") == "case" else "/escalations"


def _back(request: Request, case_id: int, done: str) -> Response:
    return RedirectResponse(f"{_back_url(request, case_id)}?done={done}", status_code=303)


def _no_escalation(request: Request, viewer: Viewer) -> Response:
    return error_page(
        request,
        viewer,
        404,
        "Escalation not found",
        "There is no such escalation.",
        back="/escalations",
    )


# --- audit log -----------------------------------------------------------------------------


@requires(*OVERSIGHT)
async def audit_page(request: Request, viewer: Viewer) -> Response:
    """The audit log, newest first, filtered by actor, event and UK dates."""
    found = await _audit_rows(request, viewer, limit=AUDIT_PAGE_ROWS)
    if isinstance(found, Response):
        return found
    rows, query = found
    return render(
        request,
        viewer,
        "audit.html",
        section="audit",
        rows=rows,
        query=query,
        csv_query=urlencode({k: v for k, v in query.items() if v}),
        limit=AUDIT_PAGE_ROWS,
    )


@requires(*OVERSIGHT)
async def audit_download(request: Request, viewer: Viewer) -> Response:
    """The filtered audit log as CSV."""
    found = await _audit_rows(request, viewer, limit=100_000)
    if isinstance(found, Response):
        return found
    return csv_response(review.audit_csv(found[0]), "vigil-audit.csv")


async def _audit_rows(
    request: Request, viewer: Viewer, *, limit: int
) -> tuple[list[review.AuditRow], dict[str, str]] | Response:
    school_id = await school_of(request, viewer)
    if school_id is None:
        return not_your_school(request, viewer)
    params = request.query_params
    query = {k: params.get(k, "")[:MAX_FILTER_CHARS].strip() for k in ("actor", "event")}
    since, until = _date(params.get("since")), _date(params.get("until"))
    query |= {
        "since": since.isoformat() if since else "",
        "until": until.isoformat() if until else "",
    }
    bounds_since = uk_day_bounds(since, since)[0] if since else None
    bounds_until = uk_day_bounds(until, until)[1] if until else None
    rows = await review.audit_rows(
        web_context(request).require_store(),
        school_id,
        actor=query["actor"] or None,
        event=query["event"] or None,
        since=bounds_since,
        until=bounds_until,
        limit=limit,
    )
    return rows, query


# --- sources and accounts ------------------------------------------------------------------


@requires(*OVERSIGHT)
async def sources_page(request: Request, viewer: Viewer) -> Response:
    """Each source's health: last poll, last error, pauses (never content or credentials)."""
    school_id = await school_of(request, viewer)
    if school_id is None:
        return not_your_school(request, viewer)
    context = web_context(request)
    states = await context.require_store().list_sources(school_id)
    configured = {s.name: s for s in context.settings.sources}
    return render(
        request,
        viewer,
        "sources.html",
        section="sources",
        states=states,
        configured=configured,
    )


@requires(*OVERSIGHT)
async def accounts_page(request: Request, viewer: Viewer) -> Response:
    """The register of the school's official accounts (from the config)."""
    accounts = web_context(request).settings.accounts
    return render(request, viewer, "accounts.html", section="accounts", accounts=accounts)


@requires(*OVERSIGHT)
async def accounts_download(request: Request, viewer: Viewer) -> Response:
    """The accounts register as CSV."""
    rows = [
        (
            a.platform,
            a.handle,
            a.account_id,
            a.master_administrator,
            "; ".join(a.approved_posters),
            a.opened.isoformat(),
            a.closed.isoformat() if a.closed else "",
        )
        for a in web_context(request).settings.accounts
    ]
    return csv_response(csv_text(ACCOUNT_COLUMNS, rows), "vigil-accounts.csv")


# --- governors' report ---------------------------------------------------------------------


@requires(*OVERSIGHT)
async def report_page(request: Request, viewer: Viewer) -> Response:
    """The governors' report for a period (default: the last 30 days)."""
    found = await _report(request, viewer)
    if isinstance(found, Response):
        return found
    return render(request, viewer, "report.html", section="report", report=found)


@requires(*OVERSIGHT)
async def report_download(request: Request, viewer: Viewer) -> Response:
    """The governors' report as CSV."""
    found = await _report(request, viewer)
    if isinstance(found, Response):
        return found
    name = f"vigil-report-{found.start.isoformat()}-{found.end.isoformat()}.csv"
    return csv_response(review.report_csv(found), name)


async def _report(request: Request, viewer: Viewer) -> review.GovernorsReport | Response:
    school_id = await school_of(request, viewer)
    if school_id is None:
        return not_your_school(request, viewer)
    context = web_context(request)
    today = context.clock().astimezone(UK).date()
    end = _date(request.query_params.get("end")) or today
    start = _date(request.query_params.get("start")) or end - timedelta(days=REPORT_DAYS - 1)
    if start > end or (end - start).days > MAX_REPORT_DAYS:
        message = "The start must not be after the end, and the period at most ten years."
        return error_page(request, viewer, 400, "Check the dates", message, back="/report")
    return await review.governors_report(context.require_store(), school_id, start, end)


# --- helpers -------------------------------------------------------------------------------


def _date(value: str | None) -> date | None:
    """A ``YYYY-MM-DD`` date from the query string, or None."""
    if not value:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None
