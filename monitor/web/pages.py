"""What every review-app page shares: the nav by role, rendering, filters and small formatters.

Everything a page prints is escaped by Jinja2's autoescape; the helpers here only choose *what*
to print. ``highlight`` splits post text into plain and matched segments (each escaped on its
own, never joined into markup), ``web_link`` decides whether a permalink may become a link at
all, and ``visible`` turns control and bidirectional-override characters into visible marks so
a hostile post cannot hide or reorder text on a moderator's screen.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from classifiers.taxonomy import Severity
from monitor.store.users import Role
from monitor.web.auth import Viewer

if TYPE_CHECKING:
    from monitor.web.app import WebContext

__all__ = [
    "ADMIN_ONLY",
    "DSL_ONLY",
    "EVERYONE",
    "OVERSIGHT",
    "UK",
    "NavItem",
    "actor",
    "csv_cell",
    "csv_response",
    "csv_text",
    "due_badge",
    "error_page",
    "highlight",
    "install_filters",
    "nav_for",
    "not_your_school",
    "render",
    "school_of",
    "uk_day_bounds",
    "visible",
    "web_context",
    "web_link",
]

UK = ZoneInfo("Europe/London")

# Who may use what. The routes and the nav both read these, so a link is shown exactly when
# its page would open.
EVERYONE: tuple[Role, ...] = (Role.MODERATOR, Role.DSL, Role.ADMIN)
DSL_ONLY: tuple[Role, ...] = (Role.DSL,)
OVERSIGHT: tuple[Role, ...] = (Role.DSL, Role.ADMIN)
ADMIN_ONLY: tuple[Role, ...] = (Role.ADMIN,)


@dataclass(frozen=True, kw_only=True)
class NavItem:
    """One entry of the top nav."""

    key: str
    label: str
    href: str
    roles: tuple[Role, ...]


NAV: tuple[NavItem, ...] = (
    NavItem(key="queue", label="Queue", href="/queue", roles=EVERYONE),
    NavItem(key="escalations", label="Escalations", href="/escalations", roles=DSL_ONLY),
    NavItem(key="audit", label="Audit", href="/audit", roles=OVERSIGHT),
    NavItem(key="sources", label="Sources", href="/sources", roles=OVERSIGHT),
    NavItem(key="accounts", label="Accounts", href="/accounts", roles=OVERSIGHT),
    NavItem(key="report", label="Report", href="/report", roles=OVERSIGHT),
    NavItem(key="users", label="Users", href="/admin/users", roles=ADMIN_ONLY),
    NavItem(key="settings", label="Settings", href="/admin/settings", roles=ADMIN_ONLY),
)

# Characters that can hide or reorder text: C0/C1 controls (bar tab and newline), the
# bidirectional embeddings, overrides and isolates, and zero-width marks.
_INVISIBLE = (
    {c for c in range(0x20) if c not in (0x09, 0x0A)}
    | set(range(0x7F, 0xA0))
    | set(range(0x202A, 0x202F))
    | set(range(0x2066, 0x206A))
    | {0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x061C, 0xFEFF}
)
_VISIBLE_MAP = {c: f"[U+{c:04X}]" for c in _INVISIBLE}
_FORMULA_LEAD = ("=", "+", "-", "@", "\t", "\r")


def web_context(request: Request) -> WebContext:
    """The app's ``WebContext`` (settings, store, clock, templates)."""
    context: WebContext = request.app.state.vigil
    return context


def actor(viewer: Viewer) -> str:
    """How the audit log and action history name what a signed-in person did."""
    return viewer.user.username


def nav_for(viewer: Viewer | None) -> list[NavItem]:
    """The nav entries the viewer's role may open."""
    if viewer is None:
        return []
    return [item for item in NAV if viewer.user.role in item.roles]


async def school_of(request: Request, viewer: Viewer) -> int | None:
    """The configured school's id, or None when the viewer has not been given that school."""
    school_id = await web_context(request).school_id()
    return school_id if school_id in viewer.user.school_ids else None


def render(
    request: Request,
    viewer: Viewer | None,
    template: str,
    *,
    section: str = "",
    status: int = 200,
    **values: Any,
) -> HTMLResponse:
    """Render ``template`` with the nav, the viewer and the app's clock."""
    context = web_context(request)
    html = context.templates.get_template(template).render(
        viewer=viewer,
        section=section,
        now=context.clock(),
        **values,
    )
    return HTMLResponse(html, status_code=status)


def error_page(
    request: Request,
    viewer: Viewer | None,
    status: int,
    title: str,
    message: str,
    *,
    back: str = "",
) -> HTMLResponse:
    """A plain error page inside the app's frame."""
    return render(
        request, viewer, "error.html", status=status, title=title, message=message, back=back
    )


def not_your_school(request: Request, viewer: Viewer) -> HTMLResponse:
    """The answer when the signed-in user has not been given the school (``school_of`` None)."""
    return error_page(
        request,
        viewer,
        403,
        "Not allowed",
        "Your account has not been given this school. Ask your Vigil administrator.",
    )


