"""Appending to the audit log (the database refuses UPDATE and DELETE on it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from monitor.store import tables as t
from monitor.store.convert import dumps

__all__ = ["POLICY_ACTOR", "add_audit"]

POLICY_ACTOR = "policy"  # the actor recorded for what Vigil does by itself


def add_audit(
    session: AsyncSession,
    school_id: int | None,
    now: datetime,
    actor: str,
    event: str,
    subject_type: str,
    subject_id: int | None,
    detail: dict[str, Any],
) -> None:
    """Add one audit entry to ``session``'s transaction; ``detail`` never holds post text."""
    session.add(
        t.AuditEntry(
            school_id=school_id,
            at=now,
            actor=actor,
            event=event,
            subject_type=subject_type,
            subject_id=subject_id,
            detail=dumps(detail),
        )
    )
