"""Retention (UK GDPR: keep personal data no longer than needed): what is due, and purging
it. Legal holds, which keep a case whatever its age, are in ``legal_hold.py``.

What goes, for one school, once it is older than its period:

- a **clean item** nobody flagged (no case), ``unflagged`` after it was last seen, with its
  versions and verdicts;
- a **quarantined payload**, ``quarantine`` after it arrived;
- a **flagged item** (one with a case), counted from the case's closing. Open cases, cases on
  legal hold and items the pipeline is still working on are never purged, nor is a case with
  an action that may still run. The period depends on the case:

  - closed as a false positive: the ``unflagged`` period (it should never have been flagged);
  - safeguarding (any verdict restricted to the DSL, or escalated to the DSL): ``safeguarding``;
  - anything else: ``flagged``.

Purging a flagged item deletes its versions, verdicts, notes, actions (with their
transitions) and escalations, and strips the item row of who posted it and where (author,
link, platform ids). The case row stays as a content-free record (status, outcome, dates,
``purged_at``). Each evidence entry becomes a **tombstone**: ``purged_at`` is set and its
metadata emptied, but ``seq``, ``prev_hash`` and ``entry_hash`` stay, so the entries around it
still link and the chain still verifies. Its files list is kept until the files are gone
from disk (``forget_files``), so a crash between the commit and the deletion is finished by
the next purge (``purged_files``).

Every purge that removes anything appends one ``retention_purge`` audit entry: counts and
ids, never content. The audit log itself is never purged.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import String, cast, delete, exists, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from actions.states import ActionState
from connectors.base import require_utc
from monitor.store import tables as t
from monitor.store.audit import POLICY_ACTOR, add_audit
from monitor.store.casefile import restricted_clause
from monitor.store.convert import dumps, loads, must
from monitor.store.db import make_sessionmaker
from monitor.store.facade import Store
from monitor.store.ingest import ItemState, Stage
from monitor.store.queue import CLOSED
from monitor.store.reports import FALSE_POSITIVE

__all__ = [
    "PURGE_EVENT",
    "CasePurge",
    "PurgePlan",
    "PurgeResult",
    "PurgeRule",
    "PurgedFiles",
    "RetentionCutoffs",
    "audited_purges",
    "consistent_read",
    "forget_files",
    "id_ranges",
    "plan_purge",
    "purge",
    "purged_files",
]

PURGE_EVENT = "retention_purge"
NO_FILES = dumps([])
# Actions that may still run: their case is not finished with, whatever its status says.
LIVE_ACTIONS = (ActionState.APPROVED.value, ActionState.RUNNING.value, ActionState.FAILED.value)
_CHUNK = 500  # ids per IN (...)


class PurgeRule(StrEnum):
    """Which retention period applies to a closed case."""

    FALSE_POSITIVE = "false_positive"
    FLAGGED = "flagged"
    SAFEGUARDING = "safeguarding"


@dataclass(frozen=True, kw_only=True)
class RetentionCutoffs:
    """What is older than these instants is due: the [retention] periods subtracted from now."""

    unflagged_before: datetime
    quarantine_before: datetime
    flagged_before: datetime
    safeguarding_before: datetime

    @classmethod
    def at(
        cls,
        now: datetime,
        *,
        unflagged_days: int,
        quarantine_days: int,
        flagged_days: int,
        safeguarding_days: int,
    ) -> RetentionCutoffs:
        """The cutoffs at ``now`` (aware) for periods in days."""
        now = require_utc(now, "now")
        return cls(
            unflagged_before=now - timedelta(days=unflagged_days),
            quarantine_before=now - timedelta(days=quarantine_days),
            flagged_before=now - timedelta(days=flagged_days),
            safeguarding_before=now - timedelta(days=safeguarding_days),
        )

    def for_rule(self, rule: PurgeRule) -> datetime:
        """The cutoff for cases under ``rule`` (compared with their closing time)."""
        if rule is PurgeRule.FALSE_POSITIVE:
            return self.unflagged_before
        if rule is PurgeRule.SAFEGUARDING:
            return self.safeguarding_before
        return self.flagged_before

    @property
    def latest_case_cutoff(self) -> datetime:
        """No closed case after this can be due under any rule."""
        return max(self.for_rule(rule) for rule in PurgeRule)


@dataclass(frozen=True, kw_only=True)
class CasePurge:
    """A closed case whose retention period has ended (ids and dates only)."""

    case_id: int
    item_id: int
    rule: PurgeRule
    closed_at: datetime


@dataclass(frozen=True, kw_only=True)
class PurgePlan:
    """What a purge removes from one school: ids and counts per kind, never content.

    ``held`` lists cases past their period that a legal hold keeps.
    """

    school_id: int
    clean_items: tuple[int, ...]
    quarantine: tuple[int, ...]
    cases: tuple[CasePurge, ...]
    evidence_seqs: tuple[int, ...]
    held: tuple[int, ...]
    counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """Nothing is due."""
        return not (self.clean_items or self.quarantine or self.cases)

    def audit_detail(self) -> dict[str, Any]:
        """The ``retention_purge`` audit entry: counts and ids, never content."""
        return {
            **self.counts,
            "case_ids": [c.case_id for c in self.cases],
            "flagged_item_ids": [c.item_id for c in self.cases],
            "evidence_seqs": list(self.evidence_seqs),
            "clean_item_ids": id_ranges(self.clean_items),
            "quarantine_ids": id_ranges(self.quarantine),
            "held_case_ids": list(self.held),
        }


@dataclass(frozen=True, kw_only=True)
class PurgeResult:
    """A committed purge, and the Message-IDs of the purged escalations (their outbox copies
    hold the posts' text too)."""

    plan: PurgePlan
    message_ids: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class PurgedFiles:
    """A tombstone whose evidence files are still listed (not yet deleted from disk)."""

    evidence_id: int
    case_id: int | None
    relpaths: tuple[str, ...]


def id_ranges(ids: Iterable[int]) -> list[str]:
    """Ids as compact ranges: ``[1, 2, 3, 7]`` → ``["1-3", "7"]``."""
    out: list[str] = []
    run: list[int] = []
    for n in sorted(set(ids)):
        if run and n != run[-1] + 1:
            out.append(_run_text(run))
            run = []
        run.append(n)
    if run:
        out.append(_run_text(run))
    return out


def _run_text(run: Sequence[int]) -> str:
    return str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}"


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    return (ids[i : i + _CHUNK] for i in range(0, len(ids), _CHUNK))


