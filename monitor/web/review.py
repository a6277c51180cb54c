"""The review queue and the case page.

Every case route (here, in ``monitor.web.decisions`` and in ``monitor.web.evidence``) first
loads the case for the configured school and the viewer's role (``visible_case``): a case of
another school, and a safeguarding-restricted case for anyone but a DSL, is answered with the
same 404 as a case that does not exist, so its existence does not leak.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from actions.custody import CHILD_IMAGERY_TAG
from actions.policy import ActionKind
from classifiers.taxonomy import ALL_CELLS, Flag, Severity
from monitor.store import review
from monitor.web.auth import Viewer, can_see_case, requires
from monitor.web.pages import (
    EVERYONE,
    error_page,
    highlight,
    not_your_school,
    render,
    school_of,
    web_context,
    web_link,
)

__all__ = [
    "DONE",
    "MAX_NOTE_CHARS",
    "case_not_found",
    "image_type",
    "queue_routes",
    "show_case",
    "visible_case",
]

MAX_PARAM = 100
MAX_NOTE_CHARS = 4000
STATUSES = ("open", "closed", "all")
# The post's own pictures, the evidence card and the live screenshot; never raw or metadata.
IMAGE_KINDS = frozenset({"card", "live", "media"})
IMAGE_TYPES: Mapping[str, str] = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
}
# What the case page says after a decision (``?done=<key>``): fixed texts, nothing reflected.
DONE: Mapping[str, str] = {
    "approved": "Action approved. Vigil will carry it out shortly.",
    "rejected": "Action rejected.",
    "changed": "Action changed.",
    "hidden": "Hide approved. Evidence is captured before the post is hidden.",
    "undone": "Unhide approved: the post will be shown again.",
    "false_positive": (
        "Marked as a false positive and closed. The same text will not be flagged again."
    ),
    "note": "Note added.",
    "assigned": "The case is assigned to you.",
    "unassigned": "The case is no longer assigned.",
    "escalated": "Escalated to the DSL.",
    "closed": "Case closed.",
    "acknowledged": "Escalation acknowledged.",
    "outcome": "Escalation outcome recorded.",
    "held": "The case is on legal hold: it will not be purged until the hold is released.",
    "released": "Legal hold released: the case's retention period applies again.",
}


def queue_routes() -> list[Route]:
    """The read-only routes: home, queue, case page (evidence: ``monitor.web.evidence``)."""
    return [
        Route("/", home, methods=["GET"]),
        Route("/queue", queue_page, methods=["GET"]),
        Route("/cases/{id:int}", case_page, methods=["GET"]),
    ]


# --- the queue -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Tab:
    """One queue tab: what it shows and the query that opens it."""

    key: str
    label: str
    query: str


TABS: tuple[Tab, ...] = (
    Tab(key="open", label="Open", query="status=open"),
    Tab(key="mine", label="Assigned to me", query="status=open&assignee=me"),
    Tab(key="unassigned", label="Unassigned", query="status=open&assignee=unassigned"),
    Tab(key="restricted", label="Restricted", query="status=open&view=restricted"),
    Tab(key="closed", label="Closed", query="status=closed"),
)


@dataclass(frozen=True, kw_only=True)
class QueueChoice:
    """The queue filters read from the query string (anything unknown is ignored)."""

    flag: str = ""
    cell: str = ""
    severity: str = ""
    platform: str = ""
    status: str = "open"
    assignee: str = ""
    only_restricted: bool = False

    @property
    def tab(self) -> str:
        """The tab these filters correspond to (``""`` if none does)."""
        if self.only_restricted:
            return "restricted"
        if self.status == "closed" and not self.assignee:
            return "closed"
        if self.status == "open":
            return {"": "open", "me": "mine", "unassigned": "unassigned"}[self.assignee]
        return ""

    def filter(self, *, dsl: bool) -> review.QueueFilter:
        """The store's filter; only a DSL's includes restricted cases."""
        return review.QueueFilter(
            flag=self.flag or None,
            cell=self.cell or None,
            severity=Severity.parse(self.severity).value if self.severity else None,
            platform=self.platform or None,
            status=self.status,
            assignee=self.assignee or None,
            restricted=dsl,
            restricted_only=dsl and self.only_restricted,
        )


def queue_choice(params: Mapping[str, str], *, dsl: bool) -> QueueChoice:
    """Validate the query string against the taxonomy; drop what does not fit."""

    def pick(name: str, allowed: tuple[str, ...]) -> str:
        value = params.get(name, "")[:MAX_PARAM]
        return value if value in allowed else ""

    return QueueChoice(
        flag=pick("flag", tuple(f.value for f in Flag)),
        cell=pick("cell", tuple(str(c) for c in ALL_CELLS)),
        severity=pick("severity", tuple(s.label for s in Severity if s > Severity.NONE)),
        platform=params.get("platform", "")[:MAX_PARAM].strip(),
        status=pick("status", STATUSES) or "open",
        assignee=pick("assignee", ("me", "unassigned")),
        only_restricted=dsl and params.get("view") == "restricted",
    )


@requires(*EVERYONE)
async def home(request: Request, viewer: Viewer) -> Response:
    """The queue is the home page."""
    return RedirectResponse("/queue", status_code=303)


@requires(*EVERYONE)
async def queue_page(request: Request, viewer: Viewer) -> Response:
    """The queue: severity first, then the soonest response-due; tabs with counts."""
    school_id = await school_of(request, viewer)
    if school_id is None:
        return not_your_school(request, viewer)
    store = web_context(request).require_store()
    dsl = can_see_case(viewer, True)
    choice = queue_choice(request.query_params, dsl=dsl)
    rows = await review.queue(store, school_id, choice.filter(dsl=dsl), user_id=viewer.user.id)
    # The store already leaves restricted cases out for non-DSLs; this makes sure of it.
    rows = [r for r in rows if can_see_case(viewer, r.restricted)]
    counts = await review.queue_counts(store, school_id, user_id=viewer.user.id, restricted=dsl)
    return render(
        request,
        viewer,
        "queue.html",
        section="queue",
        rows=rows,
        counts=counts,
        tabs=[tab for tab in TABS if dsl or tab.key != "restricted"],
        choice=choice,
        flags=[f.value for f in Flag],
        cells=[str(c) for c in ALL_CELLS],
        severities=[s.label for s in Severity if s > Severity.NONE],
        platforms=_platforms(request),
    )


def _platforms(request: Request) -> list[str]:
    return sorted({s.platform for s in web_context(request).settings.sources})


# --- the case page -------------------------------------------------------------------------


async def visible_case(request: Request, viewer: Viewer) -> review.CaseView | None:
    """The case in the path if it is this school's and the viewer may see it, else None."""
    school_id = await school_of(request, viewer)
    if school_id is None:
        return None
    store = web_context(request).require_store()
    case = await review.case_view(store, int(request.path_params["id"]), school_id)
    if case is None or not can_see_case(viewer, case.restricted):
        return None
    return case


