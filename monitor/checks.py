"""`vigil check` and `vigil sources`: validate beyond types, test credentials, show health."""

from __future__ import annotations

from actions.responses import (
    ResponseContext,
    render_parent_letter,
    render_parent_letter_html,
    render_parent_letter_subject,
)
from monitor.app import build_classifier_for, build_connector, dsl_recipients, utcnow
from monitor.config import ConfigError, Settings
from monitor.registry import RegistryError, connector_class
from monitor.store import Store, review

__all__ = [
    "decide",
    "requeue_held",
    "resume_source",
    "run_checks",
    "source_health",
    "static_problems",
    "undo",
]


def static_problems(settings: Settings) -> list[str]:
    """Problems a valid TOML file can still have: unknown platforms, bad options, no DSL."""
    where = settings.path
    problems = _classifier_problems(settings)
    if not dsl_recipients(settings):
        problems.append(
            f"{where}: email.dsl: no DSL address: set email.dsl or give a dsl staff member an email"
        )
    for source in settings.sources:
        try:
            connector_class(source.platform)
        except RegistryError as err:
            problems.append(f"{where}: sources.{source.name}.platform: {err}")
            continue
        try:
            build_connector(source)
        except ValueError as err:
            problems.append(f"{where}: sources.{source.name}.{err}")
    return problems


def _classifier_problems(settings: Settings) -> list[str]:
    """A configured detector that cannot run (a broken lexicon, say) is a problem."""
    try:
        build_classifier_for(settings)
    except ConfigError as err:
        return list(err.problems)
    return []


async def run_checks(settings: Settings, *, offline: bool = False) -> tuple[list[str], list[str]]:
    """Every problem (file: key: message) and a note per source that answered."""
    problems = static_problems(settings)
    notes: list[str] = []
    if offline or problems:
        return problems, notes
    for source in settings.sources:
        connector = build_connector(source)
        try:
            await connector.check()
            notes.append(f"{settings.path}: sources.{source.name}: credentials OK")
        except Exception as err:  # report every source, whatever went wrong
            problems.append(
                f"{settings.path}: sources.{source.name}: check failed: {type(err).__name__}: {err}"
            )
        finally:
            await connector.aclose()
    return problems, notes


async def source_health(settings: Settings) -> list[str]:
    """One line per stored source: last poll, last success, failures, pause; never content."""
    store = Store.open(settings.database_url())
    try:
        states = await store.list_sources()
    finally:
        await store.close()
    lines = []
    for s in states:
        when = s.last_success_at.isoformat(timespec="seconds") if s.last_success_at else "never"
        pause = f" paused={s.pause_reason}" if s.pause_reason else ""
        error = f" last_error={s.last_error!r}" if s.last_error else ""
        lines.append(
            f"{s.name} ({s.platform}/{s.kind}) last_success={when} "
            f"failures={s.consecutive_failures} items={s.items_seen}{pause}{error}"
        )
    return lines


async def resume_source(settings: Settings, name: str) -> bool:
    """Lift the pause on source ``name``; False if it is unknown."""
    store = Store.open(settings.database_url())
    try:
        for state in await store.list_sources():
            if state.name == name:
                await store.resume_source(state.id, "cli", utcnow())
                return True
        return False
    finally:
        await store.close()


async def requeue_held(settings: Settings) -> int:
    """Send every held item back to the stage it failed at."""
    store = Store.open(settings.database_url())
    try:
        return await store.requeue_held(actor="cli", now=utcnow())
    finally:
        await store.close()


async def decide(settings: Settings, action_id: int, *, approve: bool, by: str, reason: str) -> str:
    """A moderator approves or rejects a proposed action; returns its new state."""
    store = Store.open(settings.database_url())
    try:
        record = await review.decide(
            store, action_id, approve=approve, actor=by, reason=reason, now=utcnow()
        )
        return record.state
    finally:
        await store.close()


async def undo(settings: Settings, action_id: int, *, by: str, reason: str) -> int:
    """Undo a done hide by adding an approved unhide for the same item; returns its id."""
    store = Store.open(settings.database_url())
    try:
        added = await review.undo_hide(store, action_id, actor=by, reason=reason, now=utcnow())
        return added.id
    finally:
        await store.close()


async def parent_letter(
    settings: Settings,
    case_id: int,
    *,
    parent: str,
    sender: str,
    role: str,
    complaints: str | None,
    html: bool,
) -> str:
    """The letter asking a parent to take a post down, filled from the case (never its text)."""
    store = Store.open(settings.database_url())
    try:
        item = await store.item(await store.case_item_id(case_id))
        verdict = await store.verdict_of(item)
    finally:
        await store.close()
    context = ResponseContext(
        school=settings.school.name,
        platform=item.platform,
        posted_at=item.posted_at,
        today=utcnow().date(),
        contacts=settings.school.published_contacts,
        flags=tuple(verdict["flags"]),
        parent_name=parent,
        sender_name=sender,
        sender_role=role,
        complaints_procedure=complaints,
    )
    templates = settings.policy.templates_dir
    if html:
        return render_parent_letter_html(context, templates_dir=templates)
    subject = render_parent_letter_subject(context, templates_dir=templates)
    return f"Subject: {subject}\n\n{render_parent_letter(context, templates_dir=templates)}"
