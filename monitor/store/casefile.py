"""The review app's reads of one case: everything a moderator or DSL sees on the case page.

Also what makes a case safeguarding-restricted (only a DSL may see it), as a Python test for
one verdict and as SQL conditions on the latest verdict, shared with the queue.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from classifiers.taxonomy import Flag, Tag
from monitor.store import tables as t
from monitor.store.convert import ActionRecord, aware, loads, must
from monitor.store.escalations import _reading as reading  # deferred: never waits on SQLite
from monitor.store.facade import Store

__all__ = [
    "RESTRICTED_TAGS",
    "CaseView",
    "EscalationRow",
    "EvidenceRow",
    "NoteRow",
    "Reason",
    "ThreadPost",
    "TransitionRow",
    "VersionRow",
    "case_view",
    "current_version",
    "is_restricted",
    "json_has",
    "latest_verdict",
    "reading",
    "restricted_clause",
]

RESTRICTED_TAGS = frozenset(
    {
        Tag.CHILD_AT_RISK.value,
        Tag.CHILD_SEXUAL_IMAGERY.value,
        Tag.SELF_HARM.value,
        Tag.RADICALISATION.value,
        Tag.ALLEGATION_AGAINST_STAFF.value,
    }
)
THREAD_LIMIT = 20
WITHHELD = "(withheld: a safeguarding post only a DSL may read)"


def is_restricted(flags: Iterable[str], tags: Iterable[str]) -> bool:
    """A verdict only a DSL may see: flag safeguarding, or a safeguarding tag."""
    return Flag.SAFEGUARDING.value in set(flags) or not RESTRICTED_TAGS.isdisjoint(tags)


def json_has(column: Any, value: str) -> Any:
    """The stored JSON list in ``column`` holds the string ``value`` (canonical JSON text)."""
    return column.contains(json.dumps(value), autoescape=True)


def restricted_clause() -> Any:
    """SQL twin of ``is_restricted`` over every verdict the joined ``items`` row ever had.

    Any version, not only the latest: a safeguarding post edited into something harmless keeps
    its earlier versions, text and evidence, which only a DSL may read.
    """
    verdict = aliased(t.VerdictRow)
    return exists().where(
        verdict.item_id == t.Item.id,
        or_(
            json_has(verdict.flags, Flag.SAFEGUARDING.value),
            *(json_has(verdict.tags, tag) for tag in sorted(RESTRICTED_TAGS)),
        ),
    )


def current_version() -> Any:
    """Join condition: the ``item_versions`` row of the item's current version."""
    return and_(t.ItemVersion.item_id == t.Item.id, t.ItemVersion.version == t.Item.version)


def latest_verdict() -> Any:
    """Join condition: the ``verdicts`` row of the item's most recently classified version."""
    newest = (
        select(func.max(t.VerdictRow.version))
        .where(t.VerdictRow.item_id == t.Item.id)
        .correlate(t.Item)
        .scalar_subquery()
    )
    return and_(t.VerdictRow.item_id == t.Item.id, t.VerdictRow.version == newest)


@dataclass(frozen=True, kw_only=True)
class Reason:
    """Why the classifier flagged the post: which detector and rule matched which span."""

    rule: str
    detector: str
    flag: str | None
    cell: str | None
    span: tuple[int, int]
    text: str


class VersionRow(NamedTuple):
    """One stored version of the post."""

    version: int
    fetched_at: datetime
    text: str


class ThreadPost(NamedTuple):
    """Another post of the same thread (its text withheld if only a DSL may read it)."""

    item_id: int
    author_handle: str | None
    posted_at: datetime
    text: str


class TransitionRow(NamedTuple):
    """One step in an action's history."""

    action_id: int
    from_state: str | None
    to_state: str
    actor: str
    reason: str
    at: datetime


class EvidenceRow(NamedTuple):
    """One evidence capture; ``files`` are ``{kind, relpath, sha256, size}`` dicts."""

    evidence_id: int
    version: int
    captured_at: datetime
    files: list[dict[str, Any]]


class EscalationRow(NamedTuple):
    """One DSL escalation of the case and what came of it."""

    id: int
    state: str
    recipients: tuple[str, ...]
    queued_at: datetime
    sent_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    outcome: str | None
    outcome_note: str | None
    outcome_by: str | None
    outcome_at: datetime | None


class NoteRow(NamedTuple):
    """A note a person added to the case."""

    author: str
    body: str
    at: datetime