@asynccontextmanager
async def consistent_read(store: Store) -> AsyncIterator[AsyncSession]:
    """One read-only transaction (REPEATABLE READ on PostgreSQL), so its reads agree."""
    async with make_sessionmaker(store.engine)() as session, session.begin():
        if not store.sqlite:
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        yield session


# --- planning -------------------------------------------------------------------------------


async def plan_purge(store: Store, school_id: int, cutoffs: RetentionCutoffs) -> PurgePlan:
    """What ``purge`` would remove now (the dry run): reads only, changes nothing."""
    async with consistent_read(store) as s:
        return await _plan(s, school_id, cutoffs, lock=False)


async def _plan(
    s: AsyncSession, school_id: int, cutoffs: RetentionCutoffs, *, lock: bool
) -> PurgePlan:
    clean = await _clean_items(s, school_id, cutoffs.unflagged_before, lock=lock)
    quarantine = await _quarantined(s, school_id, cutoffs.quarantine_before)
    due, held = await _closed_cases(s, school_id, cutoffs, lock=lock)
    flagged = [c.item_id for c in due]
    evidence = await _live_evidence(s, flagged)
    counts = {
        "clean_items": len(clean),
        "flagged_items": len(due),
        "versions": await _count(s, t.ItemVersion, t.ItemVersion.item_id, [*clean, *flagged]),
        "verdicts": await _count(s, t.VerdictRow, t.VerdictRow.item_id, [*clean, *flagged]),
        "quarantine": len(quarantine),
        **await _case_counts(s, [c.case_id for c in due]),
        "evidence_entries": len(evidence),
        "evidence_files": sum(len(files) for _seq, files in evidence),
    }
    return PurgePlan(
        school_id=school_id,
        clean_items=tuple(clean),
        quarantine=tuple(quarantine),
        cases=tuple(due),
        evidence_seqs=tuple(seq for seq, _files in evidence),
        held=tuple(held),
        counts=counts,
    )


