"""Reads for a subject access request (UK GDPR Art. 15): what one school holds about the
posts of one author handle, on any platform, as JSON-ready records. Nothing here writes.

A handle matches case-insensitively, with or without leading ``@``s. Items already purged no
longer carry a handle, so they are not found: nothing personal is left of them.

For suspected sexual imagery of a child (a verdict tagged ``child_sexual_imagery`` or evidence
marked so), the post's text, raw payload and matched spans are withheld, and of its evidence
files only the metadata and a redacted raw stub are listed, as in an evidence export.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from actions.custody import parse_files, parse_meta
from actions.evidence import EvidenceError, EvidenceFile
from classifiers.taxonomy import Tag
from monitor.store import tables as t
from monitor.store.convert import aware, loads
from monitor.store.facade import Store
from monitor.store.retention import consistent_read

__all__ = ["WITHHELD", "SubjectItem", "SubjectRecords", "normalise_handle", "subject_records"]

WITHHELD = "withheld: suspected sexual imagery of a child (UKCIS guidance)"
CHILD_IMAGERY_TAG = Tag.CHILD_SEXUAL_IMAGERY.value
_CHILD_KINDS = frozenset({"metadata"})  # plus a redacted raw stub


@dataclass(frozen=True, kw_only=True)
class SubjectItem:
    """One item by the author: ``record`` is JSON-ready; ``files`` are its evidence files."""

    item_id: int
    child_imagery: bool
    record: Mapping[str, Any]
    files: tuple[EvidenceFile, ...]


@dataclass(frozen=True, kw_only=True)
class SubjectRecords:
    """Everything found for one handle in one school, and the audit entries about it."""

    school_slug: str
    school_name: str
    items: tuple[SubjectItem, ...]
    audit: tuple[Mapping[str, Any], ...]


def normalise_handle(handle: str) -> str:
    """``@Parent.One`` and ``parent.one`` are the same handle."""
    return handle.strip().lstrip("@").lower()


async def subject_records(store: Store, school_id: int, handle: str) -> SubjectRecords:
    """Every item of school ``school_id`` posted under ``handle``, in one snapshot.

    ValueError for an empty handle or an unknown school.
    """
    wanted = normalise_handle(handle)
    if not wanted:
        raise ValueError("give the author's handle")
    async with consistent_read(store) as s:
        school = await s.get(t.School, school_id)
        if school is None:
            raise ValueError(f"no school with id {school_id}")
        rows = await s.scalars(
            select(t.Item)
            .where(t.Item.school_id == school_id, _handle_is(wanted))
            .order_by(t.Item.posted_at, t.Item.id)
        )
        items = [await _subject_item(s, row) for row in rows]
        return SubjectRecords(
            school_slug=school.slug,
            school_name=school.name,
            items=tuple(items),
            audit=tuple(await _audit(s, school_id, [i.record for i in items])),
        )


def _handle_is(wanted: str) -> Any:
    return func.lower(func.ltrim(t.Item.author_handle, "@")) == wanted


async def _subject_item(s: AsyncSession, item: t.Item) -> SubjectItem:
    verdicts = list(
        await s.scalars(
            select(t.VerdictRow)
            .where(t.VerdictRow.item_id == item.id)
            .order_by(t.VerdictRow.version)
        )
    )
    evidence = list(
        await s.scalars(
            select(t.Evidence).where(t.Evidence.item_id == item.id).order_by(t.Evidence.seq)
        )
    )
    child = _child_imagery(verdicts, evidence)
    case = await s.scalar(select(t.Case).where(t.Case.item_id == item.id))
    record = {
        "item": _item(item),
        "versions": await _versions(s, item.id, child),
        "verdicts": [_verdict(v, child) for v in verdicts],
        "case": _case(case),
        **await _actions(s, case),
        "evidence": [_evidence(e, child) for e in evidence],
    }
    files = tuple(f for e in evidence for f in _files(e, child))
    return SubjectItem(item_id=item.id, child_imagery=child, record=record, files=files)


def _child_imagery(verdicts: Sequence[t.VerdictRow], evidence: Sequence[t.Evidence]) -> bool:
    if any(CHILD_IMAGERY_TAG in (loads(v.tags) or ()) for v in verdicts):
        return True
    return any(_meta(e).get("child_imagery") is True for e in evidence)


def _iso(value: datetime | None) -> str | None:
    found = aware(value)
    return None if found is None else found.isoformat()


def _item(row: t.Item) -> dict[str, Any]:
    return {
        "id": row.id,
        "platform": row.platform,
        "external_id": row.external_id,
        "source_kind": row.source_kind,
        "account": row.account,
        "author_id": row.author_id,
        "author_handle": row.author_handle,
        "author_name": row.author_name,
        "permalink": row.permalink,
        "parent_id": row.parent_id,
        "thread_id": row.thread_id,
        "posted_at": _iso(row.posted_at),
        "first_seen_at": _iso(row.first_seen_at),
        "last_seen_at": _iso(row.last_seen_at),
        "gone_at": _iso(row.gone_at),
        "version": row.version,
        "state": row.state,
    }


async def _versions(s: AsyncSession, item_id: int, child: bool) -> list[dict[str, Any]]:
    rows = await s.scalars(
        select(t.ItemVersion)
        .where(t.ItemVersion.item_id == item_id)
        .order_by(t.ItemVersion.version)
    )
    return [
        {
            "version": r.version,
            "text": WITHHELD if child else r.text,
            "media": _json(r.media),
            "raw": WITHHELD if child else _json(r.raw),
            "content_hash": r.content_hash,
            "platform_updated_at": _iso(r.platform_updated_at),
            "fetched_at": _iso(r.fetched_at),
        }
        for r in rows
    ]


def _verdict(row: t.VerdictRow, child: bool) -> dict[str, Any]:
    reasons = [r for r in _json(row.reasons) or () if isinstance(r, dict)]
    if child:
        reasons = [{**r, "text": WITHHELD} for r in reasons]
    return {
        "version": row.version,
        "flags": _json(row.flags),
        "cells": _json(row.cells),
        "tags": _json(row.tags),
        "severity": row.severity,
        "scores": _json(row.scores),
        "reasons": reasons,
        "classified_at": _iso(row.classified_at),
    }


def _case(row: t.Case | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "id": row.id,
        "status": row.status,
        "outcome": row.outcome,
        "severity": row.severity,
        "opened_at": _iso(row.opened_at),
        "response_due_at": _iso(row.response_due_at),
        "closed_at": _iso(row.closed_at),
    }


async def _actions(s: AsyncSession, case: t.Case | None) -> dict[str, list[dict[str, Any]]]:
    """The case's actions with their transitions, and its escalations' states."""
    if case is None:
        return {"actions": [], "escalations": []}
    actions = list(
        await s.scalars(select(t.Action).where(t.Action.case_id == case.id).order_by(t.Action.id))
    )
    steps = await _transitions(s, [a.id for a in actions])
    escalations = await s.scalars(
        select(t.Escalation).where(t.Escalation.case_id == case.id).order_by(t.Escalation.id)
    )
    return {
        "actions": [_action(a, steps.get(a.id, [])) for a in actions],
        "escalations": [_escalation(e) for e in escalations],
    }


async def _transitions(
    s: AsyncSession, action_ids: Sequence[int]
) -> dict[int, list[dict[str, Any]]]:
    found: dict[int, list[dict[str, Any]]] = {}
    if not action_ids:
        return found
    rows = await s.scalars(
        select(t.ActionTransition)
        .where(t.ActionTransition.action_id.in_(action_ids))
        .order_by(t.ActionTransition.at, t.ActionTransition.id)
    )
    for r in rows:
        found.setdefault(r.action_id, []).append(
            {
                "from_state": r.from_state,
                "to_state": r.to_state,
                "actor": r.actor,
                "reason": r.reason,
                "at": _iso(r.at),
            }
        )
    return found


def _action(row: t.Action, transitions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "state": row.state,
        "automatic": row.automatic,
        "route": row.route,
        "reason": row.reason,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
        "transitions": transitions,
    }


def _escalation(row: t.Escalation) -> dict[str, Any]:
    """Its state and times; not the recipients nor the DSL's outcome (third parties')."""
    return {
        "id": row.id,
        "state": row.state,
        "queued_at": _iso(row.queued_at),
        "sent_at": _iso(row.sent_at),
        "acknowledged_at": _iso(row.acknowledged_at),
        "resent_at": _iso(row.resent_at),
    }


def _evidence(row: t.Evidence, child: bool) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "version": row.version,
        "captured_at": _iso(row.captured_at),
        "entry_hash": row.entry_hash,
        "purged": row.purged_at is not None,
        "metadata": _meta(row),
        "files": [
            {"kind": f.kind, "member": f"evidence/{f.relpath}", "sha256": f.sha256, "size": f.size}
            for f in _files(row, child)
        ],
    }


def _files(row: t.Evidence, child: bool) -> list[EvidenceFile]:
    """The entry's files an export may include (none for a purged entry)."""
    if row.purged_at is not None:
        return []
    try:
        files = parse_files(row.files)
    except EvidenceError:
        return []
    if not child:
        return list(files)
    redacted = _meta(row).get("redacted") is True
    return [f for f in files if f.kind in _CHILD_KINDS or (f.kind == "raw" and redacted)]


