"""The review app's read-only reports: the audit log (filtered, CSV) and the governors' report.

CSV cells that a spreadsheet would run as a formula (starting ``=``, ``+``, ``-``, ``@``, tab
or carriage return) get a leading ``'``: actor names and audit details can hold text that
someone outside the school chose.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from actions.policy import UK, ActionKind
from actions.states import ActionState
from classifiers.taxonomy import Severity
from connectors.base import require_utc
from monitor.store import tables as t
from monitor.store.casefile import latest_verdict, reading
from monitor.store.convert import loads, must
from monitor.store.facade import Store

__all__ = [
    "FALSE_POSITIVE",
    "AuditRow",
    "GovernorsReport",
    "audit_csv",
    "audit_rows",
    "governors_report",
    "report_csv",
]

FALSE_POSITIVE = "false_positive"  # the case outcome of a post that should not have fired
AUDIT_COLUMNS = ("id", "at", "actor", "event", "subject_type", "subject_id", "detail")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, kw_only=True)
class AuditRow:
    """One audit log entry (never post text)."""

    id: int
    at: datetime
    actor: str
    event: str
    subject_type: str
    subject_id: int | None
    detail: dict[str, Any]


async def audit_rows(
    store: Store,
    school_id: int,
    *,
    actor: str | None = None,
    event: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1000,
) -> list[AuditRow]:
    """The school's audit entries, and installation-wide ones (users, retention), newest
    first; ``since`` is inclusive and ``until`` exclusive."""
    query = select(t.AuditEntry).where(
        or_(t.AuditEntry.school_id == school_id, t.AuditEntry.school_id.is_(None))
    )
    if actor:
        query = query.where(t.AuditEntry.actor == actor)
    if event:
        query = query.where(t.AuditEntry.event == event)
    if since is not None:
        query = query.where(t.AuditEntry.at >= require_utc(since, "since"))
    if until is not None:
        query = query.where(t.AuditEntry.at < require_utc(until, "until"))
    async with reading(store) as s:
        rows = await s.scalars(query.order_by(t.AuditEntry.id.desc()).limit(limit))
        return [_audit_row(r) for r in rows]


def _audit_row(row: t.AuditEntry) -> AuditRow:
    detail = loads(row.detail)
    return AuditRow(
        id=row.id,
        at=must(row.at),
        actor=row.actor,
        event=row.event,
        subject_type=row.subject_type,
        subject_id=row.subject_id,
        detail=detail if isinstance(detail, dict) else {},
    )


def audit_csv(rows: Iterable[AuditRow]) -> str:
    """The entries as CSV; times in UK local time with their offset."""
    lines: list[list[Any]] = [[*AUDIT_COLUMNS]]
    for r in rows:
        detail = json.dumps(r.detail, sort_keys=True, ensure_ascii=False, default=str)
        subject = "" if r.subject_id is None else r.subject_id
        lines.append([r.id, _uk(r.at), r.actor, r.event, r.subject_type, subject, detail])
    return _csv(lines)


def _uk(at: datetime) -> str:
    return at.astimezone(UK).isoformat(timespec="seconds")


def _csv(lines: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for line in lines:
        writer.writerow([_cell(value) for value in line])
    return out.getvalue()


def _cell(value: Any) -> str:
    """A CSV cell a spreadsheet shows as text, never runs as a formula (OWASP CSV injection)."""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


@dataclass(frozen=True, kw_only=True)
class GovernorsReport:
    """Case numbers for a period (UK dates, both inclusive), for the governing board."""

    start: date
    end: date
    cases: int
    by_cell: dict[str, int]
    by_severity: dict[str, int]
    median_ack_minutes: float | None  # escalation queued → acknowledged
    median_act_minutes: float | None  # case opened → its first action done (reviews aside)
    false_positives: int
    false_positive_rate: float


async def governors_report(store: Store, school_id: int, start: date, end: date) -> GovernorsReport:
    """Cases the school opened from ``start`` to ``end`` (UK dates, inclusive)."""
    if end < start:
        raise ValueError("the report period ends before it starts")
    since, until = _uk_midnight(start), _uk_midnight(end + timedelta(days=1))
    async with reading(store) as s:
        rows = (
            await s.execute(
                select(
                    t.Case.id, t.Case.severity, t.Case.outcome, t.Case.opened_at, t.VerdictRow.cells
                )
                .join(t.Item, t.Item.id == t.Case.item_id)
                .outerjoin(t.VerdictRow, latest_verdict())
                .where(
                    t.Case.school_id == school_id,
                    t.Case.opened_at >= since,
                    t.Case.opened_at < until,
                )
            )
        ).all()
        opened = {case_id: must(at) for case_id, _, _, at, _ in rows}
        ack = await _ack_minutes(s, list(opened))
        act = await _act_minutes(s, opened)
    return _report(start, end, rows, ack, act)


def _report(
    start: date, end: date, rows: Sequence[Any], ack: list[float], act: list[float]
) -> GovernorsReport:
    cells: Counter[str] = Counter()
    for *_, cell_json in rows:
        cells.update(str(c) for c in loads(cell_json) or ())
    severities = Counter(Severity(severity).label for _, severity, *_ in rows)
    false_positives = sum(1 for _, _, outcome, *_ in rows if outcome == FALSE_POSITIVE)
    return GovernorsReport(
        start=start,
        end=end,
        cases=len(rows),
        by_cell=dict(sorted(cells.items())),
        by_severity={s.label: severities[s.label] for s in Severity if severities[s.label]},
        median_ack_minutes=statistics.median(ack) if ack else None,
        median_act_minutes=statistics.median(act) if act else None,
        false_positives=false_positives,
        false_positive_rate=false_positives / len(rows) if rows else 0.0,
    )


def _uk_midnight(day: date) -> datetime:
    """The UTC instant a UK calendar day starts (00:00 GMT or BST)."""
    return datetime.combine(day, time(0, 0), tzinfo=UK).astimezone(UTC)


async def _ack_minutes(s: AsyncSession, case_ids: list[int]) -> list[float]:
    if not case_ids:
        return []
    rows = await s.execute(
        select(t.Escalation.queued_at, t.Escalation.acknowledged_at).where(
            t.Escalation.case_id.in_(case_ids), t.Escalation.acknowledged_at.is_not(None)
        )
    )
    return [_minutes(must(queued), must(acked)) for queued, acked in rows.all()]


async def _act_minutes(s: AsyncSession, opened: dict[int, datetime]) -> list[float]:
    if not opened:
        return []
    rows = await s.execute(
        select(t.Action.case_id, func.min(t.ActionTransition.at))
        .join(t.ActionTransition, t.ActionTransition.action_id == t.Action.id)
        .where(
            and_(
                t.Action.case_id.in_(list(opened)),
                t.Action.kind != ActionKind.REVIEW.value,
                t.ActionTransition.to_state == ActionState.DONE.value,
            )
        )
        .group_by(t.Action.case_id)
    )
    return [_minutes(opened[case_id], must(done)) for case_id, done in rows.all()]


def _minutes(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() / 60


def report_csv(report: GovernorsReport) -> str:
    """The report as CSV: one ``section, name, value`` row per number."""
    lines: list[list[Any]] = [
        ["section", "name", "value"],
        ["period", "start", report.start.isoformat()],
        ["period", "end", report.end.isoformat()],
        ["cases", "total", report.cases],
    ]
    lines += [["cell", cell, n] for cell, n in report.by_cell.items()]
    lines += [["severity", label, n] for label, n in report.by_severity.items()]
    lines += [
        ["timing", "median_minutes_to_acknowledge", _number(report.median_ack_minutes)],
        ["timing", "median_minutes_to_act", _number(report.median_act_minutes)],
        ["false_positives", "count", report.false_positives],
        ["false_positives", "rate", f"{report.false_positive_rate:.4f}"],
    ]
    return _csv(lines)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"
