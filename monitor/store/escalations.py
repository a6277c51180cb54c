"""Escalation follow-up: acknowledgement, re-sending to deputies, and the daily digest's reads.

Escalation states (DESIGN.md): ``queued → sent → acknowledged``. An escalation nobody has
acknowledged ``resend_after_hours`` after it was sent is re-sent once to the deputy DSLs
(``resent_at`` records it). Nothing here returns post text: these records feed the
acknowledgement page and the digest, which must never show it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import case as sql_case
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from actions.states import ActionState
from connectors.base import require_utc
from monitor.store import tables as t
from monitor.store.audit import POLICY_ACTOR, add_audit
from monitor.store.convert import aware, loads, must
from monitor.store.facade import Store
from monitor.store.rows import StoreError

__all__ = [
    "ACK_EVENT",
    "DIGEST_EVENT",
    "MAX_NAME_CHARS",
    "AckResult",
    "EscalationState",
    "EscalationSummary",
    "OpenCase",
    "acknowledge",
    "due_for_resend",
    "escalation_summary",
    "last_digest_date",
    "list_escalations",
    "mark_resent",
    "open_cases_for_digest",
    "record_digest_sent",
]

ACK_EVENT = "escalation_acknowledged"
RESENT_EVENT = "escalation_resent"
DIGEST_EVENT = "digest_sent"
MAX_NAME_CHARS = 200  # escalations.acknowledged_by and audit_log.actor are String(200)


class EscalationState(StrEnum):
    """Where an escalation is: queued → sent → acknowledged."""

    QUEUED = "queued"
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"


@dataclass(frozen=True, kw_only=True)
class EscalationSummary:
    """One escalation as the acknowledgement page and the re-send see it (never post text)."""

    id: int
    school_id: int
    case_id: int
    action_id: int
    item_id: int
    platform: str
    flags: tuple[str, ...]
    severity: int
    state: str
    recipients: tuple[str, ...]
    message_id: str
    sent_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resent_at: datetime | None
    response_due_at: datetime
    outcome: str | None = None  # what the DSL did about it (the review app records it)
    outcome_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class AckResult:
    """The outcome of an acknowledgement: ``newly`` is False when someone got there first."""

    escalation_id: int
    newly: bool
    acknowledged_at: datetime
    acknowledged_by: str


@dataclass(frozen=True, kw_only=True)
class OpenCase:
    """One open case for the moderators' digest (never post text)."""

    case_id: int
    item_id: int
    platform: str
    source_kind: str
    flags: tuple[str, ...]
    severity: int
    opened_at: datetime
    response_due_at: datetime
    escalation_state: str | None
    awaiting_decision: int  # proposed actions waiting for a moderator


# -- acknowledgement --------------------------------------------------------------------------


async def acknowledge(
    store: Store, escalation_id: int, by: str, now: datetime, *, via: str = "app"
) -> AckResult:
    """Mark an escalation acknowledged by ``by``; a second call returns the first result.

    ``via`` ("link", "cli", "app") goes in the audit entry. A queued escalation (its email
    not yet out, e.g. the mail server is down and the DSL heard by phone) can be acknowledged
    too; the executor then does not send it. Raises StoreError for an unknown id.
    """
    name = _clean_name(by)
    now = require_utc(now, "now")
    async with store.transaction() as s:
        row = await s.get(t.Escalation, escalation_id, with_for_update=True)
        if row is None:
            raise StoreError(f"no escalation with id {escalation_id}")
        if row.state == EscalationState.ACKNOWLEDGED:
            return AckResult(
                escalation_id=row.id,
                newly=False,
                acknowledged_at=must(row.acknowledged_at),
                acknowledged_by=row.acknowledged_by or "",
            )
        detail = {"case_id": row.case_id, "via": via, "from_state": row.state}
        row.state = EscalationState.ACKNOWLEDGED.value
        row.acknowledged_at, row.acknowledged_by = now, name
        add_audit(s, row.school_id, now, name, ACK_EVENT, "escalation", row.id, detail)
        return AckResult(
            escalation_id=row.id, newly=True, acknowledged_at=now, acknowledged_by=name
        )


