"""Instagram professional-account connector: the Instagram API with Facebook Login (Graph API).

Own sources read ``GET /{ig-user-id}/media`` and, for each watched media,
``GET /{ig-media-id}/comments`` with the replies of each comment expanded in the same call
(``replies{...}``; the comments edge itself returns top-level comments only). A media's text
is its caption. Mention sources read ``GET /{ig-user-id}/tags`` (media the account is tagged
in). @mentions in comments and captions can only be listed from the ``mentions`` webhook,
which a polling daemon does not receive; ``mentioned_comment`` / ``mentioned_media`` read one
such mention once its id is known. Instagram has no keyword search: ``search_terms`` are not
used.

Moderation: hide / unhide (``POST /{ig-comment-id}`` with ``hide``) and delete
(``DELETE /{ig-comment-id}``) of comments, and a public reply explaining a removal: under the
removed comment's top-level comment (``POST /{ig-comment-id}/replies``), or on the media when
the removed comment was top-level (``POST /{ig-media-id}/comments``); Instagram refuses replies
to hidden comments. There is no reporting or blocking API.
Docs (under https://developers.facebook.com/docs/instagram-platform/): the reference pages
``instagram-graph-api/reference/ig-user/media``, ``.../ig-media/comments``,
``.../ig-user/tags`` and ``.../ig-user/mentioned_comment``, and the comment moderation guide.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import partial
from typing import Any, ClassVar

from connectors.base import Media, PayloadInvalid, Post, SourceKind
from connectors.graph import (
    Entry,
    GraphConnector,
    mapping,
    next_after,
    optional_text,
    parse_time,
    require_id,
)

__all__ = ["InstagramConnector", "parse_comment", "parse_media"]

PLATFORM = "instagram"
MEDIA_FIELDS = (
    "id,caption,media_type,media_product_type,media_url,thumbnail_url,permalink,timestamp,"
    "username,comments_count"
)
TAG_FIELDS = "id,caption,media_type,media_url,thumbnail_url,permalink,timestamp,username"
_COMMENT = "id,text,timestamp,username,from,hidden,like_count,parent_id"
COMMENT_FIELDS = f"{_COMMENT},replies.limit(50){{{_COMMENT}}}"
_NUMERIC = re.compile(r"^[0-9]+$")

REPORT_HELP = (
    "Instagram has no reporting API. Report it in the app: on the comment tap '...' "
    "(or swipe left on it) then 'Report'; help: https://help.instagram.com/"
)
POST_HELP = (
    "Only comments can be hidden or deleted through the API. To stop comments on the "
    "account's own post, turn commenting off for it in the app; media that tags the account "
    "belongs to someone else: report it in the app ('...' then 'Report')."
)


class InstagramConnector(GraphConnector):
    """Instagram professional account: media and all comments and replies (own), or media the
    account is tagged in (mention).

    Options (``context.options``):
      ``ig_user_id``: the Instagram professional account id (default: the source's ``account``);
      ``graph_version``: Graph API version (default ``"v25.0"``);
      ``api_base``: default ``"https://graph.facebook.com"`` (tests: a loopback fake);
      ``watch_threads``: newest media whose comments are re-read each poll, 1-50 (default 10);
      ``page_size``: media per page for mention sources, 1-100 (default 25).
    Secrets (``context.secrets``): ``access_token`` (the Page access token of the Facebook
    Page linked to the account, required), ``app_secret`` (optional: ``appsecret_proof``).
    """

    name: ClassVar[str] = PLATFORM
    # 15 minutes: one poll costs 1 + watch_threads calls (11 by default, ~1,060 a day) against
    # the Instagram BUC limit of 4,800 calls x impressions per 24 hours.
    poll_interval: ClassVar[int] = 900
    id_option: ClassVar[str] = "ig_user_id"
    hide_field: ClassVar[str] = "hide"
    check_fields: ClassVar[str] = "id,username"
    comment_limit: ClassVar[int] = 50
    report_help: ClassVar[str] = REPORT_HELP
    post_help: ClassVar[str] = POST_HELP
    reply_limit: ClassVar[int] = 2200  # Instagram's comment length limit
    text_field: ClassVar[str] = "text"

    def listing_path(self) -> str:
        """``/{ig-user-id}/media`` for the account's media, ``/tags`` for mentions."""
        edge = "media" if self.kind is SourceKind.OWN else "tags"
        return f"{self.settings.object_id}/{edge}"

    def listing_fields(self) -> str:
        """Media fields; media URLs are kept as references, never downloaded."""
        return MEDIA_FIELDS if self.kind is SourceKind.OWN else TAG_FIELDS

    def parse_top(self, item: Any) -> Post:
        """One media object."""
        return parse_media(item, kind=self.kind, account=self.account)

    def thread_params(self) -> dict[str, str]:
        """Top-level comments with their replies expanded."""
        return {"fields": COMMENT_FIELDS}

    def thread_entries(self, items: Sequence[Any], thread: str, link: str | None) -> list[Entry]:
        """Each comment, then each of its replies, with its mapper."""
        parse = partial(
            parse_comment, thread=thread, link=link, kind=self.kind, account=self.account
        )
        entries: list[Entry] = []
        for item in items:
            entries.append((item, partial(parse, parent=thread)))
            comment_id = optional_text(item.get("id")) if isinstance(item, dict) else None
            for reply in _replies(item):
                entries.append((reply, partial(parse, parent=comment_id or thread)))
        return entries

    def complete(self, items: Sequence[Any]) -> bool:
        """False when some comment has more replies than the expansion returned."""
        return not any(next_after(mapping(item, "replies")) for item in items)

    def reply_edge(self, parent: str, thread: str | None) -> str:
        """A comment on the media (``POST /{ig-media-id}/comments``) when the removed comment
        was top-level, else a reply to its top-level comment (``POST /{ig-comment-id}/replies``;
        Instagram has one level of replies)."""
        return "comments" if parent == thread else "replies"

    async def mentioned_comment(self, comment_id: str) -> Post:
        """A comment that @mentions the account (its id comes from the ``mentions`` webhook)."""
        fields = f"mentioned_comment.comment_id({_numeric(comment_id)}){{{_COMMENT},media}}"
        body = await self.api.read(self.settings.object_id, {"fields": fields})
        item = body.get("mentioned_comment")
        if not isinstance(item, dict):
            raise PayloadInvalid("no mentioned_comment", json.dumps(body, default=str))
        media = mapping(item, "media")
        thread = optional_text(media.get("id")) or str(item.get("id"))
        return parse_comment(
            item,
            thread=thread,
            parent=thread,
            link=optional_text(media.get("permalink")),
            kind=SourceKind.MENTION,
            account=self.account,
        )

    async def mentioned_media(self, media_id: str) -> Post:
        """Media whose caption @mentions the account (id from the ``mentions`` webhook)."""
        fields = f"mentioned_media.media_id({_numeric(media_id)}){{{TAG_FIELDS}}}"
        body = await self.api.read(self.settings.object_id, {"fields": fields})
        item = body.get("mentioned_media")
        if not isinstance(item, dict):
            raise PayloadInvalid("no mentioned_media", json.dumps(body, default=str))
        return parse_media(item, kind=SourceKind.MENTION, account=self.account)


def parse_media(item: Any, *, kind: SourceKind, account: str | None) -> Post:
    """An IG Media object as a Post: the caption is its text, the media URL a reference."""
    external_id = require_id(item)
    url = optional_text(item.get("media_url")) or optional_text(item.get("thumbnail_url"))
    media_type = str(item.get("media_type") or "image").lower()
    return Post(
        platform=PLATFORM,
        external_id=external_id,
        text=optional_text(item.get("caption")) or "",
        created_at=parse_time(item["timestamp"]),
        source_kind=kind,
        thread_id=external_id,
        author_id=optional_text(mapping(item, "owner").get("id")),
        author_handle=optional_text(item.get("username")),
        media=(Media(url=url, type=media_type),) if url else (),
        permalink=optional_text(item.get("permalink")),
        account=account,
        raw=item,
    )


def parse_comment(
    item: Any, *, thread: str, parent: str, link: str | None, kind: SourceKind, account: str | None
) -> Post:
    """An IG Comment as a Post. Comments have no permalink: the media's is used."""
    author = mapping(item, "from")
    return Post(
        platform=PLATFORM,
        external_id=require_id(item),
        text=optional_text(item.get("text")) or "",
        created_at=parse_time(item["timestamp"]),
        source_kind=kind,
        parent_id=optional_text(item.get("parent_id")) or parent,
        thread_id=thread,
        author_id=optional_text(author.get("id")),
        author_handle=optional_text(item.get("username")) or optional_text(author.get("username")),
        permalink=link,
        account=account,
        raw=item,
    )


def _replies(item: Any) -> list[Any]:
    data = mapping(item, "replies").get("data")
    return data if isinstance(data, list) else []


def _numeric(value: str) -> str:
    if not _NUMERIC.match(value):
        raise ValueError(f"not an Instagram id: {value!r}")
    return value
