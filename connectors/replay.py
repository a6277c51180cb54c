"""Replay connector: plays recorded posts from a JSONL file as if from a platform.

Used by the demo and the tests. Each line is one event, in order:

* ``{"op": "post", "platform": ..., "external_id": ..., "text": ..., "created_at": ..., ...}``
* ``{"op": "edit", "platform": ..., "external_id": ..., "text": ..., "updated_at": ...}``
* ``{"op": "delete", "platform": ..., "external_id": ...}`` — the author removed it

The cursor is the number of lines already delivered; each fetch returns one page of
``page_size`` lines. With ``respect_times = true`` an event is delivered only once the clock
has reached its ``at`` time, so a replay can play weeks of posts in simulated time.
A line that cannot be parsed is returned as a ``Reject`` (the pipeline
quarantines it) and replay carries on. Moderation calls are simulated: they succeed and are
appended to ``moderation_log`` (a JSONL file) when one is configured.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from connectors.base import (
    Batch,
    Capability,
    Cursor,
    Media,
    ModerationResult,
    ModerationTarget,
    PayloadInvalid,
    Post,
    Reject,
    SourceContext,
    SourceKind,
)

__all__ = ["ReplayConnector", "parse_event_post"]

_OPS = ("post", "edit", "delete")


class ReplayConnector:
    """Plays a recorded JSONL file, ``max_items_per_poll`` events per fetch."""

    name: ClassVar[str] = "replay"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.HIDE, Capability.UNHIDE, Capability.DELETE, Capability.REPORT}
    )

    def __init__(
        self,
        *,
        path: Path,
        page_size: int,
        kind: SourceKind,
        moderation_log: Path | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.path = path
        self.page_size = page_size
        self.clock = clock  # when set, events are delivered only once their ``at`` has passed
        self.kind = kind
        self.moderation_log = moderation_log

    @classmethod
    def from_context(cls, context: SourceContext) -> ReplayConnector:
        """Options: ``path`` (required), ``page_size``, ``moderation_log``, ``respect_times``."""
        path = context.options.get("path")
        if not isinstance(path, str) or not path:
            raise ValueError("options.path: the JSONL file to replay is required")
        page_size = context.options.get("page_size", 100)
        if not isinstance(page_size, int) or page_size < 1:
            raise ValueError("options.page_size: must be a whole number of at least 1")
        log = context.options.get("moderation_log")
        return cls(
            path=Path(path),
            page_size=page_size,
            kind=context.kind,
            moderation_log=Path(log) if isinstance(log, str) and log else None,
            clock=context.clock if context.options.get("respect_times") else None,
        )

    async def check(self) -> None:
        """The file must exist and be readable."""
        await asyncio.to_thread(self._lines)

    async def aclose(self) -> None:
        """Nothing to release."""

    async def fetch(self, cursor: Cursor) -> Batch:
        """The next page of events after ``cursor``."""
        return await asyncio.to_thread(self._fetch, int(cursor.value or 0))

    def _lines(self) -> list[str]:
        text = self.path.read_text(encoding="utf-8")
        return [line for line in text.splitlines() if line.strip()]

    def _fetch(self, offset: int) -> Batch:
        lines = self._lines()
        known: dict[tuple[str, str], Post] = {}
        for number, line in enumerate(lines[:offset], start=1):
            self._replay(line, number, known)
        posts: dict[tuple[str, str], Post | None] = {}
        rejects: list[Reject] = []
        end = offset
        now = self.clock() if self.clock else None
        for number in range(offset + 1, min(len(lines), offset + self.page_size) + 1):
            if now is not None and _not_yet(lines[number - 1], now):
                break
            try:
                key, post = self._replay(lines[number - 1], number, known)
            except PayloadInvalid as err:
                rejects.append(Reject(error=str(err), payload=err.payload))
                end = number
                continue
            if key in posts:  # a second event for one post ends the page, so each edit is a version
                break
            posts[key], end = post, number
        return Batch(
            posts=tuple(p for p in posts.values() if p is not None),
            gone=tuple(key[1] for key, p in posts.items() if p is None),
            cursor=Cursor(value=str(end)),
            rejects=tuple(rejects),
            exhausted=end >= len(lines),
        )

    def _replay(
        self, line: str, number: int, known: dict[tuple[str, str], Post]
    ) -> tuple[tuple[str, str], Post | None]:
        """Apply one line to ``known``; returns the post's key and its state after the line."""
        event = _parse_line(line, number)
        key = (str(event["platform"]), str(event["external_id"]))
        post = self._apply(event, known.get(key), number)
        if post is None:
            known.pop(key, None)
        else:
            known[key] = post
        return key, post

    def _apply(self, event: Mapping[str, Any], previous: Post | None, number: int) -> Post | None:
        op = event.get("op")
        if op == "post":
            return parse_event_post(event, self.kind, number)
        if previous is None:
            raise PayloadInvalid(
                f"line {number}: {op} of a post not seen before", json.dumps(event)
            )
        if op == "delete":
            return None
        updated = _time(event, "updated_at", number)
        raw = {**previous.raw, "text": event.get("text", ""), "updated_at": event.get("updated_at")}
        return replace(previous, text=str(event.get("text", "")), updated_at=updated, raw=raw)

    async def moderate(self, capability: Capability, post: ModerationTarget) -> ModerationResult:
        """Simulate a moderation call; record it in the moderation log."""
        if self.moderation_log is not None:
            await asyncio.to_thread(self._log, capability, post)
        return ModerationResult(
            supported=True, done=True, detail=f"replay: {capability.value} recorded"
        )

    def _log(self, capability: Capability, post: ModerationTarget) -> None:
        assert self.moderation_log is not None
        self.moderation_log.parent.mkdir(parents=True, exist_ok=True)
        entry = {
            "call": capability.value,
            "platform": post.platform,
            "external_id": post.external_id,
        }
        with self.moderation_log.open("a", encoding="utf-8") as log:
            log.write(json.dumps(entry, sort_keys=True) + "\n")