@dataclass(frozen=True, kw_only=True)
class CaseView:
    """Everything on the case page. ``reasons`` (and flags, cells, tags) come from the latest
    verdict, which is of ``verdict_version``: spans index the text of that version."""

    case_id: int
    item_id: int
    school_id: int
    status: str
    outcome: str | None
    severity: int
    restricted: bool
    opened_at: datetime
    response_due_at: datetime
    closed_at: datetime | None
    closed_by: str | None
    assignee_id: int | None
    assignee: str | None
    platform: str
    source_kind: str
    account: str | None
    author_handle: str | None
    author_name: str | None
    permalink: str | None
    posted_at: datetime
    gone_at: datetime | None
    text: str
    version: int
    versions: list[VersionRow]
    verdict_version: int | None
    flags: tuple[str, ...]
    cells: tuple[str, ...]
    tags: tuple[str, ...]
    reasons: list[Reason]
    thread: list[ThreadPost]
    actions: list[ActionRecord]
    transitions: list[TransitionRow]
    evidence: list[EvidenceRow]
    escalations: list[EscalationRow]
    notes: list[NoteRow]
    # Retention (migration 0003): a legal hold, and when the content was purged.
    legal_hold_at: datetime | None = None
    legal_hold_by: str | None = None
    legal_hold_reason: str | None = None
    purged_at: datetime | None = None


async def case_view(store: Store, case_id: int, school_id: int) -> CaseView | None:
    """Case ``case_id`` of school ``school_id`` as the case page shows it; None if there is
    no such case in that school. Thread posts only a DSL may read have their text withheld
    unless this case is restricted too (then its reader is a DSL anyway)."""
    async with reading(store) as s:
        case = await s.get(t.Case, case_id)
        if case is None or case.school_id != school_id:
            return None
        item = await s.get(t.Item, case.item_id)
        if item is None:  # the foreign key makes this impossible
            return None
        verdict = await _verdict(s, item.id)
        flags, tags = _list(verdict, "flags"), _list(verdict, "tags")
        restricted = bool(await s.scalar(select(restricted_clause()).where(t.Item.id == item.id)))
        versions = await _versions(s, item.id)
        actions = await _actions(s, case.id)
        return CaseView(
            **_case_fields(case, await _display_name(s, case.assignee_id)),
            **_item_fields(item, versions),
            restricted=restricted,
            verdict_version=verdict.version if verdict else None,
            flags=flags,
            cells=_list(verdict, "cells"),
            tags=tags,
            reasons=_reasons(verdict),
            thread=await _thread(s, item, show_restricted=restricted),
            actions=[ActionRecord.from_row(a) for a in actions],
            transitions=await _transitions(s, [a.id for a in actions]),
            evidence=await _evidence(s, item.id),
            escalations=await _escalations(s, case.id),
            notes=await _notes(s, case.id),
        )


def _case_fields(case: t.Case, assignee: str | None) -> dict[str, Any]:
    return {
        "case_id": case.id,
        "item_id": case.item_id,
        "school_id": case.school_id,
        "status": case.status,
        "outcome": case.outcome,
        "severity": case.severity,
        "opened_at": must(case.opened_at),
        "response_due_at": must(case.response_due_at),
        "closed_at": aware(case.closed_at),
        "closed_by": case.closed_by,
        "assignee_id": case.assignee_id,
        "assignee": assignee,
        "legal_hold_at": aware(case.legal_hold_at),
        "legal_hold_by": case.legal_hold_by,
        "legal_hold_reason": case.legal_hold_reason,
        "purged_at": aware(case.purged_at),
    }


def _item_fields(item: t.Item, versions: Sequence[VersionRow]) -> dict[str, Any]:
    current = next((v.text for v in versions if v.version == item.version), "")
    return {
        "platform": item.platform,
        "source_kind": item.source_kind,
        "account": item.account,
        "author_handle": item.author_handle,
        "author_name": item.author_name,
        "permalink": item.permalink,
        "posted_at": must(item.posted_at),
        "gone_at": aware(item.gone_at),
        "text": current,
        "version": item.version,
        "versions": list(versions),
    }


async def _display_name(s: AsyncSession, user_id: int | None) -> str | None:
    if user_id is None:
        return None
    name = await s.scalar(select(t.User.display_name).where(t.User.id == user_id))
    return None if name is None else str(name)


async def _verdict(s: AsyncSession, item_id: int) -> t.VerdictRow | None:
    return await s.scalar(
        select(t.VerdictRow)
        .where(t.VerdictRow.item_id == item_id)
        .order_by(t.VerdictRow.version.desc())
        .limit(1)
    )