def _clean_name(by: str) -> str:
    name = " ".join(by.split())
    if not name:
        raise ValueError("say who is acknowledging (a name)")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise ValueError("the name contains control characters")
    return name[:MAX_NAME_CHARS]


async def escalation_summary(store: Store, escalation_id: int) -> EscalationSummary | None:
    """One escalation with its case's platform, flags and severity; None if there is none."""
    async with _reading(store) as s:
        row = (await s.execute(_summary_query().where(t.Escalation.id == escalation_id))).first()
        if row is None:
            return None
        flags = await _latest_flags(s, [row.item_id])
        return _summary(row, flags.get(row.item_id, ()))


async def list_escalations(
    store: Store, school_id: int, *, limit: int = 200
) -> list[EscalationSummary]:
    """The school's escalations for the DSLs' page: unacknowledged first, then newest first."""
    waiting_last = sql_case((t.Escalation.state == EscalationState.ACKNOWLEDGED.value, 1), else_=0)
    query = (
        _summary_query()
        .where(t.Escalation.school_id == school_id)
        .order_by(waiting_last, t.Escalation.queued_at.desc(), t.Escalation.id.desc())
        .limit(limit)
    )
    async with _reading(store) as s:
        rows = (await s.execute(query)).all()
        flags = await _latest_flags(s, [row.item_id for row in rows])
    return [_summary(row, flags.get(row.item_id, ())) for row in rows]


# -- re-sending to the deputies -----------------------------------------------------------------


async def due_for_resend(
    store: Store, school_id: int, older_than: datetime
) -> list[EscalationSummary]:
    """Escalations sent before ``older_than``, not acknowledged and not yet re-sent."""
    query = _summary_query().where(
        t.Escalation.school_id == school_id,
        t.Escalation.state == EscalationState.SENT.value,
        t.Escalation.sent_at < require_utc(older_than, "older_than"),
        t.Escalation.resent_at.is_(None),
    )
    async with _reading(store) as s:
        rows = (await s.execute(query.order_by(t.Escalation.id))).all()
        flags = await _latest_flags(s, [r.item_id for r in rows])
        return [_summary(r, flags.get(r.item_id, ())) for r in rows]


async def mark_resent(store: Store, escalation_id: int, now: datetime) -> bool:
    """Record the re-send to the deputies; False if it was acknowledged or re-sent meanwhile."""
    now = require_utc(now, "now")
    async with store.transaction() as s:
        row = await s.get(t.Escalation, escalation_id, with_for_update=True)
        if row is None:
            raise StoreError(f"no escalation with id {escalation_id}")
        if row.state != EscalationState.SENT or row.resent_at is not None:
            return False
        row.resent_at = now
        detail = {"case_id": row.case_id}
        add_audit(s, row.school_id, now, POLICY_ACTOR, RESENT_EVENT, "escalation", row.id, detail)
        return True


# -- the daily digest ---------------------------------------------------------------------------


async def open_cases_for_digest(store: Store, school_id: int) -> list[OpenCase]:
    """The school's open cases, soonest response-due first (overdue ones lead)."""
    query = (
        select(t.Case, t.Item.platform, t.Item.source_kind, t.Escalation.state)
        .join(t.Item, t.Item.id == t.Case.item_id)
        .outerjoin(t.Escalation, t.Escalation.case_id == t.Case.id)
        .where(t.Case.school_id == school_id, t.Case.status == "open")
        .order_by(t.Case.response_due_at, t.Case.id)
    )
    async with _reading(store) as s:
        rows = (await s.execute(query)).all()
        flags = await _latest_flags(s, [r[0].item_id for r in rows])
        waiting = await _awaiting_decision(s, [r[0].id for r in rows])
    return _open_cases(rows, flags, waiting)


