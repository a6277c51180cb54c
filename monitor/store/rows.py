"""Row-level helpers shared by the Store and its claims: errors, queries, transitions."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from actions.states import ActionState, check_transition
from monitor.store import tables as t
from monitor.store.convert import WorkItem

__all__ = [
    "NEEDS_EVIDENCE",
    "StoreError",
    "due_actions_query",
    "lock_chain",
    "of_school",
    "transition",
    "verdict_json",
]

NEEDS_EVIDENCE = ("hide", "delete")  # action kinds that wait for evidence of the current version


class StoreError(Exception):
    """A store operation could not be completed."""


async def verdict_json(session: AsyncSession, item: WorkItem) -> dict[str, Any]:
    row = await session.scalar(
        select(t.VerdictRow).where(
            t.VerdictRow.item_id == item.id, t.VerdictRow.version == item.version
        )
    )
    if row is None:
        raise StoreError(f"item {item.id} version {item.version} has no verdict")
    return {
        "flags": json.loads(row.flags),
        "cells": json.loads(row.cells),
        "tags": json.loads(row.tags),
        "severity": row.severity,
        "scores": json.loads(row.scores),
        "reasons": json.loads(row.reasons),
    }


async def lock_chain(session: AsyncSession, school_id: int) -> None:
    """Serialise appends to one school's evidence chain across processes (PostgreSQL)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(7_700_000 + school_id)))


def of_school(column: Any, school_id: int | None) -> tuple[Any, ...]:
    """A WHERE condition limiting rows to one school, or none when ``school_id`` is None."""
    return () if school_id is None else (column == school_id,)


def _taken_down() -> Any:
    """The item's hide or delete is done: a public reply explaining it may go out."""
    done = aliased(t.Action)
    return (
        select(done.id)
        .where(
            done.item_id == t.Action.item_id,
            done.kind.in_(NEEDS_EVIDENCE),
            done.state == ActionState.DONE.value,
        )
        .exists()
    )


def due_actions_query(now: datetime) -> Any:
    evidence_ready = exists().where(
        t.Evidence.item_id == t.Action.item_id,
        t.Item.id == t.Action.item_id,
        t.Evidence.version == t.Item.version,
    )
    due = or_(
        and_(
            t.Action.state == ActionState.APPROVED.value,
            or_(t.Action.next_attempt_at.is_(None), t.Action.next_attempt_at <= now),
        ),
        and_(t.Action.state == ActionState.FAILED.value, t.Action.next_attempt_at <= now),
        and_(t.Action.state == ActionState.RUNNING.value, t.Action.lease_until <= now),
    )
    gate = and_(
        or_(t.Action.kind.not_in(NEEDS_EVIDENCE), evidence_ready),
        or_(t.Action.kind != "reply", _taken_down()),
    )
    return (
        select(t.Action)
        .where(due, gate)
        .order_by(t.Action.id)
        .with_for_update(skip_locked=True, of=t.Action)
    )


def transition(
    session: AsyncSession,
    row: t.Action,
    target: ActionState,
    actor: str,
    reason: str,
    now: datetime,
) -> None:
    source = ActionState(row.state)
    check_transition(source, target)
    row.state, row.updated_at = target.value, now
    session.add(
        t.ActionTransition(
            action_id=row.id,
            from_state=source.value,
            to_state=target.value,
            actor=actor,
            reason=reason,
            at=now,
        )
    )
