"""Counts for the Prometheus gauges: queue depth, actions and escalations of one school.

Read at scrape time by ``GET /metrics`` (``monitor.web.health``). Only counts: nothing here
returns text, handles or ids.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from actions.states import ActionState
from monitor.store import tables as t
from monitor.store.escalations import EscalationState
from monitor.store.facade import Store
from monitor.store.ingest import Stage

__all__ = ["QUEUE_STAGES", "GaugeCounts", "gauge_counts"]

# The stages an item waits at; ``done`` is not a queue, so it is not counted.
QUEUE_STAGES = tuple(stage for stage in Stage if stage is not Stage.DONE)


@dataclass(frozen=True, kw_only=True)
class GaugeCounts:
    """Items waiting per stage, actions per state, and escalations nobody has finished with.

    Every stage of ``QUEUE_STAGES`` and every ``ActionState`` is present, zero if empty, so a
    series never disappears. ``escalations_pending`` are queued (the email has not gone yet);
    ``escalations_unacknowledged`` were sent and nobody has acknowledged them.
    """

    items: Mapping[str, int]
    actions: Mapping[str, int]
    escalations_pending: int
    escalations_unacknowledged: int


async def gauge_counts(store: Store, school_id: int) -> GaugeCounts:
    """The school's counts, read in one deferred (never waiting on SQLite) session."""
    async with _reading(store) as s:
        stages = await _grouped(s, t.Item.stage, t.Item.school_id == school_id)
        actions = await _grouped(s, t.Action.state, t.Action.school_id == school_id)
        escalations = await _grouped(s, t.Escalation.state, t.Escalation.school_id == school_id)
    return GaugeCounts(
        items={stage.value: stages.get(stage.value, 0) for stage in QUEUE_STAGES},
        actions={state.value: actions.get(state.value, 0) for state in ActionState},
        escalations_pending=escalations.get(EscalationState.QUEUED.value, 0),
        escalations_unacknowledged=escalations.get(EscalationState.SENT.value, 0),
    )


async def _grouped(
    s: AsyncSession, column: InstrumentedAttribute[str], where: ColumnElement[bool]
) -> dict[str, int]:
    rows = await s.execute(select(column, func.count()).where(where).group_by(column))
    return {str(key): int(n) for key, n in rows.all()}


@asynccontextmanager
async def _reading(store: Store) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(store.engine, expire_on_commit=False) as session:
        yield session
