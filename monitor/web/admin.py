"""The administrator's pages: users (list, add, disable) and a read-only settings summary.

Passwords are hashed here (argon2id, in a worker thread) and handed to the store as hashes;
neither a password nor a hash is ever shown, logged or audited. The settings page shows what
Vigil is configured to do and never a secret: not the database URL (it may hold a password),
not the names of the environment variables or files that hold secrets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from monitor.config import Settings
from monitor.store import StoreError
from monitor.store.users import Role, add_user, disable_user, get_user, list_users
from monitor.web.auth import Viewer, hash_password, password_problem, requires
from monitor.web.pages import ADMIN_ONLY, actor, error_page, render, school_of, web_context

__all__ = ["admin_routes", "settings_summary"]

USER_DONE: Mapping[str, str] = {
    "added": "User added. Give them their password in person or by phone, never by email.",
    "disabled": "User disabled; their sessions have ended.",
}


def admin_routes() -> list[Route]:
    """The users and settings routes."""
    return [
        Route("/admin/users", users_page, methods=["GET"]),
        Route("/admin/users", user_add, methods=["POST"]),
        Route("/admin/users/{id:int}/disable", user_disable, methods=["POST"]),
        Route("/admin/settings", settings_page, methods=["GET"]),
    ]


@requires(*ADMIN_ONLY)
async def users_page(request: Request, viewer: Viewer) -> Response:
    """Every user, and the form to add one."""
    done = USER_DONE.get(request.query_params.get("done", ""), "")
    return await _users(request, viewer, done=done)


async def _users(
    request: Request,
    viewer: Viewer,
    *,
    done: str = "",
    error: str = "",
    form: Mapping[str, str] | None = None,
    status: int = 200,
) -> Response:
    users = await list_users(web_context(request).require_store())
    return render(
        request,
        viewer,
        "users.html",
        section="users",
        status=status,
        users=users,
        roles=[r.value for r in Role],
        done=done,
        error=error,
        form=dict(form or {}),
    )


@requires(*ADMIN_ONLY)
async def user_add(request: Request, viewer: Viewer) -> Response:
    """Add a user to this school."""
    form: Mapping[str, str] = request.state.form
    school_id = await school_of(request, viewer)
    if school_id is None:
        return error_page(request, viewer, 403, "Not allowed", "You are not given this school.")
    kept = {k: form.get(k, "") for k in ("username", "display_name", "email", "role")}
    problem = _password_form_problem(form)
    if problem is None and form.get("role", "") not in {r.value for r in Role}:
        problem = "Choose a role."
    if problem is not None:
        return await _users(request, viewer, error=problem, form=kept, status=400)
    context = web_context(request)
    password_hash = await asyncio.to_thread(hash_password, form["password"])
    try:
        await add_user(
            context.require_store(),
            username=form.get("username", ""),
            display_name=form.get("display_name", ""),
            email=form.get("email", ""),
            role=Role(form["role"]),
            password_hash=password_hash,
            school_ids=[school_id],
            actor=actor(viewer),
            now=context.clock(),
        )
    except (StoreError, ValueError) as err:
        return await _users(request, viewer, error=str(err), form=kept, status=400)
    return RedirectResponse("/admin/users?done=added", status_code=303)


def _password_form_problem(form: Mapping[str, str]) -> str | None:
    password = form.get("password", "")
    if password != form.get("password_again", ""):
        return "The two passwords differ."
    problem = password_problem(password)
    return None if problem is None else f"Password: {problem}."


@requires(*ADMIN_ONLY)
async def user_disable(request: Request, viewer: Viewer) -> Response:
    """Disable a user (not yourself: that would lock the last administrator out)."""
    context = web_context(request)
    user = await get_user(context.require_store(), int(request.path_params["id"]))
    if user is None:
        return error_page(
            request, viewer, 404, "User not found", "There is no such user.", back="/admin/users"
        )
    if user.id == viewer.user.id:
        return await _users(
            request, viewer, error="You cannot disable your own account.", status=400
        )
    await disable_user(
        context.require_store(), user.username, actor=actor(viewer), now=context.clock()
    )
    return RedirectResponse("/admin/users?done=disabled", status_code=303)


@requires(*ADMIN_ONLY)
async def settings_page(request: Request, viewer: Viewer) -> Response:
    """What Vigil is configured to do (never a secret)."""
    summary = settings_summary(web_context(request).settings)
    return render(request, viewer, "settings.html", section="settings", summary=summary)


Section = tuple[str, list[tuple[str, Any]]]


def settings_summary(settings: Settings) -> list[Section]:
    """``(section, [(setting, value)])`` for the settings page; no secret or where one lives."""
    return [
        _school(settings),
        _sources(settings),
        _policy(settings),
        _email(settings),
        _evidence(settings),
        (
            "Web",
            [
                ("Address", settings.web.base_url),
                ("Acknowledgement links", "on" if settings.web.secret is not None else "off"),
            ],
        ),
    ]


def _school(settings: Settings) -> Section:
    school = settings.school
    return (
        "School",
        [
            ("Name", school.name),
            ("Slug", school.slug),
            ("Aliases", ", ".join(school.aliases) or "—"),
            ("Staff on the roster", len(school.staff)),
        ],
    )


def _sources(settings: Settings) -> Section:
    rows: list[tuple[str, Any]] = [
        (
            s.name,
            f"{s.platform} ({s.kind}), every {int(s.interval)} s" + ("" if s.enabled else ", off"),
        )
        for s in settings.sources
    ]
    return ("Sources", rows or [("—", "no sources configured")])


def _policy(settings: Settings) -> Section:
    policy = settings.policy
    return (
        "Policy",
        [
            ("Hide abusive posts automatically from", policy.auto_hide_abusive_min_severity),
            (
                "Hide safeguarding posts automatically from",
                policy.auto_hide_safeguarding_min_severity,
            ),
            ("Hide spam automatically", "yes" if policy.auto_hide_spam else "no"),
            ("Escalate to the DSL from", policy.escalate_min_severity),
            ("Response due within", f"{policy.response_due_hours} h"),
        ],
    )


def _email(settings: Settings) -> Section:
    email = settings.email
    return (
        "Email",
        [
            ("Mail server", email.smtp_host or "none (mail is written to the outbox)"),
            ("DSL addresses", len(email.dsl)),
            ("Deputy DSL addresses", len(email.deputy_dsl)),
            ("Re-send unacknowledged escalations after", f"{email.resend_after_hours:g} h"),
            ("Post text in DSL emails", email.excerpt),
        ],
    )


def _evidence(settings: Settings) -> Section:
    # The database URL may hold a password: only its kind is shown.
    database = "PostgreSQL" if settings.database_url().startswith("postgresql") else "SQLite"
    return (
        "Evidence and data",
        [
            ("Evidence renderer", settings.evidence.renderer),
            ("Live capture of the permalink", "on" if settings.evidence.live_capture else "off"),
            ("Database", database),
            ("Keep unflagged posts for", f"{settings.retention.unflagged_days} days"),
            ("Keep closed cases for", f"{settings.retention.flagged_days} days"),
            ("Keep closed safeguarding cases for", f"{settings.retention.safeguarding_days} days"),
        ],
    )