def _meta(row: t.Evidence) -> dict[str, Any]:
    try:
        return parse_meta(row.meta)
    except EvidenceError:
        return {}


def _json(text: str | None) -> Any:
    try:
        return loads(text)
    except ValueError:
        return text


async def _audit(
    s: AsyncSession, school_id: int, records: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Audit entries about the items, their cases, actions and escalations."""
    about = _subjects(records)
    if not about:
        return []
    rows = await s.scalars(
        select(t.AuditEntry)
        .where(t.AuditEntry.school_id == school_id, or_(*about))
        .order_by(t.AuditEntry.at, t.AuditEntry.id)
    )
    return [
        {
            "id": r.id,
            "at": _iso(r.at),
            "actor": r.actor,
            "event": r.event,
            "subject_type": r.subject_type,
            "subject_id": r.subject_id,
            "detail": _json(r.detail),
        }
        for r in rows
    ]


def _subjects(records: Sequence[Mapping[str, Any]]) -> list[Any]:
    ids: dict[str, list[int]] = {"item": [], "case": [], "action": [], "escalation": []}
    for record in records:
        ids["item"].append(record["item"]["id"])
        if record["case"] is not None:
            ids["case"].append(record["case"]["id"])
        ids["action"] += [a["id"] for a in record["actions"]]
        ids["escalation"] += [e["id"] for e in record["escalations"]]
    return [
        and_(t.AuditEntry.subject_type == kind, t.AuditEntry.subject_id.in_(found))
        for kind, found in ids.items()
        if found
    ]
