"""The review app's data layer: the queue, the case page, decisions, allow-list and reports.

Views and the CLI call these functions; each change is one transaction with its audit
entries (which never hold post text). Reads use a deferred session, so on SQLite the queue
never waits behind a pipeline batch. The case page lives in ``casefile``, the audit log and
the governors' report in ``reports``; their public names are re-exported here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from actions.policy import ActionKind
from actions.states import ActionState
from classifiers.normalise import normalise
from connectors.base import require_utc
from monitor.store import tables as t
from monitor.store.audit import add_audit
from monitor.store.casefile import (
    RESTRICTED_TAGS,
    CaseView,
    EscalationRow,
    EvidenceRow,
    NoteRow,
    Reason,
    ThreadPost,
    TransitionRow,
    VersionRow,
    case_view,
    current_version,
    is_restricted,
    reading,
)
from monitor.store.convert import ActionRecord
from monitor.store.escalations import acknowledge
from monitor.store.facade import Store
from monitor.store.queue import CLOSED, QueueFilter, QueueRow, queue, queue_counts
from monitor.store.reports import (
    FALSE_POSITIVE,
    AuditRow,
    GovernorsReport,
    audit_csv,
    audit_rows,
    governors_report,
    report_csv,
)
from monitor.store.rows import StoreError, transition

__all__ = [
    "ALLOW_LIST_RULE",
    "CASE_OUTCOMES",
    "ESCALATION_OUTCOMES",
    "RESTRICTED_TAGS",
    "AuditRow",
    "CaseView",
    "EscalationRow",
    "EvidenceRow",
    "GovernorsReport",
    "NoteRow",
    "QueueFilter",
    "QueueRow",
    "Reason",
    "ThreadPost",
    "TransitionRow",
    "VersionRow",
    "add_note",
    "allow_list_hash",
    "allow_listed",
    "approve_kind",
    "assign",
    "audit_csv",
    "audit_rows",
    "case_view",
    "change_action",
    "close_case",
    "decide",
    "escalate_to_dsl",
    "governors_report",
    "is_allow_listed",
    "is_restricted",
    "mark_false_positive",
    "queue",
    "queue_counts",
    "record_escalation_outcome",
    "report_csv",
    "undo_hide",
]

CASE_OUTCOMES = ("actioned", FALSE_POSITIVE, "no_action", "referred")
ESCALATION_OUTCOMES = ("ceop", "police", "lado", "parents", "nfa")
ALLOW_LIST_RULE = "allow_list"  # the rule (and detector) of an allow-listed text's verdict
MAX_NOTE_CHARS = 10_000
FALSE_POSITIVE_REASON = "marked as a false positive"
PENDING = (ActionState.PROPOSED.value, ActionState.APPROVED.value)  # not started: rejectable


# -- case decisions ---------------------------------------------------------------------------


async def _case(s: AsyncSession, case_id: int) -> t.Case:
    row = await s.get(t.Case, case_id, with_for_update=True)
    if row is None:
        raise StoreError(f"no case with id {case_id}")
    return row


async def add_note(store: Store, case_id: int, *, author: str, body: str, now: datetime) -> None:
    """Add a note to a case; ValueError if it is empty or longer than 10,000 characters."""
    body = body.strip()
    if not body or len(body) > MAX_NOTE_CHARS:
        raise ValueError(f"a note needs 1 to {MAX_NOTE_CHARS:,} characters")
    now = require_utc(now, "now")
    async with store.transaction() as s:
        c = await _case(s, case_id)
        note = t.CaseNote(school_id=c.school_id, case_id=c.id, author=author, body=body, at=now)
        s.add(note)
        await s.flush()
        detail = {"note_id": note.id}
        add_audit(s, c.school_id, now, author, "case_note_added", "case", c.id, detail)


async def assign(
    store: Store, case_id: int, user_id: int | None, *, actor: str, now: datetime
) -> None:
    """Give a case to a user (None: to nobody); StoreError for an unknown or disabled user."""
    now = require_utc(now, "now")
    async with store.transaction() as s:
        c = await _case(s, case_id)
        if user_id is not None:
            user = await s.get(t.User, user_id)
            if user is None or user.disabled_at is not None:
                raise StoreError(f"no active user with id {user_id}")
        detail = {"user_id": user_id, "previous_user_id": c.assignee_id}
        c.assignee_id = user_id
        add_audit(s, c.school_id, now, actor, "case_assigned", "case", c.id, detail)


async def close_case(
    store: Store, case_id: int, outcome: str, *, actor: str, now: datetime
) -> None:
    """Close a case with one of ``CASE_OUTCOMES`` (ValueError otherwise); closing a closed
    case again records the new outcome."""
    _check(outcome, CASE_OUTCOMES, "case outcome")
    now = require_utc(now, "now")
    async with store.transaction() as s:
        _close(s, await _case(s, case_id), outcome, actor, now)


def _check(value: str, allowed: Sequence[str], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r} (expected one of {', '.join(allowed)})")


def _close(s: AsyncSession, c: t.Case, outcome: str, actor: str, now: datetime) -> None:
    detail = {"outcome": outcome, "previous_outcome": c.outcome if c.status == CLOSED else None}
    c.status, c.closed_at, c.outcome, c.closed_by = CLOSED, now, outcome, actor
    add_audit(s, c.school_id, now, actor, "case_closed", "case", c.id, detail)


async def mark_false_positive(store: Store, case_id: int, *, actor: str, now: datetime) -> None:
    """The post should not have fired: reject every action not yet started, allow-list the
    text of its current version for the school, and close the case as a false positive.

    Done actions stay done (a hide is undone with ``undo_hide``).
    """
    now = require_utc(now, "now")
    async with store.transaction() as s:
        c = await _case(s, case_id)
        pending = await s.scalars(
            select(t.Action)
            .where(t.Action.case_id == c.id, t.Action.state.in_(PENDING))
            .order_by(t.Action.id)
            .with_for_update()
        )
        for action in pending:
            transition(s, action, ActionState.REJECTED, actor, FALSE_POSITIVE_REASON, now)
            detail = {"reason": FALSE_POSITIVE_REASON}
            add_audit(s, c.school_id, now, actor, "action_rejected", "action", action.id, detail)
        await _allow(s, c, actor, now)
        _close(s, c, FALSE_POSITIVE, actor, now)


async def _allow(s: AsyncSession, c: t.Case, actor: str, now: datetime) -> None:
    text = await s.scalar(
        select(t.ItemVersion.text).join(t.Item, current_version()).where(t.Item.id == c.item_id)
    )
    digest = allow_list_hash(text or "")
    taken = await s.scalar(
        select(t.AllowedText.id).where(
            t.AllowedText.school_id == c.school_id, t.AllowedText.text_hash == digest
        )
    )
    if taken is not None:  # the same text was allow-listed from another case
        return
    row = t.AllowedText(
        school_id=c.school_id, text_hash=digest, case_id=c.id, added_by=actor, at=now
    )
    s.add(row)
    await s.flush()
    detail = {"allow_list_id": row.id}
    add_audit(s, c.school_id, now, actor, "allow_list_added", "case", c.id, detail)


# -- the allow-list ---------------------------------------------------------------------------


def allow_list_hash(text: str) -> str:
    """sha256 of the text as the detectors see it (``normalise``), whitespace collapsed: the
    same words re-cased, re-spaced or lightly obfuscated hash the same."""
    folded = " ".join(normalise(text).text.split())
    return hashlib.sha256(folded.encode("utf-8", "surrogatepass")).hexdigest()


async def allow_listed(
    source: Store | AsyncSession, school_id: int, texts: Sequence[str]
) -> set[str]:
    """The ``texts`` on the school's allow-list (one query for a whole batch)."""
    hashes = {text: allow_list_hash(text) for text in texts}
    if not hashes:
        return set()
    query = select(t.AllowedText.text_hash).where(
        t.AllowedText.school_id == school_id, t.AllowedText.text_hash.in_(set(hashes.values()))
    )
    if isinstance(source, AsyncSession):
        found = set(await source.scalars(query))
    else:
        async with reading(source) as s:
            found = set(await s.scalars(query))
    return {text for text, digest in hashes.items() if digest in found}