async def _clean_items(
    s: AsyncSession, school_id: int, before: datetime, *, lock: bool
) -> list[int]:
    query = (
        select(t.Item.id)
        .where(
            t.Item.school_id == school_id,
            t.Item.state == ItemState.CLEAN.value,
            t.Item.stage == Stage.DONE.value,
            t.Item.last_seen_at < before,
            ~exists().where(t.Case.item_id == t.Item.id),
        )
        .order_by(t.Item.id)
    )
    if lock:  # a second process purging at the same time waits, then skips what went
        query = query.with_for_update(of=t.Item)
    return list(await s.scalars(query))


async def _quarantined(s: AsyncSession, school_id: int, before: datetime) -> list[int]:
    query = select(t.Quarantine.id).where(
        t.Quarantine.school_id == school_id, t.Quarantine.received_at < before
    )
    return list(await s.scalars(query.order_by(t.Quarantine.id)))


async def _closed_cases(
    s: AsyncSession, school_id: int, cutoffs: RetentionCutoffs, *, lock: bool
) -> tuple[list[CasePurge], list[int]]:
    """Closed cases past their period: (due, kept by a legal hold)."""
    query = _closed_cases_query(school_id, cutoffs.latest_case_cutoff)
    if lock:  # a hold placed meanwhile waits for this purge, or this purge sees it
        query = query.with_for_update(of=t.Case)
    due: list[CasePurge] = []
    held: list[int] = []
    for case_id, item_id, outcome, closed, hold_at, restricted, escalated in (
        await s.execute(query)
    ).all():
        rule = _rule(outcome, bool(restricted or escalated))
        closed_at = must(closed)
        if closed_at >= cutoffs.for_rule(rule):
            continue
        if hold_at is not None:
            held.append(case_id)
        else:
            due.append(CasePurge(case_id=case_id, item_id=item_id, rule=rule, closed_at=closed_at))
    return due, held


def _closed_cases_query(school_id: int, before: datetime) -> Any:
    escalated = exists().where(t.Escalation.case_id == t.Case.id)
    live = exists().where(t.Action.case_id == t.Case.id, t.Action.state.in_(LIVE_ACTIONS))
    return (
        select(
            t.Case.id,
            t.Case.item_id,
            t.Case.outcome,
            t.Case.closed_at,
            t.Case.legal_hold_at,
            restricted_clause(),
            escalated,
        )
        .join(t.Item, t.Item.id == t.Case.item_id)
        .where(
            t.Case.school_id == school_id,
            t.Case.status == CLOSED,
            t.Case.purged_at.is_(None),
            t.Case.closed_at < before,
            t.Item.stage == Stage.DONE.value,  # a new version in the pipeline may reopen it
            ~live,
        )
        .order_by(t.Case.id)
    )


def _rule(outcome: str | None, safeguarding: bool) -> PurgeRule:
    if outcome == FALSE_POSITIVE:
        return PurgeRule.FALSE_POSITIVE
    return PurgeRule.SAFEGUARDING if safeguarding else PurgeRule.FLAGGED


async def _count(s: AsyncSession, entity: Any, column: Any, ids: Sequence[int]) -> int:
    total = 0
    for chunk in _chunks(ids):
        query = select(func.count()).select_from(entity).where(column.in_(chunk))
        total += int(await s.scalar(query) or 0)
    return total


async def _case_counts(s: AsyncSession, case_ids: Sequence[int]) -> dict[str, int]:
    transitions = 0
    for chunk in _chunks(case_ids):
        query = (
            select(func.count())
            .select_from(t.ActionTransition)
            .join(t.Action, t.Action.id == t.ActionTransition.action_id)
            .where(t.Action.case_id.in_(chunk))
        )
        transitions += int(await s.scalar(query) or 0)
    return {
        "cases": len(case_ids),
        "notes": await _count(s, t.CaseNote, t.CaseNote.case_id, case_ids),
        "actions": await _count(s, t.Action, t.Action.case_id, case_ids),
        "action_transitions": transitions,
        "escalations": await _count(s, t.Escalation, t.Escalation.case_id, case_ids),
    }


async def _live_evidence(s: AsyncSession, item_ids: Sequence[int]) -> list[tuple[int, list[Any]]]:
    """(seq, files) of the items' evidence entries not yet purged, in chain order."""
    found: list[tuple[int, list[Any]]] = []
    for chunk in _chunks(item_ids):
        rows = await s.execute(
            select(t.Evidence.seq, t.Evidence.files).where(
                t.Evidence.item_id.in_(chunk), t.Evidence.purged_at.is_(None)
            )
        )
        found += [(seq, _file_list(files)) for seq, files in rows.all()]
    return sorted(found, key=lambda entry: entry[0])


def _file_list(text: str) -> list[Any]:
    try:
        value = loads(text)
    except ValueError:
        return []
    return value if isinstance(value, list) else []


# --- purging --------------------------------------------------------------------------------


async def purge(
    store: Store,
    school_id: int,
    cutoffs: RetentionCutoffs,
    *,
    now: datetime,
    actor: str = POLICY_ACTOR,
) -> PurgeResult:
    """Remove everything ``plan_purge`` lists, in one transaction, and audit it.

    Evidence files stay on disk until the caller deletes them (``purged_files``, then
    ``forget_files``); so do report packs and outbox copies (``PurgeResult.message_ids``).
    """
    now = require_utc(now, "now")
    async with store.transaction() as s:
        plan = await _plan(s, school_id, cutoffs, lock=True)
        if plan.empty:
            return PurgeResult(plan=plan)
        case_ids = [c.case_id for c in plan.cases]
        result = PurgeResult(plan=plan, message_ids=await _message_ids(s, case_ids))
        await _delete_items(s, list(plan.clean_items))
        await _delete_by(s, t.Quarantine, t.Quarantine.id, list(plan.quarantine))
        await _purge_cases(s, case_ids, now)
        await _purge_items(s, [c.item_id for c in plan.cases], now)
        add_audit(s, school_id, now, actor, PURGE_EVENT, "school", school_id, plan.audit_detail())
        return result


async def _message_ids(s: AsyncSession, case_ids: Sequence[int]) -> tuple[str, ...]:
    found: list[str] = []
    for chunk in _chunks(case_ids):
        query = select(t.Escalation.message_id).where(t.Escalation.case_id.in_(chunk))
        found += list(await s.scalars(query))
    return tuple(sorted(found))


async def _delete_by(s: AsyncSession, entity: Any, column: Any, ids: Sequence[int]) -> None:
    for chunk in _chunks(ids):
        await s.execute(delete(entity).where(column.in_(chunk)))


async def _delete_items(s: AsyncSession, item_ids: Sequence[int]) -> None:
    """Clean items: nothing refers to them but their versions and verdicts."""
    await _delete_by(s, t.VerdictRow, t.VerdictRow.item_id, item_ids)
    await _delete_by(s, t.ItemVersion, t.ItemVersion.item_id, item_ids)
    await _delete_by(s, t.Item, t.Item.id, item_ids)