def _open_cases(
    rows: Iterable[Any], flags: dict[int, tuple[str, ...]], waiting: dict[int, int]
) -> list[OpenCase]:
    cases: dict[int, OpenCase] = {}
    for case, platform, source_kind, escalation_state in rows:
        if case.id in cases:  # two escalations on one case: keep the first
            continue
        cases[case.id] = OpenCase(
            case_id=case.id,
            item_id=case.item_id,
            platform=platform,
            source_kind=source_kind,
            flags=flags.get(case.item_id, ()),
            severity=case.severity,
            opened_at=must(case.opened_at),
            response_due_at=must(case.response_due_at),
            escalation_state=escalation_state,
            awaiting_decision=waiting.get(case.id, 0),
        )
    return list(cases.values())


async def last_digest_date(store: Store, school_id: int) -> date | None:
    """The UK date of the last digest sent for the school (from the audit log), if any."""
    query = (
        select(t.AuditEntry.detail)
        .where(t.AuditEntry.school_id == school_id, t.AuditEntry.event == DIGEST_EVENT)
        .order_by(t.AuditEntry.id.desc())
        .limit(1)
    )
    async with _reading(store) as s:
        detail = await s.scalar(query)
    if detail is None:
        return None
    return date.fromisoformat(str(json.loads(detail)["date"]))


async def record_digest_sent(
    store: Store, school_id: int, day: date, now: datetime, *, open_cases: int
) -> None:
    """Remember that the digest for the UK date ``day`` went out (an audit entry)."""
    detail = {"date": day.isoformat(), "open_cases": open_cases}
    async with store.transaction() as s:
        at = require_utc(now, "now")
        add_audit(s, school_id, at, POLICY_ACTOR, DIGEST_EVENT, "school", school_id, detail)


# -- helpers ----------------------------------------------------------------------------------


@asynccontextmanager
async def _reading(store: Store) -> AsyncIterator[AsyncSession]:
    """A read-only session: on SQLite it starts deferred, so it never waits for a writer."""
    async with AsyncSession(store.engine, expire_on_commit=False) as session:
        yield session


def _summary_query() -> Any:
    return (
        select(
            t.Escalation,
            t.Item.id.label("item_id"),
            t.Item.platform,
            t.Case.severity,
            t.Case.response_due_at,
        )
        .join(t.Case, t.Case.id == t.Escalation.case_id)
        .join(t.Item, t.Item.id == t.Case.item_id)
    )


def _summary(row: Any, flags: tuple[str, ...]) -> EscalationSummary:
    esc: t.Escalation = row[0]
    return EscalationSummary(
        id=esc.id,
        school_id=esc.school_id,
        case_id=esc.case_id,
        action_id=esc.action_id,
        item_id=row.item_id,
        platform=row.platform,
        flags=flags,
        severity=row.severity,
        state=esc.state,
        recipients=tuple(loads(esc.recipients) or ()),
        message_id=esc.message_id,
        sent_at=aware(esc.sent_at),
        acknowledged_at=aware(esc.acknowledged_at),
        acknowledged_by=esc.acknowledged_by,
        resent_at=aware(esc.resent_at),
        response_due_at=must(row.response_due_at),
        outcome=esc.outcome,
        outcome_at=aware(esc.outcome_at),
    )


async def _latest_flags(s: AsyncSession, item_ids: list[int]) -> dict[int, tuple[str, ...]]:
    """Each item's flags from its most recent verdict."""
    if not item_ids:
        return {}
    rows = await s.execute(
        select(t.VerdictRow.item_id, t.VerdictRow.flags)
        .where(t.VerdictRow.item_id.in_(set(item_ids)))
        .order_by(t.VerdictRow.item_id, t.VerdictRow.version)
    )
    return {item_id: tuple(json.loads(flags)) for item_id, flags in rows.all()}


async def _awaiting_decision(s: AsyncSession, case_ids: list[int]) -> dict[int, int]:
    if not case_ids:
        return {}
    rows = await s.execute(
        select(t.Action.case_id, func.count())
        .where(t.Action.case_id.in_(set(case_ids)), t.Action.state == ActionState.PROPOSED.value)
        .group_by(t.Action.case_id)
    )
    return {case_id: count for case_id, count in rows.all()}
