"""The review queue: a school's cases filtered and sorted, and how many each tab holds.

Safeguarding-restricted cases are left out unless the filter asks for them (DSLs only).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, false, func, not_, select

from actions.states import ActionState
from monitor.store import tables as t
from monitor.store.casefile import (
    current_version,
    json_has,
    latest_verdict,
    reading,
    restricted_clause,
)
from monitor.store.convert import loads, must
from monitor.store.facade import Store

__all__ = ["CLOSED", "OPEN", "TABS", "QueueFilter", "QueueRow", "queue", "queue_counts"]

OPEN, CLOSED, ALL = "open", "closed", "all"  # case statuses, and the queue's "either"
ME, UNASSIGNED = "me", "unassigned"  # assignee filters
TABS = ("open", "mine", "unassigned", "restricted", "closed")
EXCERPT_CHARS = 160


@dataclass(frozen=True, kw_only=True)
class QueueFilter:
    """What the queue shows. ``severity`` is a minimum; ``assignee`` is "me", "unassigned"
    or None; ``restricted`` includes safeguarding-restricted cases (DSLs only) and
    ``restricted_only`` shows nothing else (the DSL's "restricted" tab)."""

    flag: str | None = None
    cell: str | None = None
    severity: int | None = None
    platform: str | None = None
    status: str = OPEN
    assignee: str | None = None
    restricted: bool = False
    restricted_only: bool = False


@dataclass(frozen=True, kw_only=True)
class QueueRow:
    """One case in the queue; ``excerpt`` is the start of the post's current text."""

    case_id: int
    item_id: int
    platform: str
    source_kind: str
    author_handle: str | None
    excerpt: str
    flags: tuple[str, ...]
    cells: tuple[str, ...]
    tags: tuple[str, ...]
    severity: int
    status: str
    restricted: bool
    opened_at: datetime
    response_due_at: datetime
    assignee: str | None
    awaiting_decision: int


async def queue(
    store: Store, school_id: int, f: QueueFilter, *, user_id: int | None = None, limit: int = 200
) -> list[QueueRow]:
    """The school's cases matching ``f``, most severe first, then soonest due.

    ``user_id`` is the viewer (for ``assignee="me"``). ValueError for an unknown status or
    assignee filter.
    """
    awaiting = (
        select(func.count(t.Action.id))
        .where(t.Action.case_id == t.Case.id, t.Action.state == ActionState.PROPOSED.value)
        .correlate(t.Case)
        .scalar_subquery()
    )
    query = (
        select(
            t.Case,
            t.Item.platform,
            t.Item.source_kind,
            t.Item.author_handle,
            func.substr(t.ItemVersion.text, 1, EXCERPT_CHARS),
            t.VerdictRow.flags,
            t.VerdictRow.cells,
            t.VerdictRow.tags,
            t.User.display_name,
            awaiting,
            restricted_clause(),
        )
        .join(t.Item, t.Item.id == t.Case.item_id)
        .join(t.ItemVersion, current_version())
        .join(t.VerdictRow, latest_verdict())
        .outerjoin(t.User, t.User.id == t.Case.assignee_id)
        .where(t.Case.school_id == school_id, *_conditions(f, user_id))
        .order_by(t.Case.severity.desc(), t.Case.response_due_at, t.Case.id)
        .limit(limit)
    )
    async with reading(store) as s:
        return [_queue_row(row) for row in (await s.execute(query)).all()]


def _conditions(f: QueueFilter, user_id: int | None) -> list[Any]:
    if f.status not in (OPEN, CLOSED, ALL):
        raise ValueError(f"unknown case status {f.status!r}")
    if f.assignee not in (None, ME, UNASSIGNED):
        raise ValueError(f"unknown assignee filter {f.assignee!r}")
    found = [] if f.status == ALL else [t.Case.status == f.status]
    if f.flag:
        found.append(json_has(t.VerdictRow.flags, f.flag))
    if f.cell:
        found.append(json_has(t.VerdictRow.cells, f.cell))
    if f.severity is not None:
        found.append(t.Case.severity >= f.severity)
    if f.platform:
        found.append(t.Item.platform == f.platform)
    if f.assignee == ME:
        found.append(false() if user_id is None else t.Case.assignee_id == user_id)
    elif f.assignee == UNASSIGNED:
        found.append(t.Case.assignee_id.is_(None))
    if f.restricted_only:
        found.append(restricted_clause())
    elif not f.restricted:
        found.append(not_(restricted_clause()))
    return found


def _queue_row(row: Any) -> QueueRow:
    (case_row, platform, source_kind, handle, excerpt, flags, cells, tags, assignee, waiting,
     restricted) = row  # fmt: skip
    flags, tags = tuple(loads(flags) or ()), tuple(loads(tags) or ())
    return QueueRow(
        case_id=case_row.id,
        item_id=case_row.item_id,
        platform=platform,
        source_kind=source_kind,
        author_handle=handle,
        excerpt=excerpt or "",
        flags=flags,
        cells=tuple(loads(cells) or ()),
        tags=tags,
        severity=case_row.severity,
        status=case_row.status,
        restricted=bool(restricted),
        opened_at=must(case_row.opened_at),
        response_due_at=must(case_row.response_due_at),
        assignee=assignee,
        awaiting_decision=int(waiting or 0),
    )


async def queue_counts(
    store: Store, school_id: int, *, user_id: int | None, restricted: bool
) -> dict[str, int]:
    """How many cases each queue tab holds: open, mine, unassigned, restricted, closed.

    Restricted cases count only when ``restricted`` (the viewer is a DSL); "open", "mine"
    and "unassigned" count open cases, "restricted" the open restricted ones.
    """
    flagged = case((restricted_clause(), 1), else_=0).label("restricted")
    cases = (
        select(t.Case.status, t.Case.assignee_id, flagged)
        .join(t.Item, t.Item.id == t.Case.item_id)
        .join(t.VerdictRow, latest_verdict())
        .where(t.Case.school_id == school_id)
        .subquery()
    )
    columns = (cases.c.status, cases.c.assignee_id, cases.c.restricted)
    grouped = select(*columns, func.count()).group_by(*columns)
    async with reading(store) as s:
        rows = (await s.execute(grouped)).all()
    counts = dict.fromkeys(TABS, 0)
    for status, assignee_id, is_restricted_case, n in rows:
        if is_restricted_case and not restricted:
            continue
        if status != OPEN:
            counts["closed"] += n
            continue
        counts["open"] += n
        counts["restricted"] += n if is_restricted_case else 0
        if assignee_id is None:
            counts["unassigned"] += n
        elif assignee_id == user_id:
            counts["mine"] += n
    return counts