async def _purge_cases(s: AsyncSession, case_ids: Sequence[int], now: datetime) -> None:
    """Delete what people wrote and did about the cases; keep each case row, marked purged."""
    for chunk in _chunks(case_ids):
        actions = select(t.Action.id).where(t.Action.case_id.in_(chunk))
        await s.execute(delete(t.ActionTransition).where(t.ActionTransition.action_id.in_(actions)))
        await s.execute(delete(t.Escalation).where(t.Escalation.case_id.in_(chunk)))
        await s.execute(delete(t.Action).where(t.Action.case_id.in_(chunk)))
        await s.execute(delete(t.CaseNote).where(t.CaseNote.case_id.in_(chunk)))
        await s.execute(
            update(t.Case)
            .where(t.Case.id.in_(chunk))
            .values(purged_at=now)
            .execution_options(synchronize_session=False)
        )


async def _purge_items(s: AsyncSession, item_ids: Sequence[int], now: datetime) -> None:
    """Delete the items' content; tombstone their evidence; keep a row with nobody's name.

    The platform id becomes ``purged:<id>``, so the post, seen again, is a new item.
    """
    for chunk in _chunks(item_ids):
        await s.execute(delete(t.VerdictRow).where(t.VerdictRow.item_id.in_(chunk)))
        await s.execute(delete(t.ItemVersion).where(t.ItemVersion.item_id.in_(chunk)))
        await s.execute(
            update(t.Evidence)
            .where(t.Evidence.item_id.in_(chunk), t.Evidence.purged_at.is_(None))
            .values(purged_at=now, meta=dumps({}))
            .execution_options(synchronize_session=False)
        )
        await s.execute(
            update(t.Item)
            .where(t.Item.id.in_(chunk))
            .values(_anonymous_item(now))
            .execution_options(synchronize_session=False)
        )


def _anonymous_item(now: datetime) -> dict[str, Any]:
    return {
        "external_id": literal("purged:", String) + cast(t.Item.id, String),
        "author_id": None,
        "author_handle": None,
        "author_name": None,
        "permalink": None,
        "parent_id": None,
        "thread_id": None,
        "last_error": None,
        "updated_at": now,
    }


# --- evidence files of tombstones -----------------------------------------------------------


async def purged_files(store: Store, school_id: int) -> list[PurgedFiles]:
    """Tombstones whose files are still listed: delete those files, then ``forget_files``."""
    async with consistent_read(store) as s:
        rows = await s.execute(
            select(t.Evidence.id, t.Evidence.files, t.Case.id)
            .outerjoin(t.Case, t.Case.item_id == t.Evidence.item_id)
            .where(
                t.Evidence.school_id == school_id,
                t.Evidence.purged_at.is_not(None),
                t.Evidence.files != NO_FILES,
            )
            .order_by(t.Evidence.seq)
        )
        return [
            PurgedFiles(evidence_id=evidence_id, case_id=case_id, relpaths=_relpaths(files))
            for evidence_id, files, case_id in rows.all()
        ]


def _relpaths(files: str) -> tuple[str, ...]:
    return tuple(
        str(f["relpath"]) for f in _file_list(files) if isinstance(f, dict) and "relpath" in f
    )


async def forget_files(store: Store, evidence_ids: Sequence[int]) -> None:
    """The tombstones' files are gone from disk: stop listing them."""
    async with store.transaction() as s:
        for chunk in _chunks(evidence_ids):
            await s.execute(
                update(t.Evidence)
                .where(t.Evidence.id.in_(chunk), t.Evidence.purged_at.is_not(None))
                .values(files=NO_FILES)
                .execution_options(synchronize_session=False)
            )


async def audited_purges(store: Store, school_id: int) -> frozenset[int]:
    """The evidence seqs the school's ``retention_purge`` audit entries say were purged."""
    async with consistent_read(store) as s:
        details = await s.scalars(
            select(t.AuditEntry.detail).where(
                t.AuditEntry.school_id == school_id, t.AuditEntry.event == PURGE_EVENT
            )
        )
        seqs: set[int] = set()
        for detail in details:
            seqs.update(_seqs(detail))
        return frozenset(seqs)


def _seqs(detail: str) -> list[int]:
    try:
        value = json.loads(detail)
    except ValueError:
        return []
    listed = value.get("evidence_seqs") if isinstance(value, dict) else None
    return [n for n in listed if isinstance(n, int)] if isinstance(listed, list) else []
