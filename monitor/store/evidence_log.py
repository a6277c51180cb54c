"""Read-only queries for the evidence log: a school's hash chain and a case's export bundle.

Each call reads in one transaction, so a bundle is one consistent snapshot (a deferred
transaction under WAL on SQLite, REPEATABLE READ on PostgreSQL). Nothing here writes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from actions.custody import (
    ActionInfo,
    AuditInfo,
    CaseBundle,
    ChainEntry,
    EscalationInfo,
    ItemInfo,
    TransitionInfo,
    VerdictInfo,
    VersionInfo,
)
from monitor.store import tables as t
from monitor.store.convert import aware, must
from monitor.store.db import make_sessionmaker
from monitor.store.facade import Store

__all__ = ["SchoolRef", "load_case", "load_chain", "load_schools"]


@dataclass(frozen=True, kw_only=True)
class SchoolRef:
    """A school's id, slug and name."""

    id: int
    slug: str
    name: str


@asynccontextmanager
async def _reading(store: Store) -> AsyncIterator[AsyncSession]:
    async with make_sessionmaker(store.engine)() as session, session.begin():
        if not store.sqlite:
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        yield session


async def load_schools(store: Store) -> list[SchoolRef]:
    """Every school, by id."""
    async with _reading(store) as s:
        rows = await s.scalars(select(t.School).order_by(t.School.id))
        return [SchoolRef(id=r.id, slug=r.slug, name=r.name) for r in rows]


async def load_chain(store: Store, school_id: int) -> list[ChainEntry]:
    """Every evidence entry of one school, in ``seq`` order."""
    async with _reading(store) as s:
        return await _chain(s, school_id)


async def _chain(s: AsyncSession, school_id: int, item_id: int | None = None) -> list[ChainEntry]:
    query = select(t.Evidence).where(t.Evidence.school_id == school_id)
    if item_id is not None:
        query = query.where(t.Evidence.item_id == item_id)
    rows = await s.scalars(query.order_by(t.Evidence.seq, t.Evidence.id))
    return [_entry(r) for r in rows]


def _entry(row: t.Evidence) -> ChainEntry:
    return ChainEntry(
        school_id=row.school_id,
        seq=row.seq,
        item_id=row.item_id,
        version=row.version,
        files_json=row.files,
        meta_json=row.meta,
        prev_hash=row.prev_hash,
        entry_hash=row.entry_hash,
        captured_at=must(row.captured_at),
        purged_at=aware(row.purged_at),
    )


async def load_case(store: Store, case_id: int) -> CaseBundle | None:
    """Everything about case ``case_id`` (None when there is no such case)."""
    async with _reading(store) as s:
        case = await s.get(t.Case, case_id)
        if case is None:
            return None
        school = await s.get(t.School, case.school_id)
        item = await s.get(t.Item, case.item_id)
        if school is None or item is None:  # foreign keys make this impossible
            return None
        actions = list(
            await s.scalars(
                select(t.Action).where(t.Action.case_id == case.id).order_by(t.Action.id)
            )
        )
        escalations = list(
            await s.scalars(
                select(t.Escalation)
                .where(t.Escalation.case_id == case.id)
                .order_by(t.Escalation.id)
            )
        )
        return await _bundle(s, school, case, item, actions, escalations)


async def _bundle(
    s: AsyncSession,
    school: t.School,
    case: t.Case,
    item: t.Item,
    actions: Sequence[t.Action],
    escalations: Sequence[t.Escalation],
) -> CaseBundle:
    audit = await _audit(s, case, [a.id for a in actions], [e.id for e in escalations])
    return CaseBundle(
        case_id=case.id,
        school_id=school.id,
        school_slug=school.slug,
        school_name=school.name,
        status=case.status,
        severity=case.severity,
        opened_at=must(case.opened_at),
        response_due_at=must(case.response_due_at),
        closed_at=aware(case.closed_at),
        item=_item(item),
        versions=tuple(await _versions(s, item.id)),
        verdicts=tuple(await _verdicts(s, item.id)),
        actions=tuple(_action(a) for a in actions),
        transitions=tuple(await _transitions(s, actions)),
        escalations=tuple(_escalation(e) for e in escalations),
        audit=tuple(audit),
        evidence=tuple(await _chain(s, school.id, item.id)),
        chain=tuple(await _chain(s, school.id)),
    )