# --- template filters ----------------------------------------------------------------------


def install_filters(env: Environment) -> None:
    """Register the filters and globals the review templates use."""
    env.filters["uk"] = uk
    env.filters["uk_date"] = uk_date
    env.filters["severity"] = severity_label
    env.filters["visible"] = visible
    env.filters["label"] = label
    env.filters["outcome"] = outcome_label
    env.globals["due_badge"] = due_badge
    env.globals["nav_for"] = nav_for
    env.globals["minutes"] = minutes


def uk(value: datetime | None) -> str:
    """A UTC time as UK wall-clock time: ``Mon 2 Nov 2026, 09:00``."""
    if value is None:
        return "—"
    local = value.astimezone(UK)
    return f"{local:%a} {local.day} {local:%b %Y, %H:%M}"


def uk_date(value: date | datetime | None) -> str:
    """A date (or a UTC time's UK date) as ``2 Nov 2026``."""
    if value is None:
        return "—"
    day = value.astimezone(UK).date() if isinstance(value, datetime) else value
    return f"{day.day} {day:%b %Y}"


def severity_label(value: int) -> str:
    """``3`` → ``high``; an unknown number is shown as itself."""
    try:
        return Severity(value).label
    except ValueError:
        return str(value)


def label(value: str) -> str:
    """``personal_info`` → ``personal info``."""
    return str(value).replace("_", " ")


OUTCOME_LABELS: Mapping[str, str] = {
    "ceop": "CEOP report",
    "police": "Police",
    "lado": "LADO",
    "parents": "Parents contacted",
    "nfa": "No further action",
}


def outcome_label(value: str) -> str:
    """An escalation outcome as the DSL says it (``nfa`` → ``No further action``)."""
    return OUTCOME_LABELS.get(value, label(value))


def visible(value: object) -> str:
    """``value`` with control, bidi-override and zero-width characters shown as ``[U+XXXX]``."""
    return str(value).translate(_VISIBLE_MAP)


def minutes(value: float | None) -> str:
    """A duration in minutes, readably: ``45 min``, ``3 h 5 min``, ``2 d 4 h``."""
    if value is None:
        return "—"
    total = round(value)
    if total < 60:
        return f"{total} min"
    if total < 24 * 60:
        return f"{total // 60} h {total % 60} min"
    return f"{total // (24 * 60)} d {total % (24 * 60) // 60} h"


def due_badge(due_at: datetime | None, now: datetime, status: str = "open") -> tuple[str, str]:
    """``(css class, text)`` for the response-due badge; empty for closed cases.

    Hours are rounded down, so a badge never promises more time than is left.
    """
    if due_at is None or status != "open":
        return ("", "")
    left = due_at - now
    if left <= timedelta(0):
        return ("overdue", "overdue")
    minutes = int(left.total_seconds() // 60)
    text = f"due in {minutes} min" if minutes < 60 else f"due in {minutes // 60} h"
    return ("soon" if left <= timedelta(hours=3) else "later", text)


# --- post text -----------------------------------------------------------------------------


def highlight(text: str, spans: Iterable[Sequence[int]]) -> list[tuple[str, bool]]:
    """``text`` cut into ``(segment, matched)`` pieces at the reasons' spans.

    Spans are clamped to the text and overlapping ones merged; a malformed span is ignored.
    """
    merged: list[list[int]] = []
    for start, end in sorted(_clamped(spans, len(text))):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    pieces: list[tuple[str, bool]] = []
    at = 0
    for start, end in merged:
        if start > at:
            pieces.append((text[at:start], False))
        pieces.append((text[start:end], True))
        at = end
    if at < len(text) or not pieces:
        pieces.append((text[at:], False))
    return pieces


def _clamped(spans: Iterable[Sequence[int]], size: int) -> Iterable[tuple[int, int]]:
    for span in spans:
        if len(span) != 2:
            continue
        start, end = max(0, int(span[0])), min(size, int(span[1]))
        if start < end:
            yield start, end


def web_link(url: str | None) -> str | None:
    """``url`` if it may be a link (absolute http or https, nothing odd in it), else None."""
    if not url or len(url) > 2000 or any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return url


# --- dates and CSV -------------------------------------------------------------------------


def uk_day_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """UTC instants of the start of UK day ``start`` and the end of UK day ``end``."""
    since = datetime.combine(start, time(0), tzinfo=UK)
    until = datetime.combine(end + timedelta(days=1), time(0), tzinfo=UK)
    return since.astimezone(UTC), until.astimezone(UTC)


def csv_cell(value: object) -> str:
    """A cell a spreadsheet will not run as a formula (OWASP: prefix ``'``)."""
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(_FORMULA_LEAD) else text


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """CSV with every cell made formula-safe."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([csv_cell(h) for h in header])
    writer.writerows([csv_cell(v) for v in row] for row in rows)
    return out.getvalue()


def csv_response(text: str, filename: str) -> Response:
    """A CSV download (the filename is ours, never user input)."""
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )
