"""The Store facade: the only persistence API the rest of Vigil calls.

Work is claimed with ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL; on SQLite, writes in this
process are serialised by a lock and every transaction is ``BEGIN IMMEDIATE``. Every hand-off is
a row with a unique key, so a crash or a second process can never do the same work twice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, inspect, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from actions.states import ActionState
from connectors.base import Post, require_utc
from monitor.store import tables as t
from monitor.store.audit import POLICY_ACTOR, add_audit
from monitor.store.claims import ItemClaim
from monitor.store.convert import (
    ActionRecord,
    EscalationRecord,
    SourceState,
    WorkItem,
    dumps,
)
from monitor.store.db import WRITE_OPTION, create_engine, make_sessionmaker
from monitor.store.ingest import ItemState, Stage, mark_gone, upsert_posts
from monitor.store.rows import (
    StoreError,
    due_actions_query,
    of_school,
    transition,
    verdict_json,
)

if TYPE_CHECKING:
    pass

__all__ = ["IngestCounts", "ItemClaim", "ItemState", "Stage", "Store", "StoreError"]


SOURCE_LOCKS = 7_800_000  # advisory lock key spaces, one per purpose
FOLLOW_UP_LOCKS = 7_900_000


@dataclass(frozen=True, kw_only=True)
class IngestCounts:
    """What one poll changed."""

    new: int = 0
    edited: int = 0
    unchanged: int = 0
    gone: int = 0


class Store:
    """Persistence for sources, items, verdicts, cases, actions, evidence, escalations, audit."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self._sessions: async_sessionmaker[AsyncSession] = make_sessionmaker(engine)
        self._write_lock = asyncio.Lock()

    @classmethod
    def open(
        cls, url: str, *, busy_timeout: float = 30.0, pool_size: int = 5, echo: bool = False
    ) -> Store:
        """Create a store on ``url`` (the schema must already be migrated: ``vigil db upgrade``)."""
        return cls(create_engine(url, busy_timeout=busy_timeout, pool_size=pool_size, echo=echo))

    async def close(self) -> None:
        """Dispose of the connection pool."""
        await self.engine.dispose()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One write transaction; committed on success, rolled back on error."""
        if self.sqlite:
            async with self._write_lock, self._sessions() as session, session.begin():
                await session.connection(execution_options={WRITE_OPTION: True})
                yield session
        else:
            async with self._sessions() as session, session.begin():
                yield session

    async def schema_revision(self) -> str | None:
        """The migration the database is at, or None before the first ``vigil db upgrade``."""
        async with self.engine.connect() as conn:
            has_table = await conn.run_sync(lambda c: inspect(c).has_table("alembic_version"))
            if not has_table:
                return None
            revision = await conn.scalar(text("SELECT version_num FROM alembic_version"))
            return None if revision is None else str(revision)

    # -- schools and sources -------------------------------------------------------------

    async def ensure_school(self, slug: str, name: str, now: datetime) -> int:
        """The id of the school ``slug``, creating it on first use."""
        async with self.transaction() as s:
            school = await s.scalar(select(t.School).where(t.School.slug == slug))
            if school is None:
                school = t.School(slug=slug, name=name, created_at=require_utc(now))
                s.add(school)
                await s.flush()
            elif school.name != name:
                school.name = name
            return school.id

    async def ensure_source(
        self, school_id: int, name: str, platform: str, kind: str, now: datetime
    ) -> SourceState:
        """The stored state of source ``name``, creating it on first use."""
        async with self.transaction() as s:
            row = await s.scalar(
                select(t.Source).where(t.Source.school_id == school_id, t.Source.name == name)
            )
            if row is None:
                row = t.Source(
                    school_id=school_id,
                    name=name,
                    platform=platform,
                    kind=kind,
                    consecutive_failures=0,
                    items_seen=0,
                    created_at=require_utc(now),
                )
                s.add(row)
                await s.flush()
            return SourceState.from_row(row)

    async def source_state(self, source_id: int) -> SourceState:
        """The current stored state of one source."""
        async with self._sessions() as s:
            row = await s.get(t.Source, source_id)
            if row is None:
                raise StoreError(f"no source with id {source_id}")
            return SourceState.from_row(row)

    async def list_sources(self, school_id: int | None = None) -> list[SourceState]:
        """Every source (of one school, if given), for the health view."""
        query = select(t.Source).order_by(t.Source.id)
        if school_id is not None:
            query = query.where(t.Source.school_id == school_id)
        async with self._sessions() as s:
            return [SourceState.from_row(r) for r in await s.scalars(query)]

    def source_lock(self, source_id: int) -> AbstractAsyncContextManager[bool]:
        """Hold the right to poll one source; yields False when another process holds it."""
        return self._try_lock(SOURCE_LOCKS + source_id)

    def follow_up_lock(self, school_id: int) -> AbstractAsyncContextManager[bool]:
        """Hold the right to send one school's re-sends and digest (one process at a time)."""
        return self._try_lock(FOLLOW_UP_LOCKS + school_id)

    @asynccontextmanager
    async def _try_lock(self, key: int) -> AsyncIterator[bool]:
        """A session advisory lock on its own connection (PostgreSQL); SQLite has one process."""
        if self.sqlite:
            yield True
            return
        async with self.engine.connect() as conn:
            held = bool(await conn.scalar(select(func.pg_try_advisory_lock(key))))
            try:
                yield held
            finally:
                if held:
                    await conn.scalar(select(func.pg_advisory_unlock(key)))
                await conn.commit()

    # -- ingest ------------------------------------------------------------------------

    async def record_batch(
        self,
        source_id: int,
        posts: Sequence[Post],
        *,
        gone: Sequence[str] = (),
        cursor: str | None,
        now: datetime,
    ) -> IngestCounts:
        """Upsert posts (edits become versions), mark gone ids, save the cursor: one transaction."""
        now = require_utc(now)
        async with self.transaction() as s:
            source = await s.get(t.Source, source_id)
            if source is None:
                raise StoreError(f"no source with id {source_id}")
            new, edited, unchanged = await upsert_posts(s, source, posts, now)
            gone_count = await mark_gone(s, source, gone, now)
            source.cursor = cursor
            source.last_poll_at = source.last_success_at = now
            source.last_error = source.failing_since = None
            source.consecutive_failures = 0
            source.items_seen += new
            return IngestCounts(new=new, edited=edited, unchanged=unchanged, gone=gone_count)

    async def record_poll_failure(
        self,
        source_id: int,
        error: str,
        *,
        now: datetime,
        paused_until: datetime | None = None,
        pause_reason: str | None = None,
    ) -> SourceState:
        """Note a failed poll (and a pause, if any); returns the state *before* this failure."""
        now = require_utc(now)
        async with self.transaction() as s:
            row = await s.get(t.Source, source_id)
            if row is None:
                raise StoreError(f"no source with id {source_id}")
            before = SourceState.from_row(row)
            row.last_poll_at = row.last_error_at = now
            row.last_error = error[:2000]
            row.failing_since = row.failing_since or now
            row.consecutive_failures += 1
            row.paused_until, row.pause_reason = paused_until, pause_reason
            if pause_reason:
                add_audit(
                    s,
                    row.school_id,
                    now,
                    POLICY_ACTOR,
                    "source_paused",
                    "source",
                    row.id,
                    {"reason": pause_reason, "until": paused_until},
                )
            return before

    async def mark_auth_alerted(self, source_id: int, now: datetime) -> None:
        """Remember that the admin was told about this source's credentials."""
        async with self.transaction() as s:
            await s.execute(
                update(t.Source).where(t.Source.id == source_id).values(auth_alerted_at=now)
            )

    async def resume_source(self, source_id: int, actor: str, now: datetime) -> None:
        """Lift a pause (after new credentials were installed, say)."""
        async with self.transaction() as s:
            row = await s.get(t.Source, source_id)
            if row is None:
                raise StoreError(f"no source with id {source_id}")
            row.paused_until = row.pause_reason = row.auth_alerted_at = None
            add_audit(s, row.school_id, now, actor, "source_resumed", "source", row.id, {})

    async def quarantine(self, source_id: int, error: str, payload: str, now: datetime) -> int:
        """Keep a payload that could not be parsed, with its error; returns its id."""
        async with self.transaction() as s:
            source = await s.get(t.Source, source_id)
            if source is None:
                raise StoreError(f"no source with id {source_id}")
            row = t.Quarantine(
                school_id=source.school_id,
                source_id=source_id,
                received_at=now,
                error=error[:2000],
                payload=payload,
            )
            s.add(row)
            await s.flush()
            return row.id

    # -- item stages ---------------------------------------------------------------------

    @asynccontextmanager
    async def claim_items(
        self, stage: Stage, limit: int, *, school_id: int | None = None
    ) -> AsyncIterator[ItemClaim]:
        """Claim up to ``limit`` items waiting for ``stage`` (of one school, if given).

        Results recorded through the claim commit together when the block exits.
        """
        async with self.transaction() as s:
            query = (
                select(t.Item, t.ItemVersion)
                .join(
                    t.ItemVersion,
                    and_(
                        t.ItemVersion.item_id == t.Item.id, t.ItemVersion.version == t.Item.version
                    ),
                )
                .where(t.Item.stage == stage.value, *of_school(t.Item.school_id, school_id))
                .order_by(t.Item.id)
                .limit(limit)
                .with_for_update(skip_locked=True, of=t.Item)
            )
            rows = (await s.execute(query)).all()
            yield ItemClaim(s, [WorkItem.from_rows(i, v) for i, v in rows])

    async def pending_counts(self) -> dict[str, int]:
        """How many items wait at each stage, and how many actions are due or running."""
        async with self._sessions() as s:
            rows = await s.execute(select(t.Item.stage, func.count()).group_by(t.Item.stage))
            counts = {stage: n for stage, n in rows.all()}
            acts = await s.execute(select(t.Action.state, func.count()).group_by(t.Action.state))
            counts.update({f"actions_{state}": n for state, n in acts.all()})
            return counts

    # -- actions -------------------------------------------------------------------------

    async def claim_due_actions(
        self, limit: int, *, now: datetime, lease: timedelta, school_id: int | None = None
    ) -> list[ActionRecord]:
        """Move due actions to ``running`` under a lease and return them.

        Due means: approved and not waiting for a retry time; failed with its retry time
        reached; or running with an expired lease (the process running it died). Hide and
        delete are due only once evidence of the item's current version has been captured.
        """
        now = require_utc(now)
        async with self.transaction() as s:
            query = due_actions_query(now).where(*of_school(t.Action.school_id, school_id))
            rows = list(await s.scalars(query.limit(limit)))
            for row in rows:
                reason = (
                    "resumed after its lease expired"
                    if row.state == ActionState.RUNNING
                    else "started"
                )
                if row.state == ActionState.RUNNING:
                    transition(s, row, ActionState.APPROVED, POLICY_ACTOR, reason, now)
                transition(s, row, ActionState.RUNNING, POLICY_ACTOR, "started", now)
                row.attempts += 1
                row.lease_until = now + lease
            return [ActionRecord.from_row(r) for r in rows]

    async def finish_action(
        self,
        action_id: int,
        state: ActionState,
        *,
        now: datetime,
        reason: str,
        actor: str = POLICY_ACTOR,
        result: Any = None,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> ActionRecord:
        """Record the outcome of a running action (done, failed with a retry time, gave_up)."""
        async with self.transaction() as s:
            row = await s.get(t.Action, action_id, with_for_update=True)
            if row is None:
                raise StoreError(f"no action with id {action_id}")
            transition(s, row, state, actor, reason, require_utc(now))
            row.lease_until = None
            row.next_attempt_at = next_attempt_at
            row.last_error = error[:2000] if error else row.last_error
            if result is not None:
                row.result = dumps(result)
            return ActionRecord.from_row(row)

    async def decide_action(
        self, action_id: int, approve: bool, *, actor: str, reason: str, now: datetime
    ) -> ActionRecord:
        """A moderator approves or rejects a proposed action."""
        target = ActionState.APPROVED if approve else ActionState.REJECTED
        return await self.finish_action(action_id, target, now=now, reason=reason, actor=actor)

    async def add_action(
        self, item_id: int, kind: str, *, actor: str, reason: str, approved: bool, now: datetime
    ) -> ActionRecord:
        """A person adds an action to an item's case (an undo is an unhide like any other).

        Raises StoreError if the item has no case or already has an action of that kind.
        """
        async with self.transaction() as s:
            case = await s.scalar(select(t.Case).where(t.Case.item_id == item_id))
            if case is None:
                raise StoreError(f"item {item_id} has no case")
            taken = await s.scalar(
                select(t.Action.id).where(t.Action.item_id == item_id, t.Action.kind == kind)
            )
            if taken is not None:
                raise StoreError(f"item {item_id} already has a {kind} action ({taken})")
            state = ActionState.APPROVED if approved else ActionState.PROPOSED
            row = t.Action(
                school_id=case.school_id,
                case_id=case.id,
                item_id=item_id,
                kind=kind,
                state=state.value,
                automatic=False,
                route=None,
                reason=reason,
                attempts=0,
                created_at=now,
                updated_at=now,
            )
            s.add(row)
            await s.flush()
            s.add(
                t.ActionTransition(
                    action_id=row.id,
                    from_state=None,
                    to_state=state.value,
                    actor=actor,
                    reason=reason,
                    at=now,
                )
            )
            add_audit(
                s,
                case.school_id,
                now,
                actor,
                "action_added",
                "action",
                row.id,
                {"kind": kind, "item_id": item_id},
            )
            return ActionRecord.from_row(row)

    async def release_leases(self, now: datetime) -> int:
        """Make every running action claimable again (single-process SQLite start-up)."""
        async with self.transaction() as s:
            result = await s.execute(
                update(t.Action)
                .where(t.Action.state == ActionState.RUNNING.value)
                .values(lease_until=now)
            )
            return int(getattr(result, "rowcount", 0) or 0)

    async def action(self, action_id: int) -> ActionRecord:
        """One action."""
        async with self._sessions() as s:
            row = await s.get(t.Action, action_id)
            if row is None:
                raise StoreError(f"no action with id {action_id}")
            return ActionRecord.from_row(row)

    async def case_actions(self, case_id: int) -> list[ActionRecord]:
        """Every action of one case, oldest first."""
        async with self._sessions() as s:
            rows = await s.scalars(
                select(t.Action).where(t.Action.case_id == case_id).order_by(t.Action.id)
            )
            return [ActionRecord.from_row(r) for r in rows]

    async def case_item_id(self, case_id: int) -> int:
        """The item a case is about; StoreError if there is no such case."""
        async with self._sessions() as s:
            item_id = await s.scalar(select(t.Case.item_id).where(t.Case.id == case_id))
        if item_id is None:
            raise StoreError(f"no case with id {case_id}")
        return int(item_id)

    async def item(self, item_id: int) -> WorkItem:
        """One item at its current version."""
        async with self._sessions() as s:
            item = await s.get(t.Item, item_id)
            if item is None:
                raise StoreError(f"no item with id {item_id}")
            version = await s.scalar(
                select(t.ItemVersion).where(
                    t.ItemVersion.item_id == item_id, t.ItemVersion.version == item.version
                )
            )
            if version is None:
                raise StoreError(f"item {item_id} has no version {item.version}")
            return WorkItem.from_rows(item, version)

    async def verdict_of(self, item: WorkItem) -> dict[str, Any]:
        """The stored verdict of the item's current version."""
        async with self._sessions() as s:
            return await verdict_json(s, item)

    # -- escalations ---------------------------------------------------------------------

    async def ensure_escalation(
        self,
        action: ActionRecord,
        *,
        recipients: Sequence[str],
        routes: Sequence[str],
        message_id: str,
        now: datetime,
    ) -> EscalationRecord:
        """The escalation row for an escalate action, created once (unique per action)."""
        async with self.transaction() as s:
            row = await s.scalar(select(t.Escalation).where(t.Escalation.action_id == action.id))
            if row is None:
                row = t.Escalation(
                    school_id=action.school_id,
                    case_id=action.case_id,
                    action_id=action.id,
                    state="queued",
                    recipients=dumps(list(recipients)),
                    routes=dumps(list(routes)),
                    message_id=message_id,
                    queued_at=now,
                )
                s.add(row)
                await s.flush()
            return EscalationRecord.from_row(row)

    async def mark_escalation_sent(self, escalation_id: int, now: datetime) -> None:
        """Record that the escalation email went out."""
        async with self.transaction() as s:
            row = await s.get(t.Escalation, escalation_id)
            if row is None:
                raise StoreError(f"no escalation with id {escalation_id}")
            if row.state == "queued":
                row.state, row.sent_at = "sent", now
                add_audit(
                    s,
                    row.school_id,
                    now,
                    POLICY_ACTOR,
                    "escalation_sent",
                    "escalation",
                    row.id,
                    {"recipients": len(json.loads(row.recipients))},
                )

    async def requeue_held(self, *, actor: str, now: datetime) -> int:
        """Send every held item back to the stage it failed at (after the cause is fixed)."""
        async with self.transaction() as s:
            rows = list(await s.scalars(select(t.Item).where(t.Item.stage == Stage.HELD.value)))
            for row in rows:
                row.stage, row.held_from = row.held_from or Stage.CLASSIFY.value, None
                row.failures, row.updated_at = 0, now
                add_audit(s, row.school_id, now, actor, "item_requeued", "item", row.id, {})
            return len(rows)

    # -- audit and summaries -------------------------------------------------------------

    async def audit(
        self,
        *,
        school_id: int | None,
        actor: str,
        event: str,
        subject_type: str,
        subject_id: int | None,
        detail: dict[str, Any],
        now: datetime,
    ) -> None:
        """Append one entry to the audit log (never post text)."""
        async with self.transaction() as s:
            add_audit(s, school_id, now, actor, event, subject_type, subject_id, detail)

    async def summary(self) -> dict[str, Any]:
        """Counts for the demo and health views: items, flags, cells, actions, escalations."""
        async with self._sessions() as s:
            items = await s.scalar(select(func.count()).select_from(t.Item)) or 0
            versions = await s.scalar(select(func.count()).select_from(t.ItemVersion)) or 0
            gone = await s.scalar(select(func.count()).where(t.Item.gone_at.is_not(None))) or 0
            states = dict(
                (await s.execute(select(t.Item.state, func.count()).group_by(t.Item.state))).all()
            )
            flags: dict[str, int] = {}
            cells: dict[str, int] = {}
            for flag_json, cell_json in (
                await s.execute(select(t.VerdictRow.flags, t.VerdictRow.cells))
            ).all():
                for flag in json.loads(flag_json):
                    flags[flag] = flags.get(flag, 0) + 1
                for cell in json.loads(cell_json):
                    cells[cell] = cells.get(cell, 0) + 1
            actions = (
                await s.execute(
                    select(t.Action.kind, t.Action.state, func.count()).group_by(
                        t.Action.kind, t.Action.state
                    )
                )
            ).all()
            escalations = dict(
                (
                    await s.execute(
                        select(t.Escalation.state, func.count()).group_by(t.Escalation.state)
                    )
                ).all()
            )
            evidence = await s.scalar(select(func.count()).select_from(t.Evidence)) or 0
            cases = await s.scalar(select(func.count()).select_from(t.Case)) or 0
            verdicts = await s.scalar(select(func.count()).select_from(t.VerdictRow)) or 0
        return {
            "items": items,
            "versions": versions,
            "gone": gone,
            "verdicts": verdicts,
            "states": states,
            "flags": flags,
            "cells": cells,
            "cases": cases,
            "evidence": evidence,
            "actions": {f"{k}:{st}": n for k, st, n in actions},
            "escalations": escalations,
        }