def _not_yet(line: str, now: datetime) -> bool:
    """True when the event on ``line`` happens after ``now`` (malformed lines are not held back)."""
    try:
        at = _time(_parse_line(line, 0), "at", 0)
    except PayloadInvalid:
        return False
    return at is not None and at > now


def _parse_line(line: str, number: int) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except json.JSONDecodeError as err:
        raise PayloadInvalid(f"line {number}: not JSON: {err.msg}", line) from err
    if not isinstance(event, dict) or event.get("op") not in _OPS:
        raise PayloadInvalid(f"line {number}: op must be one of {', '.join(_OPS)}", line)
    if not event.get("platform") or not event.get("external_id"):
        raise PayloadInvalid(f"line {number}: platform and external_id are required", line)
    return event


def _time(event: Mapping[str, Any], key: str, number: int) -> datetime | None:
    value = event.get(key)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as err:
        raise PayloadInvalid(
            f"line {number}: {key} is not an ISO 8601 time", json.dumps(event)
        ) from err
    if parsed.tzinfo is None:
        raise PayloadInvalid(f"line {number}: {key} has no time zone", json.dumps(event))
    return parsed


def parse_event_post(event: Mapping[str, Any], default_kind: SourceKind, number: int = 0) -> Post:
    """Build a Post from a recorded ``post`` event."""
    created = _time(event, "created_at", number) or _time(event, "at", number)
    if created is None:
        raise PayloadInvalid(f"line {number}: created_at is required", json.dumps(event))
    media = tuple(
        Media(url=str(m.get("url", "")), type=str(m.get("type", "link")))
        for m in event.get("media") or ()
        if isinstance(m, Mapping)
    )
    source = event.get("source")
    return Post(
        platform=str(event["platform"]),
        external_id=str(event["external_id"]),
        text=str(event.get("text") or ""),
        created_at=created,
        source_kind=SourceKind(source) if source in ("own", "mention") else default_kind,
        parent_id=_opt(event, "parent_id"),
        thread_id=_opt(event, "thread_id"),
        author_id=_opt(event, "author_id"),
        author_handle=_opt(event, "author_handle"),
        author_name=_opt(event, "author_name"),
        media=media,
        permalink=_opt(event, "permalink"),
        updated_at=_time(event, "updated_at", number),
        account=_opt(event, "account"),
        raw=dict(event),
    )


def _opt(event: Mapping[str, Any], key: str) -> str | None:
    value = event.get(key)
    return None if value is None else str(value)