async def is_allow_listed(source: Store | AsyncSession, school_id: int, text: str) -> bool:
    """True when a moderator marked this text (or the same words) a false positive."""
    return bool(await allow_listed(source, school_id, [text]))


# -- actions ----------------------------------------------------------------------------------


async def decide(
    store: Store, action_id: int, *, approve: bool, actor: str, reason: str, now: datetime
) -> ActionRecord:
    """A person approves or rejects a proposed action; the audit log records it."""
    record = await store.decide_action(action_id, approve, actor=actor, reason=reason, now=now)
    await store.audit(
        school_id=record.school_id,
        actor=actor,
        now=now,
        event="action_approved" if approve else "action_rejected",
        subject_type="action",
        subject_id=action_id,
        detail={"reason": reason},
    )
    return record


async def change_action(
    store: Store, action_id: int, new_kind: str, *, actor: str, reason: str, now: datetime
) -> ActionRecord:
    """Reject a proposed (or approved, not started) action and approve one of ``new_kind``
    instead (hide → report, say); returns the approved action.

    An action of ``new_kind`` the case already has is approved if it is still proposed;
    otherwise StoreError, before anything changes. ValueError for an unknown kind, the
    same kind, unhide (undo a hide with ``undo_hide``) or review (every case is reviewed).
    """
    kind = ActionKind(new_kind)
    old = await store.action(action_id)
    if kind in (ActionKind(old.kind), ActionKind.UNHIDE, ActionKind.REVIEW):
        raise ValueError(f"cannot change a {old.kind} action into {kind}")
    if old.state not in PENDING:
        raise StoreError(f"action {action_id} is {old.state}: only one not started can change")
    existing = await _existing(store, old.case_id, kind)
    await decide(store, action_id, approve=False, actor=actor, reason=reason, now=now)
    new = await _approve_or_add(store, old.item_id, existing, kind, actor, reason, now)
    detail = {"from_kind": old.kind, "to_kind": kind.value, "new_action_id": new.id}
    await store.audit(
        school_id=old.school_id,
        actor=actor,
        event="action_changed",
        subject_type="action",
        subject_id=action_id,
        detail=detail,
        now=now,
    )
    return new


