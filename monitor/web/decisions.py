"""What a reviewer does to a case: each is a small POST form on the case page.

Every route goes through ``requires`` (signed in, the session's CSRF token, not cross-site) and
then ``visible_case`` (this school's case, and restricted cases for DSLs only), and an action
in the path must belong to that case. The work itself is one call into ``monitor.store.review``
(or the Store), the same functions the CLI uses; on success the browser is sent back to the case
page (POST/redirect/GET), and a refusal from the store re-renders the case with the reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from actions.policy import ActionKind
from actions.states import InvalidTransition
from monitor.store import ActionRecord, Store, StoreError, legal_hold, review
from monitor.store.legal_hold import MAX_HOLD_REASON
from monitor.store.users import Role
from monitor.web.auth import Viewer, requires
from monitor.web.pages import DSL_ONLY, EVERYONE, actor, web_context
from monitor.web.review import MAX_NOTE_CHARS, case_not_found, show_case, visible_case

__all__ = ["decision_routes"]

MAX_REASON_CHARS = 500
PURGED = "Not done: this case was purged when its retention period ended."


class BadInput(ValueError):
    """The form is missing something or holds a value the app does not offer."""


class NoSuchAction(LookupError):
    """The action in the path is not one of this case's."""


Decision = Callable[[Request, Viewer, review.CaseView, Mapping[str, str]], Awaitable[str]]


def decision(
    run: Decision, roles: tuple[Role, ...] = EVERYONE
) -> Callable[[Request], Awaitable[Response]]:
    """A case POST route around ``run``, which returns the ``DONE`` key to show afterwards."""

    @requires(*roles)
    async def endpoint(request: Request, viewer: Viewer) -> Response:
        case = await visible_case(request, viewer)
        if case is None:
            return case_not_found(request, viewer)
        if case.purged_at is not None:  # nothing is left to act on, and no post to act against
            return show_case(request, viewer, case, error=PURGED, status=409)
        try:
            done = await run(request, viewer, case, request.state.form)
        except NoSuchAction:
            return case_not_found(request, viewer)
        except BadInput as err:
            return show_case(request, viewer, case, error=str(err), status=400)
        except (StoreError, InvalidTransition, ValueError) as err:  # refused for its state
            fresh = await visible_case(request, viewer) or case
            return show_case(request, viewer, fresh, error=f"Not done: {err}", status=409)
        return RedirectResponse(f"/cases/{case.case_id}?done={done}", status_code=303)

    endpoint.__name__ = endpoint.__qualname__ = run.__name__
    return endpoint


def decision_routes() -> list[Route]:
    """Every case decision route (all POST)."""
    action = "/cases/{id:int}/actions/{action_id:int}"
    return [
        Route(f"{action}/approve", decision(approve), methods=["POST"]),
        Route(f"{action}/reject", decision(reject), methods=["POST"]),
        Route(f"{action}/change", decision(change), methods=["POST"]),
        Route(f"{action}/undo", decision(undo), methods=["POST"]),
        Route("/cases/{id:int}/hide", decision(hide), methods=["POST"]),
        Route("/cases/{id:int}/false-positive", decision(false_positive), methods=["POST"]),
        Route("/cases/{id:int}/notes", decision(add_note), methods=["POST"]),
        Route("/cases/{id:int}/assign", decision(assign), methods=["POST"]),
        Route("/cases/{id:int}/escalate", decision(escalate), methods=["POST"]),
        Route("/cases/{id:int}/close", decision(close), methods=["POST"]),
        Route("/cases/{id:int}/hold", decision(hold, DSL_ONLY), methods=["POST"]),
        Route("/cases/{id:int}/release", decision(release, DSL_ONLY), methods=["POST"]),
    ]


# --- the decisions -------------------------------------------------------------------------


async def approve(
    request: Request, viewer: Viewer, case: review.CaseView, form: Mapping[str, str]
) -> str:
    """Approve a proposed action."""
    await _decide(request, viewer, case, form, approve=True)
    return "approved"


async def reject(
    request: Request, viewer: Viewer, case: review.CaseView, form: Mapping[str, str]
) -> str:
    """Reject a proposed (or approved, not yet started) action."""
    await _decide(request, viewer, case, form, approve=False)
    return "rejected"


async def _decide(
    request: Request,
    viewer: Viewer,
    case: review.CaseView,
    form: Mapping[str, str],
    *,
    approve: bool,
) -> None:
    default = "approved in the review app" if approve else "rejected in the review app"
    await review.decide(
        _store(request),
        _action(request, case).id,
        approve=approve,
        actor=actor(viewer),
        reason=_reason(form, default),
        now=_now(request),
    )