def _item(row: t.Item) -> ItemInfo:
    return ItemInfo(
        id=row.id,
        platform=row.platform,
        external_id=row.external_id,
        source_kind=row.source_kind,
        account=row.account,
        author_id=row.author_id,
        author_handle=row.author_handle,
        author_name=row.author_name,
        permalink=row.permalink,
        posted_at=must(row.posted_at),
        first_seen_at=must(row.first_seen_at),
        gone_at=aware(row.gone_at),
        state=row.state,
        version=row.version,
    )


async def _versions(s: AsyncSession, item_id: int) -> list[VersionInfo]:
    rows = await s.scalars(
        select(t.ItemVersion)
        .where(t.ItemVersion.item_id == item_id)
        .order_by(t.ItemVersion.version)
    )
    return [
        VersionInfo(
            version=r.version,
            text=r.text,
            content_hash=r.content_hash,
            fetched_at=must(r.fetched_at),
            platform_updated_at=aware(r.platform_updated_at),
        )
        for r in rows
    ]


async def _verdicts(s: AsyncSession, item_id: int) -> list[VerdictInfo]:
    rows = await s.scalars(
        select(t.VerdictRow).where(t.VerdictRow.item_id == item_id).order_by(t.VerdictRow.version)
    )
    return [
        VerdictInfo(
            version=r.version,
            flags=tuple(_json_list(r.flags)),
            cells=tuple(_json_list(r.cells)),
            tags=tuple(_json_list(r.tags)),
            severity=r.severity,
            reasons=tuple(x for x in _json_list(r.reasons) if isinstance(x, dict)),
            classified_at=must(r.classified_at),
        )
        for r in rows
    ]


def _json_list(text: str) -> list[Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def _action(row: t.Action) -> ActionInfo:
    return ActionInfo(
        id=row.id,
        kind=row.kind,
        state=row.state,
        automatic=row.automatic,
        route=row.route,
        reason=row.reason,
        attempts=row.attempts,
        last_error=row.last_error,
        created_at=must(row.created_at),
        updated_at=must(row.updated_at),
    )


async def _transitions(s: AsyncSession, actions: Sequence[t.Action]) -> list[TransitionInfo]:
    kinds = {a.id: a.kind for a in actions}
    if not kinds:
        return []
    rows = await s.scalars(
        select(t.ActionTransition)
        .where(t.ActionTransition.action_id.in_(kinds))
        .order_by(t.ActionTransition.at, t.ActionTransition.id)
    )
    return [
        TransitionInfo(
            id=r.id,
            action_id=r.action_id,
            action_kind=kinds[r.action_id],
            from_state=r.from_state,
            to_state=r.to_state,
            actor=r.actor,
            reason=r.reason,
            at=must(r.at),
        )
        for r in rows
    ]


def _escalation(row: t.Escalation) -> EscalationInfo:
    return EscalationInfo(
        id=row.id,
        action_id=row.action_id,
        state=row.state,
        recipients=tuple(str(x) for x in _json_list(row.recipients)),
        routes=tuple(str(x) for x in _json_list(row.routes)),
        queued_at=must(row.queued_at),
        sent_at=aware(row.sent_at),
        acknowledged_at=aware(row.acknowledged_at),
        acknowledged_by=row.acknowledged_by,
    )


async def _audit(
    s: AsyncSession, case: t.Case, action_ids: Sequence[int], escalation_ids: Sequence[int]
) -> list[AuditInfo]:
    about = [
        and_(t.AuditEntry.subject_type == "case", t.AuditEntry.subject_id == case.id),
        and_(t.AuditEntry.subject_type == "item", t.AuditEntry.subject_id == case.item_id),
    ]
    if action_ids:
        about.append(
            and_(t.AuditEntry.subject_type == "action", t.AuditEntry.subject_id.in_(action_ids))
        )
    if escalation_ids:
        about.append(
            and_(
                t.AuditEntry.subject_type == "escalation",
                t.AuditEntry.subject_id.in_(escalation_ids),
            )
        )
    rows = await s.scalars(
        select(t.AuditEntry)
        .where(t.AuditEntry.school_id == case.school_id, or_(*about))
        .order_by(t.AuditEntry.at, t.AuditEntry.id)
    )
    return [
        AuditInfo(
            id=r.id,
            at=must(r.at),
            actor=r.actor,
            event=r.event,
            subject_type=r.subject_type,
            subject_id=r.subject_id,
            detail_json=r.detail,
        )
        for r in rows
    ]