def _list(verdict: t.VerdictRow | None, field: str) -> tuple[str, ...]:
    if verdict is None:
        return ()
    return tuple(str(x) for x in loads(getattr(verdict, field)) or ())


def _reasons(verdict: t.VerdictRow | None) -> list[Reason]:
    if verdict is None:
        return []
    reasons = []
    for r in loads(verdict.reasons) or ():
        span = r.get("span") or (0, 0)
        reasons.append(
            Reason(
                rule=str(r.get("rule") or ""),
                detector=str(r.get("detector") or ""),
                flag=r.get("flag"),
                cell=r.get("cell"),
                span=(int(span[0]), int(span[1])),
                text=str(r.get("text") or ""),
            )
        )
    return reasons


async def _versions(s: AsyncSession, item_id: int) -> list[VersionRow]:
    rows = await s.execute(
        select(t.ItemVersion.version, t.ItemVersion.fetched_at, t.ItemVersion.text)
        .where(t.ItemVersion.item_id == item_id)
        .order_by(t.ItemVersion.version)
    )
    return [VersionRow(version, must(at), text) for version, at, text in rows.all()]


async def _thread(s: AsyncSession, item: t.Item, *, show_restricted: bool) -> list[ThreadPost]:
    """Posts of the same thread, or the one this replies to, oldest first."""
    related = [t.Item.thread_id == item.thread_id] if item.thread_id else []
    related += [t.Item.external_id == x for x in (item.parent_id, item.thread_id) if x]
    if not related:
        return []
    query = (
        select(
            t.Item.id,
            t.Item.author_handle,
            t.Item.posted_at,
            t.ItemVersion.text,
            restricted_clause(),
        )
        .join(t.ItemVersion, current_version())
        .where(
            t.Item.school_id == item.school_id,
            t.Item.platform == item.platform,
            t.Item.id != item.id,
            or_(*related),
        )
        .order_by(t.Item.posted_at, t.Item.id)
        .limit(THREAD_LIMIT)
    )
    posts = []
    for item_id, handle, posted_at, text, restricted in (await s.execute(query)).all():
        hidden = not show_restricted and bool(restricted)
        posts.append(ThreadPost(item_id, handle, must(posted_at), WITHHELD if hidden else text))
    return posts


async def _actions(s: AsyncSession, case_id: int) -> list[t.Action]:
    rows = await s.scalars(
        select(t.Action).where(t.Action.case_id == case_id).order_by(t.Action.id)
    )
    return list(rows)


async def _transitions(s: AsyncSession, action_ids: Sequence[int]) -> list[TransitionRow]:
    if not action_ids:
        return []
    rows = await s.scalars(
        select(t.ActionTransition)
        .where(t.ActionTransition.action_id.in_(action_ids))
        .order_by(t.ActionTransition.at, t.ActionTransition.id)
    )
    return [
        TransitionRow(r.action_id, r.from_state, r.to_state, r.actor, r.reason, must(r.at))
        for r in rows
    ]


async def _evidence(s: AsyncSession, item_id: int) -> list[EvidenceRow]:
    rows = await s.scalars(
        select(t.Evidence).where(t.Evidence.item_id == item_id).order_by(t.Evidence.version)
    )
    return [
        EvidenceRow(r.id, r.version, must(r.captured_at), list(loads(r.files) or ())) for r in rows
    ]


async def _escalations(s: AsyncSession, case_id: int) -> list[EscalationRow]:
    rows = await s.scalars(
        select(t.Escalation).where(t.Escalation.case_id == case_id).order_by(t.Escalation.id)
    )
    return [
        EscalationRow(
            id=r.id,
            state=r.state,
            recipients=tuple(loads(r.recipients) or ()),
            queued_at=must(r.queued_at),
            sent_at=aware(r.sent_at),
            acknowledged_at=aware(r.acknowledged_at),
            acknowledged_by=r.acknowledged_by,
            outcome=r.outcome,
            outcome_note=r.outcome_note,
            outcome_by=r.outcome_by,
            outcome_at=aware(r.outcome_at),
        )
        for r in rows
    ]


async def _notes(s: AsyncSession, case_id: int) -> list[NoteRow]:
    rows = await s.scalars(
        select(t.CaseNote).where(t.CaseNote.case_id == case_id).order_by(t.CaseNote.id)
    )
    return [NoteRow(r.author, r.body, must(r.at)) for r in rows]
