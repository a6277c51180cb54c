"""Ingest inside one transaction: upsert posts (edits become versions) and mark gone items."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from connectors.base import Post
from monitor.store import tables as t
from monitor.store.audit import POLICY_ACTOR, add_audit
from monitor.store.convert import dumps

__all__ = ["ItemState", "Stage", "content_hash", "mark_gone", "upsert_posts"]

_CHUNK = 500  # ids per IN (...) query


class Stage(StrEnum):
    """Which pipeline stage an item waits for."""

    CLASSIFY = "classify"
    DECIDE = "decide"
    EVIDENCE = "evidence"
    DONE = "done"
    HELD = "held"  # failed too often at a stage: waits for a person, never silently dropped


class ItemState(StrEnum):
    """An item's classification state (DESIGN.md, States)."""

    NEW = "new"
    CLEAN = "clean"
    FLAGGED = "flagged"


def content_hash(post: Post) -> str:
    """Hash of what a reader sees (text and media); a change makes a new version."""
    media = [{"url": m.url, "type": m.type} for m in post.media]
    return hashlib.sha256(dumps({"text": post.text, "media": media}).encode()).hexdigest()


async def upsert_posts(
    session: AsyncSession, source: t.Source, posts: Sequence[Post], now: datetime
) -> tuple[int, int, int]:
    """Insert new posts, add a version for changed ones; returns (new, edited, unchanged)."""
    unique = list({(p.platform, p.external_id): p for p in posts}.values())  # last copy wins
    existing = await _existing(session, source.school_id, unique)
    fresh = [p for p in unique if (p.platform, p.external_id) not in existing]
    await _insert_items(session, source, fresh, now)
    versions = await _current_hashes(session, [i.id for i in existing.values()])
    edited = 0
    for post in unique:
        row = existing.get((post.platform, post.external_id))
        if row is None:
            continue
        row.last_seen_at = now
        if versions.get(row.id) != content_hash(post):
            _add_version(session, row, post, now)
            edited += 1
    return len(fresh), edited, len(unique) - len(fresh) - edited


async def _existing(
    session: AsyncSession, school_id: int, posts: Sequence[Post]
) -> dict[tuple[str, str], t.Item]:
    found: dict[tuple[str, str], t.Item] = {}
    for platform in {p.platform for p in posts}:
        ids = [p.external_id for p in posts if p.platform == platform]
        for start in range(0, len(ids), _CHUNK):
            rows = await session.scalars(
                select(t.Item).where(
                    t.Item.school_id == school_id,
                    t.Item.platform == platform,
                    t.Item.external_id.in_(ids[start : start + _CHUNK]),
                )
            )
            found.update({(r.platform, r.external_id): r for r in rows})
    return found


async def _current_hashes(session: AsyncSession, item_ids: Sequence[int]) -> dict[int, str]:
    hashes: dict[int, str] = {}
    for start in range(0, len(item_ids), _CHUNK):
        rows = await session.execute(
            select(t.ItemVersion.item_id, t.ItemVersion.content_hash)
            .join(t.Item, t.Item.id == t.ItemVersion.item_id)
            .where(t.Item.id.in_(item_ids[start : start + _CHUNK]))
            .where(t.ItemVersion.version == t.Item.version)
        )
        hashes.update({item_id: digest for item_id, digest in rows.all()})
    return hashes


async def _insert_items(
    session: AsyncSession, source: t.Source, posts: Sequence[Post], now: datetime
) -> None:
    rows = [_item_row(source, post, now) for post in posts]
    session.add_all(rows)
    await session.flush()  # one multi-row INSERT … RETURNING gives every id
    session.add_all(
        _version_row(row.id, 1, post, now) for row, post in zip(rows, posts, strict=True)
    )


def _item_row(source: t.Source, post: Post, now: datetime) -> t.Item:
    return t.Item(
        school_id=source.school_id,
        source_id=source.id,
        platform=post.platform,
        external_id=post.external_id,
        source_kind=post.source_kind.value,
        account=post.account,
        parent_id=post.parent_id,
        thread_id=post.thread_id,
        author_id=post.author_id,
        author_handle=post.author_handle,
        author_name=post.author_name,
        permalink=post.permalink,
        posted_at=post.created_at,
        first_seen_at=now,
        last_seen_at=now,
        version=1,
        state=ItemState.NEW.value,
        stage=Stage.CLASSIFY.value,
        failures=0,
        updated_at=now,
    )


def _version_row(item_id: int, version: int, post: Post, now: datetime) -> t.ItemVersion:
    return t.ItemVersion(
        item_id=item_id,
        version=version,
        text=post.text,
        media=dumps([{"url": m.url, "type": m.type} for m in post.media]),
        raw=post.raw_json(),
        content_hash=content_hash(post),
        platform_updated_at=post.updated_at,
        fetched_at=now,
    )


def _add_version(session: AsyncSession, row: t.Item, post: Post, now: datetime) -> None:
    """An edit: keep the old version as evidence, classify the new one from the start."""
    row.version += 1
    session.add(_version_row(row.id, row.version, post, now))
    row.state, row.stage, row.updated_at = ItemState.NEW.value, Stage.CLASSIFY.value, now
    row.gone_at, row.failures, row.last_error = None, 0, None


async def mark_gone(
    session: AsyncSession, source: t.Source, gone: Sequence[str], now: datetime
) -> int:
    """Mark items that disappeared from the platform; they are kept, never deleted."""
    count = 0
    for start in range(0, len(gone), _CHUNK):
        rows = await session.scalars(
            select(t.Item).where(
                t.Item.school_id == source.school_id,
                t.Item.source_id == source.id,
                t.Item.external_id.in_(gone[start : start + _CHUNK]),
                t.Item.gone_at.is_(None),
            )
        )
        for row in rows:
            row.gone_at, row.updated_at = now, now
            add_audit(session, source.school_id, now, POLICY_ACTOR, "item_gone", "item", row.id, {})
            count += 1
    return count