async def change(
    request: Request, viewer: Viewer, case: review.CaseView, form: Mapping[str, str]
) -> str:
    """Reject a proposed action and approve one of another kind instead."""
    action = _action(request, case)
    kind = form.get("kind", "")
    if kind not in {k.value for k in ActionKind} or kind == action.kind:
        raise BadInput("Choose another kind of action to change to.")
    await review.change_action(
        _store(request),
        action.id,
        kind,
        actor=actor(viewer),
        reason=_reason(form, f"changed from {action.kind} in the review app"),
        now=_now(request),
    )
    return "changed"


async def undo(
    request: Request, viewer: Viewer, case: review.CaseView, form: Mapping[str, str]
) -> str:
    """Undo a done hide (an approved unhide)."""
    action = _action(request, case)
    await review.undo_hide(
        _store(request),
        action.id,
        actor=actor(viewer),
        reason=_reason(form, "hide undone in the review app"),
        now=_now(request),
    )
    return "undone"


async def hide(
    request: Request, viewer: Viewer, case: review.CaseView, form: Mapping[str, str]
) -> str:
    """Hide the post: approve the proposed hide, or add an approved one."""
    await review.approve_kind(
        _store(request),
        case.case_id,
        ActionKind.HIDE,
        actor=actor(viewer),
        reason=_reason(form, "hidden from the review app"),
        now=_now(request),
    )
    return "hidden"


async def false_positive(
    request: Request, viewer: Viewer, case: review.CaseView, form: Mapping[str, str]
) -> str:
    """Not a problem: reject what was proposed, allow-list the text, close the case."""
    await review.mark_false_positive(
        _store(request), case.case_id, actor=actor(viewer), now=_now(request)
    )
    return "false_positive"


async def add_note(
    request: Request, viewer: Viewer, case: review.CaseView, form: Mapping[str, str]
) -> str:
    """Add a note to the case."""
    body = form.get("body", "").strip()
    if not body:
        raise BadInput("The note is empty.")
    if len(body) > MAX_NOTE_CHARS:
        raise BadInput(f"A note is at most {MAX_NOTE_CHARS} characters.")
    await review.add_note(
        _store(request), case.case_id, author=actor(viewer), body=body, now=_now(request)
    )
    return "note"


async def assign(
    request: Request, viewer: Viewer, case: review.CaseView, form: Mapping[str, str]
) -> str:
    """Assign the case to the viewer (``to=me``) or to nobody (``to=none``)."""
    to = form.get("to", "")
    if to not in ("me", "none"):
        raise BadInput("Say whom to assign the case to.")
    user_id = viewer.user.id if to == "me" else None
    await review.assign(
        _store(request), case.case_id, user_id, actor=actor(viewer), now=_now(request)
    )
    return "assigned" if user_id is not None else "unassigned"


async def escalate(
    request: Request, viewer: Viewer, case: review.CaseView, form: Mapping[str, str]
) -> str:
    """Escalate the case to the DSL (Vigil emails them)."""
    await review.escalate_to_dsl(
        _store(request),
        case.case_id,
        actor=actor(viewer),
        reason=_reason(form, "escalated from the review app"),
        now=_now(request),
    )
    return "escalated"


async def close(
    request: Request, viewer: Viewer, case: review.CaseView, form: Mapping[str, str]
) -> str:
    """Close the case with one of the outcomes."""
    outcome = form.get("outcome", "")
    if outcome not in review.CASE_OUTCOMES:
        raise BadInput("Choose how the case ended.")
    await review.close_case(
        _store(request), case.case_id, outcome, actor=actor(viewer), now=_now(request)
    )
    return "closed"


async def hold(
    request: Request, viewer: Viewer, case: review.CaseView, form: Mapping[str, str]
) -> str:
    """Put the case on legal hold (DSL only): never purged until released."""
    reason = " ".join(form.get("reason", "").split())
    if not reason or len(reason) > MAX_HOLD_REASON:
        raise BadInput(f"Say why the case must be kept (at most {MAX_HOLD_REASON} characters).")
    await legal_hold.place_hold(
        _store(request),
        case.case_id,
        reason=reason,
        actor=actor(viewer),
        now=_now(request),
        school_id=case.school_id,
    )
    return "held"


async def release(
    request: Request, viewer: Viewer, case: review.CaseView, form: Mapping[str, str]
) -> str:
    """Release the case's legal hold (DSL only): its retention period applies again."""
    await legal_hold.release_hold(
        _store(request),
        case.case_id,
        actor=actor(viewer),
        now=_now(request),
        school_id=case.school_id,
    )
    return "released"


# --- helpers -------------------------------------------------------------------------------


def _action(request: Request, case: review.CaseView) -> ActionRecord:
    """The action in the path, if it is one of this case's."""
    action_id = int(request.path_params["action_id"])
    for action in case.actions:
        if action.id == action_id:
            return action
    raise NoSuchAction(action_id)


def _reason(form: Mapping[str, str], default: str) -> str:
    reason = " ".join(form.get("reason", "").split())[:MAX_REASON_CHARS]
    return reason or default


def _store(request: Request) -> Store:
    return web_context(request).require_store()


def _now(request: Request) -> datetime:
    return web_context(request).clock()