async def _existing(store: Store, case_id: int, kind: ActionKind) -> ActionRecord | None:
    """The case's action of ``kind``, if it can still be approved; StoreError if it cannot."""
    found = next((a for a in await store.case_actions(case_id) if a.kind == kind), None)
    if found is not None and found.state != ActionState.PROPOSED:
        raise StoreError(f"case {case_id} already has a {found.state} {kind} action")
    return found


async def _approve_or_add(
    store: Store,
    item_id: int,
    existing: ActionRecord | None,
    kind: ActionKind,
    actor: str,
    reason: str,
    now: datetime,
) -> ActionRecord:
    if existing is not None:
        return await decide(store, existing.id, approve=True, actor=actor, reason=reason, now=now)
    return await store.add_action(
        item_id, kind.value, actor=actor, reason=reason, approved=True, now=now
    )


async def undo_hide(
    store: Store, action_id: int, *, actor: str, reason: str, now: datetime
) -> ActionRecord:
    """Undo a done hide by adding an approved unhide for the same item; returns the unhide."""
    done = await store.action(action_id)
    if done.kind != ActionKind.HIDE or done.state != ActionState.DONE:
        raise StoreError(
            f"action {action_id} is a {done.state} {done.kind}: only a done hide can be undone"
        )
    return await store.add_action(
        done.item_id, ActionKind.UNHIDE.value, actor=actor, reason=reason, approved=True, now=now
    )


async def approve_kind(
    store: Store, case_id: int, kind: ActionKind, *, actor: str, reason: str, now: datetime
) -> ActionRecord:
    """Approve the case's action of ``kind``: the proposed one if there is one, else a new
    one. StoreError if the case already has one past proposed."""
    item_id = await store.case_item_id(case_id)
    existing = await _existing(store, case_id, kind)
    return await _approve_or_add(store, item_id, existing, kind, actor, reason, now)


async def escalate_to_dsl(
    store: Store, case_id: int, *, actor: str, reason: str, now: datetime
) -> ActionRecord:
    """Approve an escalation of the case (the executor emails the DSL); see ``approve_kind``."""
    return await approve_kind(
        store, case_id, ActionKind.ESCALATE, actor=actor, reason=reason, now=now
    )


async def record_escalation_outcome(
    store: Store, escalation_id: int, outcome: str, note: str | None, *, actor: str, now: datetime
) -> None:
    """Record what the DSL did (one of ``ESCALATION_OUTCOMES``, ValueError otherwise).

    The escalation is acknowledged first if nobody had (so no deputy is chased about it);
    the note goes on the escalation, never in the audit log. StoreError for an unknown id.
    """
    _check(outcome, ESCALATION_OUTCOMES, "escalation outcome")
    now = require_utc(now, "now")
    await acknowledge(store, escalation_id, actor, now)
    async with store.transaction() as s:
        row = await s.get(t.Escalation, escalation_id, with_for_update=True)
        if row is None:  # acknowledge has already refused an unknown id
            raise StoreError(f"no escalation with id {escalation_id}")
        detail = {"case_id": row.case_id, "outcome": outcome, "previous_outcome": row.outcome}
        row.outcome, row.outcome_note = outcome, (note or "").strip() or None
        row.outcome_by, row.outcome_at = actor, now
        add_audit(s, row.school_id, now, actor, "escalation_outcome", "escalation", row.id, detail)