def case_not_found(request: Request, viewer: Viewer) -> Response:
    """The one answer for a missing, another school's or a restricted case."""
    return error_page(
        request,
        viewer,
        404,
        "Case not found",
        "There is no case with that number that you can open.",
        back="/queue",
    )


@requires(*EVERYONE)
async def case_page(request: Request, viewer: Viewer) -> Response:
    """One case: the post with its matches, reasons, thread, evidence, actions, history."""
    case = await visible_case(request, viewer)
    if case is None:
        return case_not_found(request, viewer)
    done = DONE.get(request.query_params.get("done", ""), "")
    return show_case(request, viewer, case, done=done)


def show_case(
    request: Request,
    viewer: Viewer,
    case: review.CaseView,
    *,
    done: str = "",
    error: str = "",
    status: int = 200,
) -> Response:
    """Render the case page (also after a refused decision, with ``error``)."""
    return render(
        request,
        viewer,
        "case.html",
        section="queue",
        status=status,
        case=case,
        segments=highlight(_classified_text(case), [r.span for r in case.reasons]),
        stale=case.verdict_version not in (None, case.version),
        max_note=MAX_NOTE_CHARS,
        link=web_link(case.permalink),
        images=_images(case),
        child_imagery=CHILD_IMAGERY_TAG in case.tags,
        dsl=can_see_case(viewer, True),
        kinds=[k.value for k in ActionKind if k not in (ActionKind.REVIEW, ActionKind.UNHIDE)],
        outcomes=review.CASE_OUTCOMES,
        escalation_outcomes=review.ESCALATION_OUTCOMES,
        done=done,
        error=error,
        can_hide=not any(a.kind == ActionKind.HIDE for a in case.actions),
    )


def _classified_text(case: review.CaseView) -> str:
    """The text the reasons' spans index: the version the latest verdict is of."""
    for version in case.versions:
        if version.version == case.verdict_version:
            return version.text
    return case.text


@dataclass(frozen=True, kw_only=True)
class Image:
    """An evidence image the case page may show (blurred until the reviewer chooses)."""

    url: str
    kind: str
    version: int
    captured_at: datetime


def _images(case: review.CaseView) -> list[Image]:
    if CHILD_IMAGERY_TAG in case.tags:
        return []
    return [
        Image(
            url=f"/cases/{case.case_id}/evidence/{ev.evidence_id}/{n}",
            kind=str(f.get("kind", "")),
            version=ev.version,
            captured_at=ev.captured_at,
        )
        for ev in case.evidence
        for n, f in enumerate(ev.files)
        if image_type(f) is not None
    ]


def image_type(file: Mapping[str, Any]) -> str | None:
    """The image media type of an evidence file the app may serve, else None."""
    relpath = str(file.get("relpath", ""))
    if file.get("kind") not in IMAGE_KINDS or "." not in relpath:
        return None
    return IMAGE_TYPES.get(relpath.rsplit(".", 1)[1].lower())
