"""Rows ↔ frozen records. The rest of Vigil sees these records, never ORM rows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from monitor.store import tables as t

__all__ = [
    "ActionRecord",
    "EscalationRecord",
    "EvidenceRecordRow",
    "SourceState",
    "WorkItem",
    "aware",
    "dumps",
    "loads",
]


def aware(value: datetime | None) -> datetime | None:
    """Normalise a datetime read from the database to aware UTC (SQLite returns naive UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def must(value: datetime | None) -> datetime:
    """``aware`` for columns that are never NULL."""
    result = aware(value)
    if result is None:
        raise ValueError("unexpected NULL datetime")
    return result


def dumps(value: Any) -> str:
    """Canonical JSON for storage."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def loads(text: str | None) -> Any:
    """Parse stored JSON; NULL reads as None."""
    return None if text is None else json.loads(text)


@dataclass(frozen=True, kw_only=True)
class SourceState:
    """A source's saved cursor and health, for the scheduler and health view (no content)."""

    id: int
    school_id: int
    name: str
    platform: str
    kind: str
    cursor: str | None
    paused_until: datetime | None
    pause_reason: str | None
    last_poll_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    failing_since: datetime | None
    consecutive_failures: int
    auth_alerted_at: datetime | None
    items_seen: int

    @classmethod
    def from_row(cls, row: t.Source) -> SourceState:
        """Convert a ``sources`` row."""
        return cls(
            id=row.id,
            school_id=row.school_id,
            name=row.name,
            platform=row.platform,
            kind=row.kind,
            cursor=row.cursor,
            paused_until=aware(row.paused_until),
            pause_reason=row.pause_reason,
            last_poll_at=aware(row.last_poll_at),
            last_success_at=aware(row.last_success_at),
            last_error=row.last_error,
            failing_since=aware(row.failing_since),
            consecutive_failures=row.consecutive_failures,
            auth_alerted_at=aware(row.auth_alerted_at),
            items_seen=row.items_seen,
        )


@dataclass(frozen=True, kw_only=True)
class WorkItem:
    """An item at its current version, as a pipeline stage needs it."""

    id: int
    school_id: int
    source_id: int
    platform: str
    external_id: str
    source_kind: str
    account: str | None
    parent_id: str | None
    thread_id: str | None
    author_id: str | None
    author_handle: str | None
    author_name: str | None
    permalink: str | None
    posted_at: datetime
    gone_at: datetime | None
    version: int
    state: str
    stage: str
    text: str
    media: tuple[dict[str, str], ...]
    raw: str

    @classmethod
    def from_rows(cls, item: t.Item, version: t.ItemVersion) -> WorkItem:
        """Convert an ``items`` row with its current ``item_versions`` row."""
        return cls(
            id=item.id,
            school_id=item.school_id,
            source_id=item.source_id,
            platform=item.platform,
            external_id=item.external_id,
            source_kind=item.source_kind,
            account=item.account,
            parent_id=item.parent_id,
            thread_id=item.thread_id,
            author_id=item.author_id,
            author_handle=item.author_handle,
            author_name=item.author_name,
            permalink=item.permalink,
            posted_at=must(item.posted_at),
            gone_at=aware(item.gone_at),
            version=item.version,
            state=item.state,
            stage=item.stage,
            text=version.text,
            media=tuple(loads(version.media) or ()),
            raw=version.raw,
        )


@dataclass(frozen=True, kw_only=True)
class ActionRecord:
    """One action row."""

    id: int
    school_id: int
    case_id: int
    item_id: int
    kind: str
    state: str
    automatic: bool
    route: str | None
    reason: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    result: Any

    @classmethod
    def from_row(cls, row: t.Action) -> ActionRecord:
        """Convert an ``actions`` row."""
        return cls(
            id=row.id,
            school_id=row.school_id,
            case_id=row.case_id,
            item_id=row.item_id,
            kind=row.kind,
            state=row.state,
            automatic=row.automatic,
            route=row.route,
            reason=row.reason,
            attempts=row.attempts,
            next_attempt_at=aware(row.next_attempt_at),
            last_error=row.last_error,
            result=loads(row.result),
        )


@dataclass(frozen=True, kw_only=True)
class EscalationRecord:
    """One escalation row."""

    id: int
    case_id: int
    action_id: int
    state: str
    recipients: tuple[str, ...]
    routes: tuple[str, ...]
    message_id: str
    sent_at: datetime | None

    @classmethod
    def from_row(cls, row: t.Escalation) -> EscalationRecord:
        """Convert an ``escalations`` row."""
        return cls(
            id=row.id,
            case_id=row.case_id,
            action_id=row.action_id,
            state=row.state,
            recipients=tuple(loads(row.recipients)),
            routes=tuple(loads(row.routes)),
            message_id=row.message_id,
            sent_at=aware(row.sent_at),
        )


@dataclass(frozen=True, kw_only=True)
class EvidenceRecordRow:
    """One entry of the evidence chain."""

    id: int
    item_id: int
    version: int
    seq: int
    files: tuple[dict[str, Any], ...]
    prev_hash: str
    entry_hash: str
    captured_at: datetime

    @classmethod
    def from_row(cls, row: t.Evidence) -> EvidenceRecordRow:
        """Convert an ``evidence`` row."""
        return cls(
            id=row.id,
            item_id=row.item_id,
            version=row.version,
            seq=row.seq,
            files=tuple(loads(row.files)),
            prev_hash=row.prev_hash,
            entry_hash=row.entry_hash,
            captured_at=must(row.captured_at),
        )
