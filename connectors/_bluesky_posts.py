"""Bluesky post views → ``Post``: the mapping half of ``connectors.bluesky``.

Pure functions over the JSON the AppView returns (``app.bsky.feed.defs#postView``); no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from connectors.base import Media, PayloadInvalid, Post, SourceKind

__all__ = [
    "iso",
    "parse_time",
    "post_view_to_post",
    "rkey_of",
    "sort_at",
    "uri_of",
]


def post_view_to_post(view: Any, *, kind: SourceKind, account: str | None, now: datetime) -> Post:
    """An ``app.bsky.feed.defs#postView`` as a Post; raises PayloadInvalid if it is not one."""
    if not isinstance(view, dict) or not isinstance(view.get("record"), dict):
        raise PayloadInvalid("not a post view", json.dumps(view, default=str))
    uri = uri_of(view)
    parts = uri.removeprefix("at://").split("/")
    if not uri.startswith("at://") or len(parts) != 3 or parts[1] != "app.bsky.feed.post":
        raise PayloadInvalid("uri is not an at:// post uri", json.dumps(view, default=str))
    record, author = view["record"], view.get("author")
    author = author if isinstance(author, dict) else {}
    handle = author.get("handle") if isinstance(author.get("handle"), str) else None
    reply = record.get("reply") if isinstance(record.get("reply"), dict) else {}
    text = record.get("text")
    return Post(
        platform="bluesky",
        external_id=uri,
        text=text if isinstance(text, str) else "",
        created_at=parse_time(record.get("createdAt")) or parse_time(view.get("indexedAt")) or now,
        source_kind=kind,
        parent_id=_ref_uri(reply.get("parent")),
        thread_id=_ref_uri(reply.get("root")) or uri,
        author_id=str(author.get("did") or parts[0]),
        author_handle=handle,
        author_name=_text(author.get("displayName")),
        media=tuple(_media(view.get("embed"))),
        permalink=_permalink(handle, parts[0], parts[2]),
        account=account,
        raw=view,
    )


def _permalink(handle: str | None, did: str, rkey: str) -> str:
    who = handle if handle and handle != "handle.invalid" else did
    return f"https://bsky.app/profile/{who}/post/{rkey}"


def _media(embed: Any) -> Iterator[Media]:
    """Media references from an embed view; recordWithMedia recurses into its media."""
    if not isinstance(embed, dict):
        return
    kind = str(embed.get("$type") or "")
    if kind.startswith("app.bsky.embed.images"):
        for image in embed.get("images") or []:
            url = image.get("fullsize") or image.get("thumb") if isinstance(image, dict) else None
            if _is_http(url):
                yield Media(url=str(url), type="image")
    elif kind.startswith("app.bsky.embed.video") and _is_http(embed.get("playlist")):
        yield Media(url=str(embed["playlist"]), type="video")
    elif kind.startswith("app.bsky.embed.external"):
        external = embed.get("external")
        if isinstance(external, dict) and _is_http(external.get("uri")):
            yield Media(url=str(external["uri"]), type="link")
    elif kind.startswith("app.bsky.embed.recordWithMedia"):
        yield from _media(embed.get("media"))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _is_http(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("https://", "http://"))


def _ref_uri(ref: Any) -> str | None:
    uri = ref.get("uri") if isinstance(ref, dict) else None
    return uri if isinstance(uri, str) and uri else None


def uri_of(view: Any) -> str:
    uri = view.get("uri") if isinstance(view, dict) else None
    return uri if isinstance(uri, str) else ""


def rkey_of(uri: str) -> str:
    return uri.rsplit("/", 1)[-1]


def sort_at(view: Any) -> str:
    """The time the AppView sorts and filters by: the earlier of createdAt and indexedAt."""
    record = view.get("record") if isinstance(view, dict) else None
    created = parse_time(record.get("createdAt")) if isinstance(record, dict) else None
    indexed = parse_time(view.get("indexedAt")) if isinstance(view, dict) else None
    times = [t for t in (created, indexed) if t is not None]
    return iso(min(times)) if times else ""


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo is not None else None


def iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
