"""A claim on items for one pipeline stage: record each result inside the claim's transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from actions.states import initial_state
from classifiers.base import Verdict
from monitor.store import tables as t
from monitor.store.audit import POLICY_ACTOR, add_audit
from monitor.store.convert import WorkItem, dumps
from monitor.store.ingest import ItemState, Stage
from monitor.store.rows import StoreError, lock_chain, verdict_json

if TYPE_CHECKING:
    from actions.evidence import EvidenceRecord
    from actions.policy import ProposedAction

__all__ = ["ItemClaim"]


class ItemClaim:
    """Items claimed for one stage; record each result before the claim's transaction commits."""

    def __init__(self, session: AsyncSession, items: list[WorkItem]) -> None:
        self._s = session
        self.items = items

    @asynccontextmanager
    async def isolated(self) -> AsyncIterator[None]:
        """A savepoint: if one item's work fails, only that item's writes are undone."""
        async with self._s.begin_nested():
            yield

    async def record_failure(
        self, item: WorkItem, error: str, now: datetime, *, hold_after: int
    ) -> bool:
        """Count a failed try at this item's stage; after ``hold_after`` tries, hold it for a
        person (stage ``held``). Returns True when the item was held just now."""
        row = await self._row(item)
        row.failures += 1
        row.last_error = error[:2000]
        row.updated_at = now
        if row.failures < hold_after:
            return False
        row.held_from, row.stage = row.stage, Stage.HELD.value
        add_audit(
            self._s,
            item.school_id,
            now,
            POLICY_ACTOR,
            "item_held",
            "item",
            item.id,
            {"stage": row.held_from, "failures": row.failures},
        )
        return True

    async def _advance(self, item: WorkItem, stage: Stage, now: datetime) -> t.Item:
        row = await self._row(item)
        row.stage, row.updated_at = stage.value, now
        row.failures, row.last_error = 0, None
        return row

    async def _row(self, item: WorkItem) -> t.Item:
        row = await self._s.get(t.Item, item.id)
        if row is None:
            raise StoreError(f"no item with id {item.id}")
        return row

    async def record_verdict(self, item: WorkItem, verdict: Verdict, now: datetime) -> None:
        """Store the verdict of the item's current version and move it to decide (or done)."""
        data = verdict.to_json()
        self._s.add(
            t.VerdictRow(
                item_id=item.id,
                version=item.version,
                flags=dumps(data["flags"]),
                cells=dumps(data["cells"]),
                tags=dumps(data["tags"]),
                severity=int(verdict.severity),
                scores=dumps(data["scores"]),
                # the rule id too, so the review app can say which rule fired
                reasons=dumps([{**r.reason_json(), "rule": r.rule} for r in verdict.reasons]),
                classified_at=now,
            )
        )
        row = await self._advance(item, Stage.DECIDE if verdict.flagged else Stage.DONE, now)
        row.state = ItemState.FLAGGED if verdict.flagged else ItemState.CLEAN

    async def record_decision(
        self,
        item: WorkItem,
        *,
        severity: int,
        proposals: Sequence[ProposedAction],
        response_due: datetime,
        now: datetime,
    ) -> int:
        """Open (or reuse) the item's case and add each proposed action not already there."""
        case = await self._s.scalar(select(t.Case).where(t.Case.item_id == item.id))
        if case is None:
            case = t.Case(
                school_id=item.school_id,
                item_id=item.id,
                status="open",
                severity=severity,
                opened_at=now,
                response_due_at=response_due,
            )
            self._s.add(case)
            await self._s.flush()
            add_audit(
                self._s,
                item.school_id,
                now,
                POLICY_ACTOR,
                "case_opened",
                "case",
                case.id,
                {"item_id": item.id, "severity": severity},
            )
        else:
            case.severity = max(case.severity, severity)
            case.status, case.closed_at = "open", None
        existing = set(
            await self._s.scalars(select(t.Action.kind).where(t.Action.item_id == item.id))
        )
        for proposal in proposals:
            if proposal.kind.value not in existing:
                await self._add_action(item, case.id, proposal, now)
        await self._advance(item, Stage.EVIDENCE, now)
        return case.id

    async def _add_action(
        self, item: WorkItem, case_id: int, proposal: ProposedAction, now: datetime
    ) -> None:
        state = initial_state(proposal.automatic)
        row = t.Action(
            school_id=item.school_id,
            case_id=case_id,
            item_id=item.id,
            kind=proposal.kind.value,
            state=state.value,
            automatic=proposal.automatic,
            route=proposal.route,
            reason=proposal.reason,
            attempts=0,
            created_at=now,
            updated_at=now,
        )
        self._s.add(row)
        await self._s.flush()
        self._s.add(
            t.ActionTransition(
                action_id=row.id,
                from_state=None,
                to_state=state.value,
                actor=POLICY_ACTOR,
                reason=proposal.reason,
                at=now,
            )
        )

    async def verdict(self, item: WorkItem) -> dict[str, Any]:
        """The stored verdict of the item's current version (the classify contract's JSON)."""
        return await verdict_json(self._s, item)

    async def parent_text(self, item: WorkItem) -> str | None:
        """The text of the post this one replies to, when we have it."""
        if not item.parent_id:
            return None
        return await self._s.scalar(
            select(t.ItemVersion.text)
            .join(
                t.Item,
                and_(t.Item.id == t.ItemVersion.item_id, t.Item.version == t.ItemVersion.version),
            )
            .where(
                t.Item.school_id == item.school_id,
                t.Item.platform == item.platform,
                t.Item.external_id == item.parent_id,
            )
        )

    async def record_evidence(
        self, item: WorkItem, capture: Callable[[str], Awaitable[EvidenceRecord]], now: datetime
    ) -> None:
        """Append the item's evidence to the school's hash chain and move it to done.

        ``capture(prev_hash)`` writes the files and returns the record; it runs while this
        transaction holds the chain, so entries can never interleave. Capturing the same
        version twice is a no-op.
        """
        done = await self._s.scalar(
            select(t.Evidence.id).where(
                t.Evidence.item_id == item.id, t.Evidence.version == item.version
            )
        )
        if done is None:
            await lock_chain(self._s, item.school_id)
            last = (
                await self._s.execute(
                    select(t.Evidence.seq, t.Evidence.entry_hash)
                    .where(t.Evidence.school_id == item.school_id)
                    .order_by(t.Evidence.seq.desc())
                    .limit(1)
                )
            ).first()
            seq, prev = (last[0] + 1, last[1]) if last else (1, "0" * 64)
            record = await capture(prev)
            self._s.add(
                t.Evidence(
                    school_id=item.school_id,
                    item_id=item.id,
                    version=item.version,
                    seq=seq,
                    files=dumps([f.__dict__ for f in record.files]),
                    meta=dumps(dict(record.metadata)),
                    prev_hash=record.prev_hash,
                    entry_hash=record.entry_hash,
                    captured_at=record.captured_at,
                )
            )
        await self._advance(item, Stage.DONE, now)
