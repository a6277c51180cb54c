"""Facebook Pages connector: the Graph API over httpx (never the dead ``facebook-sdk``).

Own sources read ``GET /{page-id}/feed`` (the Page's posts and visitor posts) and, for each
watched post, ``GET /{post-id}/comments?filter=stream&order=chronological`` (every comment and
reply, flattened, each reply naming its ``parent``). Mention sources read
``GET /{page-id}/tagged`` (public posts that tag the Page): Facebook has no public keyword
search, so ``search_terms`` are not used here (the RSS / Google Alerts connector covers "the
school's name anywhere").

Moderation: hide / unhide (``POST /{comment-id}`` with ``is_hidden``) and delete
(``DELETE /{comment-id}``) of comments, and a public reply explaining a removal
(``POST /{parent-id}/comments`` with ``message``, under the removed comment's parent: the post,
or the comment it answered; needs ``pages_manage_engagement``). There is no reporting API.
Docs: https://developers.facebook.com/docs/graph-api/reference/page/feed ,
https://developers.facebook.com/docs/graph-api/reference/object/comments ,
https://developers.facebook.com/docs/graph-api/reference/comment/ .
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, ClassVar

from connectors.base import Media, Post, SourceKind
from connectors.graph import (
    Entry,
    GraphConnector,
    mapping,
    optional_text,
    parse_time,
    require_id,
)

__all__ = ["FacebookConnector", "parse_comment", "parse_post"]

PLATFORM = "facebook"
_ATTACHMENT = "attachments{media_type,type,url,media,subattachments}"
POST_FIELDS = f"id,message,created_time,updated_time,permalink_url,from,status_type,{_ATTACHMENT}"
COMMENT_FIELDS = "id,message,created_time,from,parent,permalink_url,is_hidden,attachment"
_MEDIA_TYPES = {"photo": "image", "album": "album", "video": "video", "share": "link"}

REPORT_HELP = (
    "Facebook has no reporting API. Report it on the web: open the comment's permalink, "
    "choose '...' then 'Report comment' (Page moderation tools), or use "
    "https://www.facebook.com/help/reportlinks"
)
POST_HELP = (
    "Only comments can be hidden or deleted through the Graph API. Remove a post on the "
    "Page in Meta Business Suite (or on the post: '...' then 'Delete' / 'Hide from Page'); "
    "a post that tags the Page lives on someone else's profile or Page: report it there."
)


class FacebookConnector(GraphConnector):
    """Facebook Page: posts and all their comments (own), or posts tagging the Page (mention).

    Options (``context.options``):
      ``page_id``: the Page id (default: the source's ``account``);
      ``graph_version``: Graph API version (default ``"v25.0"``);
      ``api_base``: default ``"https://graph.facebook.com"`` (tests: a loopback fake);
      ``watch_threads``: newest posts whose comments are re-read each poll, 1-50 (default 10);
      ``page_size``: posts per page for mention sources, 1-100 (default 25).
    Secrets (``context.secrets``): ``access_token`` (a Page access token, required),
    ``app_secret`` (optional: adds ``appsecret_proof`` to every call).
    """

    name: ClassVar[str] = PLATFORM
    # 15 minutes: one poll costs 1 + watch_threads calls (11 by default, ~1,060 a day), far
    # inside the Pages BUC limit of 4,800 calls x engaged users per 24 hours.
    poll_interval: ClassVar[int] = 900
    id_option: ClassVar[str] = "page_id"
    hide_field: ClassVar[str] = "is_hidden"
    check_fields: ClassVar[str] = "id,name"
    comment_limit: ClassVar[int] = 100
    report_help: ClassVar[str] = REPORT_HELP
    post_help: ClassVar[str] = POST_HELP

    def listing_path(self) -> str:
        """``/{page-id}/feed`` for the Page's own posts, ``/tagged`` for mentions."""
        edge = "feed" if self.kind is SourceKind.OWN else "tagged"
        return f"{self.settings.object_id}/{edge}"

    def listing_fields(self) -> str:
        """Post fields, attachments as references only."""
        return POST_FIELDS

    def parse_top(self, item: Any) -> Post:
        """A feed or tagged post."""
        return parse_post(item, kind=self.kind, account=self.account)

    def thread_params(self) -> dict[str, str]:
        """All comments and replies, flattened, oldest first."""
        return {"filter": "stream", "order": "chronological", "fields": COMMENT_FIELDS}

    def reply_read_params(self) -> dict[str, str]:
        """Newest first, so a reply already posted is on the first page."""
        return {"order": "reverse_chronological"}

    def thread_entries(self, items: Sequence[Any], thread: str, link: str | None) -> list[Entry]:
        """Each comment with its mapper (replies arrive flattened, naming their parent)."""
        parse = partial(parse_comment, thread=thread, kind=self.kind, account=self.account)
        return [(item, parse) for item in items]


def parse_post(item: Any, *, kind: SourceKind, account: str | None) -> Post:
    """A Graph API Post object as a Post (``message`` may be absent on photo-only posts)."""
    external_id = require_id(item)
    author = mapping(item, "from")
    updated = item.get("updated_time")
    return Post(
        platform=PLATFORM,
        external_id=external_id,
        text=optional_text(item.get("message")) or "",
        created_at=parse_time(item["created_time"]),
        updated_at=parse_time(updated) if updated is not None else None,
        source_kind=kind,
        thread_id=external_id,
        author_id=optional_text(author.get("id")),
        author_name=optional_text(author.get("name")),
        media=tuple(m for a in _list(mapping(item, "attachments")) for m in _media(a)),
        permalink=optional_text(item.get("permalink_url")),
        account=account,
        raw=item,
    )


def parse_comment(item: Any, *, thread: str, kind: SourceKind, account: str | None) -> Post:
    """A Graph API Comment as a Post: a reply's parent is its ``parent`` comment, else the post."""
    author = mapping(item, "from")
    attachment = item.get("attachment") if isinstance(item, dict) else None
    return Post(
        platform=PLATFORM,
        external_id=require_id(item),
        text=optional_text(item.get("message")) or "",
        created_at=parse_time(item["created_time"]),
        source_kind=kind,
        parent_id=optional_text(mapping(item, "parent").get("id")) or thread,
        thread_id=thread,
        author_id=optional_text(author.get("id")),
        author_name=optional_text(author.get("name")),
        media=tuple(_media(attachment)) if isinstance(attachment, dict) else (),
        permalink=optional_text(item.get("permalink_url")),
        account=account,
        raw=item,
    )


def _media(attachment: Any) -> list[Media]:
    """Media references from one attachment and its sub-attachments (albums)."""
    if not isinstance(attachment, dict):
        return []
    media, image = mapping(attachment, "media"), mapping(mapping(attachment, "media"), "image")
    url = (
        optional_text(media.get("source"))
        or optional_text(image.get("src"))
        or optional_text(attachment.get("url"))
    )
    kind = str(attachment.get("media_type") or attachment.get("type") or "link")
    found = [Media(url=url, type=_MEDIA_TYPES.get(kind, kind))] if url else []
    for sub in _list(mapping(attachment, "subattachments")):
        found += _media(sub)
    return found


def _list(edge: Mapping[str, Any]) -> list[Any]:
    data = edge.get("data")
    return data if isinstance(data, list) else []
