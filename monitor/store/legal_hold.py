"""Legal hold: a case kept whatever its age (litigation, a police investigation, a complaint
in progress) until a DSL or an admin releases it. Placing and releasing are audited
(``legal_hold_placed`` with the reason, ``legal_hold_released``); ``retention.purge`` never
touches a held case.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from connectors.base import require_utc
from monitor.store import tables as t
from monitor.store.audit import add_audit
from monitor.store.convert import aware, must
from monitor.store.facade import Store
from monitor.store.retention import consistent_read
from monitor.store.rows import StoreError

__all__ = [
    "HOLD_PLACED",
    "HOLD_RELEASED",
    "MAX_HOLD_REASON",
    "LegalHold",
    "legal_hold",
    "place_hold",
    "release_hold",
]

HOLD_PLACED = "legal_hold_placed"
HOLD_RELEASED = "legal_hold_released"
MAX_HOLD_REASON = 500


@dataclass(frozen=True, kw_only=True)
class LegalHold:
    """A legal hold on a case: kept, whatever its age, until it is released."""

    case_id: int
    at: datetime
    by: str
    reason: str


async def place_hold(
    store: Store,
    case_id: int,
    *,
    reason: str,
    actor: str,
    now: datetime,
    school_id: int | None = None,
) -> LegalHold:
    """Put case ``case_id`` (of ``school_id``, when given) on legal hold: it is never purged
    until released.

    ValueError for an empty or over-long reason; StoreError for an unknown case, a case
    already on hold, or one already purged.
    """
    reason = " ".join(reason.split())
    if not reason or len(reason) > MAX_HOLD_REASON:
        raise ValueError(f"a legal hold needs a reason of 1 to {MAX_HOLD_REASON} characters")
    now = require_utc(now, "now")
    async with store.transaction() as s:
        case = await _locked_case(s, case_id, school_id)
        if case.legal_hold_at is not None:
            raise StoreError(f"case {case_id} is already on legal hold")
        case.legal_hold_at, case.legal_hold_by, case.legal_hold_reason = now, actor, reason
        add_audit(s, case.school_id, now, actor, HOLD_PLACED, "case", case.id, {"reason": reason})
    return LegalHold(case_id=case_id, at=now, by=actor, reason=reason)


async def release_hold(
    store: Store, case_id: int, *, actor: str, now: datetime, school_id: int | None = None
) -> None:
    """Release case ``case_id``'s legal hold (of ``school_id``, when given): its retention
    period applies again.

    StoreError for an unknown case or one not on hold.
    """
    now = require_utc(now, "now")
    async with store.transaction() as s:
        case = await _locked_case(s, case_id, school_id)
        if case.legal_hold_at is None:
            raise StoreError(f"case {case_id} is not on legal hold")
        detail = {"held_since": must(case.legal_hold_at).isoformat(), "held_by": case.legal_hold_by}
        case.legal_hold_at = case.legal_hold_by = case.legal_hold_reason = None
        add_audit(s, case.school_id, now, actor, HOLD_RELEASED, "case", case.id, detail)


async def legal_hold(store: Store, case_id: int) -> LegalHold | None:
    """Case ``case_id``'s legal hold, or None (also for an unknown case)."""
    async with consistent_read(store) as s:
        case = await s.get(t.Case, case_id)
        if case is None or case.legal_hold_at is None:
            return None
        return LegalHold(
            case_id=case.id,
            at=must(case.legal_hold_at),
            by=case.legal_hold_by or "",
            reason=case.legal_hold_reason or "",
        )


async def _locked_case(s: AsyncSession, case_id: int, school_id: int | None) -> t.Case:
    case = await s.get(t.Case, case_id, with_for_update=True)
    if case is None or school_id not in (None, case.school_id):
        raise StoreError(f"no case with id {case_id}")
    if case.purged_at is not None:
        purged = aware(case.purged_at)
        raise StoreError(f"case {case_id} was purged on {purged:%Y-%m-%d}; nothing is left")
    return case
