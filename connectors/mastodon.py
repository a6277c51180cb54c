"""Mastodon connector: hashtag timelines and search for mentions, the school's own statuses
and every reply in their threads for own-account sources, and reports to the instance.

Options (``context.options``):

* ``instance`` (required): the instance's base URL, e.g. ``https://mastodon.social``.
* ``api_base``: where the API is called; default ``instance`` (tests and the fake server
  point it at loopback). Plain ``http://`` is accepted for loopback hosts only.
* ``hashtags``: mention sources; hashtags to follow (without ``#``). Default: each search term
  with everything but letters, digits and ``_`` removed ("Example Academy" → ``ExampleAcademy``).
* ``search``: mention sources; also run ``GET /api/v2/search`` for each search term. Default
  true. Full-text status search only finds posts whose authors opted in to search (Mastodon
  4.2+) or that the token's account interacted with, and only on instances running
  Elasticsearch/OpenSearch: coverage is partial and instance-dependent.
* ``account_id`` (required for own sources): the school's numeric account id on ``instance``.
* ``watch_threads``: own sources; how many of the newest own statuses have their replies
  re-read every poll (edits and deletions). Default 20, at most 50.
* ``page_size``: statuses per request, 1–40. Default 40.
* ``first_poll_pages``: pages read back in time per stream on the very first poll. Default 2.
* ``report_category``: ``other`` (default), ``spam`` or ``violation``;
  ``report_rule_ids`` (list of the instance's rule ids) is required with ``violation``.
* ``report_comment``: the comment sent with a report (at most 1000 characters).

Secrets (``context.secrets``): ``access_token`` (required): an app token with scopes ``read``
and ``write:reports``.

Moderation: ``report`` only (``POST /api/v1/reports``, forward=false). Mastodon cannot hide or
delete other people's replies; blocking or muting an account is left to a human.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlsplit

import httpx

from connectors.base import (
    AuthFailed,
    Batch,
    Capability,
    ConnectorError,
    ConnectorUnavailable,
    Cursor,
    Media,
    ModerationResult,
    ModerationTarget,
    PayloadInvalid,
    Post,
    RateLimited,
    Reject,
    SourceContext,
    SourceKind,
)
from connectors.http import HttpClient, HttpOptions, Response, retry_after_seconds
from connectors.state import (
    MAX_WATCHED_THREADS,
    prune_threads,
    read_state,
    track_thread,
    write_state,
)
from connectors.text import html_to_text as to_text

__all__ = ["MastodonConnector", "html_to_text", "status_to_post"]

PLATFORM = "mastodon"
MAX_PAGE = 40  # Mastodon's maximum `limit` for timelines and search
RATE_LIMIT_WAIT = 300.0  # the documented window is 300 requests per 5 minutes
REPORT_CATEGORIES = ("other", "spam", "violation")
DEFAULT_COMMENT = (
    "Reported by a UK school's safeguarding team (Vigil): this post targets pupils or staff."
)
_CREDENTIAL = "credentials.{0}: required (give {0}_env, {0}_file or {0}_credential)"
_NOT_SUPPORTED = (
    "Mastodon has no way to hide or delete other people's posts or replies. A person can block "
    "or mute the account, or report the post from its ⋯ menu on the web (Report)."
)


@dataclass(frozen=True, kw_only=True)
class _Stream:
    """One listing we page through: a hashtag timeline, a search, or the school's statuses."""

    key: str
    path: str
    params: Mapping[str, str]
    since_param: str = "since_id"  # search takes min_id, a plain lower bound there
    items_key: str | None = None  # search wraps its statuses in {"statuses": [...]}


@dataclass(frozen=True, kw_only=True)
class _Settings:
    instance: str
    api_base: str
    token: str
    account_id: str
    streams: tuple[_Stream, ...]
    page_size: int
    first_poll_pages: int
    watch_threads: int
    report_category: str
    report_rule_ids: tuple[str, ...]
    report_comment: str


class _NotFound(ConnectorUnavailable):
    """HTTP 404: the status (or thread) no longer exists."""


class MastodonConnector:
    """Reads one Mastodon source (own account or mentions) through the instance's REST API."""

    name: ClassVar[str] = PLATFORM
    # A 15-minute poll of an own source makes 1 + watch_threads (≤ 51) calls, well inside
    # the 300-requests-per-5-minutes limit even for several sources on one token.
    poll_interval: ClassVar[int] = 900
    rate_limit: ClassVar[str] = "300 requests / 5 minutes per account"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.REPORT})

    def __init__(self, settings: _Settings, context: SourceContext) -> None:
        self._s = settings
        self._kind = context.kind
        self._clock = context.clock
        self._account = context.account or settings.account_id or _host(settings.instance)
        self._http = HttpClient(
            HttpOptions(base_url=settings.api_base),
            transport=context.transport,
            headers={"Authorization": f"Bearer {settings.token}"},
            error_mapper=self._error,
            sleep=context.sleep,
        )

    @classmethod
    def from_context(cls, context: SourceContext) -> Self:
        """Validate options and secrets (see the module docstring) and build the connector."""
        return cls(_settings(context), context)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    async def check(self) -> None:
        """One authenticated call: the token's own account."""
        response = await self._http.get("/api/v1/accounts/verify_credentials")
        if not isinstance(response.body, dict) or "id" not in response.body:
            raise PayloadInvalid("verify_credentials: not an Account", response.text)

    async def fetch(self, cursor: Cursor) -> Batch:
        """One page: of a mention stream, of the school's statuses, or of one watched thread."""
        state = read_state(cursor)
        if self._kind is SourceKind.OWN:
            return await self._fetch_own(state)
        return await self._fetch_mentions(state)

    # -- mentions -------------------------------------------------------------------------

    async def _fetch_mentions(self, state: dict[str, Any]) -> Batch:
        streams = self._s.streams
        keys = {s.key for s in streams}
        saved = state.get("streams")
        positions = {k: v for k, v in _dict(saved).items() if k in keys and isinstance(v, dict)}
        at = _index(state.get("at"), len(streams))
        while True:  # an empty stream costs one call; go on to the next rather than stop
            stream = streams[at]
            items, positions[stream.key] = await self._read_page(
                stream, positions.get(stream.key, {})
            )
            at += 0 if "max" in positions[stream.key] else 1
            done = at >= len(streams)
            if items or done:
                break
        posts, rejects = self._map(items)
        cursor = write_state({"streams": positions, "at": 0 if done else at})
        return Batch(posts=tuple(posts), rejects=tuple(rejects), cursor=cursor, exhausted=done)

    async def _read_page(
        self, stream: _Stream, position: dict[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """Newest first down to the saved ``since`` id, following Link rel="next" (max_id)."""
        params = {**stream.params, "limit": str(self._s.page_size)}
        if position.get("since"):
            params[stream.since_param] = str(position["since"])
        if position.get("max"):
            params["max_id"] = str(position["max"])
        response = await self._http.get(stream.path, params=params)
        items = _items(response, stream.items_key)
        return items, self._advance(position, items, _next_max_id(response, items))

    def _advance(
        self, position: Mapping[str, Any], items: Sequence[Any], next_max: str | None
    ) -> dict[str, Any]:
        ids = [i for i in map(_item_id, items) if i]
        top = _newest(position.get("top"), *ids)
        pages = int(position.get("n") or 0) + 1
        since = position.get("since")
        more = len(items) >= self._s.page_size and next_max is not None
        if more and (since or pages < self._s.first_poll_pages):
            kept = {"since": since, "top": top, "max": next_max, "n": pages}
            return {k: v for k, v in kept.items() if v}
        newest = _newest(since, top)
        return {"since": newest} if newest else {}

    # -- own account ----------------------------------------------------------------------

    async def _fetch_own(self, state: dict[str, Any]) -> Batch:
        own = _dict(state.get("own"))
        threads = [str(t) for t in state.get("threads") or () if isinstance(t, str | int)]
        watched = {k: list(v) for k, v in _dict(state.get("watched")).items()}
        at = _index(state.get("at"), len(threads) + 1)
        posts: list[Post] = []
        rejects: list[Reject] = []
        gone: list[str] = []
        while not (posts or rejects or gone):
            if at == 0:
                items, own = await self._read_page(self._s.streams[0], own)
                threads = _merge_threads(threads, items, self._s.watch_threads)
                posts, rejects = self._map(items, roots=True)
                at += 0 if "max" in own else 1
            else:
                posts, rejects, gone, alive = await self._read_thread(threads[at - 1], watched)
                at, threads = (at + 1, threads) if alive else (at, _without(threads, at - 1))
            if at > len(threads):
                break
        done = at > len(threads)
        state = {"own": own, "threads": threads, "at": 0 if done else at}
        state["watched"] = prune_threads(watched, threads)
        return Batch(
            posts=tuple(posts),
            rejects=tuple(rejects),
            gone=tuple(gone),
            cursor=write_state(state),
            exhausted=done,
        )

    async def _read_thread(
        self, thread_id: str, watched: dict[str, list[str]]
    ) -> tuple[list[Post], list[Reject], list[str], bool]:
        """Every reply (nested too) under one own status; ids seen before but missing are gone."""
        try:
            response = await self._http.get(f"/api/v1/statuses/{thread_id}/context")
        except _NotFound:  # the school deleted the status: the whole thread is gone from view
            return [], [], [thread_id, *watched.pop(thread_id, [])], False
        body = response.body
        if not isinstance(body, dict) or not isinstance(body.get("descendants"), list):
            raise PayloadInvalid(f"{response.path}: not a Context", response.text)
        items = body["descendants"]
        posts, rejects = self._map(items, thread_id=thread_id)
        seen = [i for i in map(_item_id, items) if i]
        return posts, rejects, track_thread(watched, thread_id, seen), True

    # -- mapping --------------------------------------------------------------------------

    def _map(
        self, items: Sequence[Any], *, thread_id: str | None = None, roots: bool = False
    ) -> tuple[list[Post], list[Reject]]:
        posts: list[Post] = []
        rejects: list[Reject] = []
        for item in items:
            try:
                thread = _item_id(item) if roots else thread_id
                posts.append(status_to_post(item, self._kind, self._account, thread))
            except (KeyError, TypeError, ValueError, AttributeError) as err:
                rejects.append(Reject(error=f"mastodon status: {err!r}", payload=_dump(item)))
        return posts, rejects

    # -- moderation -----------------------------------------------------------------------

    async def moderate(self, capability: Capability, post: ModerationTarget) -> ModerationResult:
        """Report a status to the instance's moderators; nothing else is possible here."""
        if capability is not Capability.REPORT:
            return ModerationResult(supported=False, done=False, detail=_NOT_SUPPORTED)
        try:
            status = await self._http.get(f"/api/v1/statuses/{post.external_id}")
        except _NotFound:
            return ModerationResult(
                supported=False,
                done=False,
                detail=f"status {post.external_id} no longer exists on {self._s.instance}; "
                "if it was reposted, report the copy from its ⋯ menu on the web",
            )
        author = status.body.get("account") if isinstance(status.body, dict) else None
        if not isinstance(author, dict) or not author.get("id"):
            raise PayloadInvalid(f"{status.path}: status without an account", status.text)
        response = await self._http.request(
            "POST", "/api/v1/reports", json_body=self._report_body(str(author["id"]), post)
        )
        report_id = response.body.get("id") if isinstance(response.body, dict) else None
        if report_id is None:
            raise PayloadInvalid(f"{response.path}: not a Report", response.text)
        return ModerationResult(
            supported=True, done=True, detail=f"Mastodon report {report_id} filed"
        )

    def _report_body(self, account_id: str, post: ModerationTarget) -> dict[str, Any]:
        body: dict[str, Any] = {
            "account_id": account_id,
            "status_ids": [post.external_id],
            "comment": self._s.report_comment,
            "category": self._s.report_category,
            "forward": False,
        }
        if self._s.report_category == "violation":
            body["rule_ids"] = list(self._s.report_rule_ids)
        return body

    # -- errors ---------------------------------------------------------------------------

    def _error(self, response: Response) -> ConnectorError | None:
        where = f"{response.path}: HTTP {response.status}"
        if response.status == 429:
            return RateLimited(self._reset_wait(response.headers), where)
        if response.status in (401, 403):
            return AuthFailed(f"{where}: {_error_text(response.body)}")
        if response.status == 404:
            return _NotFound(where)
        return None

    def _reset_wait(self, headers: httpx.Headers) -> float:
        """Seconds until X-RateLimit-Reset (an ISO 8601 time on Mastodon, not epoch seconds)."""
        reset = headers.get("x-ratelimit-reset")
        if reset:
            try:
                when = datetime.fromisoformat(reset.replace("Z", "+00:00"))
            except ValueError:
                when = None
            if when is not None and when.tzinfo is not None:
                return max((when - self._clock()).total_seconds(), 1.0)
        wait = retry_after_seconds(headers.get("retry-after"))
        return wait if wait is not None else RATE_LIMIT_WAIT


# -- mapping a status ---------------------------------------------------------------------


def status_to_post(
    item: Mapping[str, Any],
    kind: SourceKind,
    account: str | None = None,
    thread_id: str | None = None,
) -> Post:
    """Normalise one Mastodon Status entity (a boost maps to the boosted status)."""
    reblog = item.get("reblog")
    status: Mapping[str, Any] = reblog if isinstance(reblog, Mapping) else item
    author = status.get("account") or {}
    if not isinstance(author, Mapping):
        raise TypeError("account is not an object")
    edited = status.get("edited_at")
    return Post(
        platform=PLATFORM,
        external_id=_required_id(status),
        text=_status_text(status),
        created_at=_time(status["created_at"]),
        updated_at=_time(edited) if edited else None,
        source_kind=kind,
        parent_id=_opt(status.get("in_reply_to_id")),
        thread_id=thread_id,
        author_id=_opt(author.get("id")),
        author_handle=_opt(author.get("acct")),
        author_name=_opt(author.get("display_name")) or None,
        media=_media(status.get("media_attachments")),
        permalink=_opt(status.get("url")) or _opt(status.get("uri")),
        account=account,
        raw=dict(item),
    )


def _status_text(status: Mapping[str, Any]) -> str:
    """Content warning first, then the body as plain text, then any poll options."""
    parts = [str(status.get("spoiler_text") or "").strip(), html_to_text(status.get("content"))]
    poll = status.get("poll")
    if isinstance(poll, Mapping):
        parts += [str(o.get("title", "")) for o in poll.get("options") or () if isinstance(o, dict)]
    return "\n\n".join(p for p in parts if p)


def _media(attachments: Any) -> tuple[Media, ...]:
    media: list[Media] = []
    for attachment in attachments or ():
        if not isinstance(attachment, Mapping):
            raise TypeError("media attachment is not an object")
        url = attachment.get("url") or attachment.get("remote_url") or attachment.get("preview_url")
        if url:
            media.append(Media(url=str(url), type=str(attachment.get("type") or "unknown")))
    return tuple(media)


def html_to_text(markup: Any) -> str:
    """Plain text from a status's HTML ``content`` (never rendered; entities decoded once)."""
    return to_text(str(markup)) if markup else ""


# -- small helpers ------------------------------------------------------------------------


def _items(response: Response, key: str | None) -> list[Any]:
    body = response.body
    if key is not None:
        body = body.get(key) if isinstance(body, dict) else None
    if not isinstance(body, list):
        raise PayloadInvalid(f"{response.path}: expected a list of statuses", response.text)
    return body


_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?([^";]+)"?')


def _next_max_id(response: Response, items: Sequence[Any]) -> str | None:
    """max_id from the Link header's rel="next"; without a Link header, the oldest id seen."""
    link = response.headers.get("link")
    if link is not None:
        for url, rel in _LINK.findall(link):
            if "next" in rel.split():
                found = parse_qs(urlsplit(url).query).get("max_id")
                return found[0] if found else None
        return None
    ids = [i for i in map(_item_id, items) if i]
    return min(ids, key=_id_order) if ids else None


def _item_id(item: Any) -> str | None:
    value = item.get("id") if isinstance(item, dict) else None
    return str(value) if isinstance(value, str | int) and str(value) else None


def _required_id(status: Mapping[str, Any]) -> str:
    value = _item_id(dict(status))
    if value is None:
        raise ValueError("status has no id")
    return value


def _id_order(value: str) -> tuple[int, str]:
    """Mastodon ids are numeric strings (snowflakes): order by length, then digits."""
    return (len(value), value)


def _newest(*ids: Any) -> str | None:
    present = [str(i) for i in ids if i]
    return max(present, key=_id_order) if present else None


def _merge_threads(threads: list[str], items: Sequence[Any], keep: int) -> list[str]:
    ids = {*threads, *(i for i in map(_item_id, items) if i)}
    return sorted(ids, key=_id_order, reverse=True)[:keep]


def _without(threads: list[str], index: int) -> list[str]:
    return threads[:index] + threads[index + 1 :]


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"time is not a string: {value!r}")
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _opt(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _index(value: Any, size: int) -> int:
    return value if isinstance(value, int) and 0 <= value < size else 0


def _dump(item: Any) -> str:
    return json.dumps(item, ensure_ascii=False, default=str)


def _error_text(body: Any) -> str:
    if isinstance(body, dict) and body.get("error"):
        return str(body["error"])[:200]
    return "credentials rejected"


def _host(url: str) -> str:
    return urlsplit(url).hostname or url


# -- options ------------------------------------------------------------------------------


def _settings(context: SourceContext) -> _Settings:
    options = context.options
    instance = _base_url(options.get("instance"), "instance")
    token = context.secrets.get("access_token")
    if not token:
        raise ValueError(_CREDENTIAL.format("access_token"))
    account_id = _account_id(context)
    category, rule_ids = _report_category(options)
    return _Settings(
        instance=instance,
        api_base=_base_url(options.get("api_base", instance), "api_base"),
        token=token,
        account_id=account_id,
        streams=_streams(context, account_id),
        page_size=_int(options, "page_size", 40, 1, MAX_PAGE),
        first_poll_pages=_int(options, "first_poll_pages", 2, 1, 100),
        watch_threads=_int(options, "watch_threads", 20, 0, MAX_WATCHED_THREADS),
        report_category=category,
        report_rule_ids=rule_ids,
        report_comment=_comment(options),
    )


def _base_url(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"options.{key}: required, the instance's base URL (https://...)")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"options.{key}: must be an https:// URL, got {value!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError(f"options.{key}: plain http is only allowed for loopback hosts")
    return value.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _account_id(context: SourceContext) -> str:
    value = context.options.get("account_id")
    if value is None or value == "":
        if context.kind is SourceKind.OWN:
            raise ValueError("options.account_id: required for own-account sources")
        return ""
    if not str(value).isdigit():
        raise ValueError(f"options.account_id: must be the numeric account id, got {value!r}")
    return str(value)


def _streams(context: SourceContext, account_id: str) -> tuple[_Stream, ...]:
    if context.kind is SourceKind.OWN:
        path = f"/api/v1/accounts/{account_id}/statuses"
        return (_Stream(key="own", path=path, params={"exclude_reblogs": "true"}),)
    streams = [
        _Stream(key=f"tag:{tag}", path=f"/api/v1/timelines/tag/{tag}", params={})
        for tag in _hashtags(context)
    ]
    search = context.options.get("search", True)
    if not isinstance(search, bool):
        raise ValueError("options.search: must be true or false")
    if search:
        streams += [_search_stream(term) for term in context.search_terms if term.strip()]
    if not streams:
        raise ValueError("options.hashtags: nothing to follow (no hashtags, no search terms)")
    return tuple(streams)


def _search_stream(term: str) -> _Stream:
    params = {"q": term.strip(), "type": "statuses", "resolve": "false"}
    return _Stream(
        key=f"search:{term.strip()}",
        path="/api/v2/search",
        params=params,
        since_param="min_id",
        items_key="statuses",
    )


def _hashtags(context: SourceContext) -> list[str]:
    value = context.options.get("hashtags")
    if value is None:
        value = list(context.search_terms)
    if not isinstance(value, list | tuple) or not all(isinstance(t, str) for t in value):
        raise ValueError("options.hashtags: must be a list of hashtags (without #)")
    tags = [re.sub(r"[^\w]", "", t.lstrip("#")) for t in value]
    return list(dict.fromkeys(t for t in tags if t))


def _report_category(options: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    category = options.get("report_category", "other")
    if category not in REPORT_CATEGORIES:
        raise ValueError(f"options.report_category: one of {', '.join(REPORT_CATEGORIES)}")
    rules = options.get("report_rule_ids", [])
    if not isinstance(rules, list | tuple) or not all(isinstance(r, str | int) for r in rules):
        raise ValueError("options.report_rule_ids: must be a list of rule ids")
    if category == "violation" and not rules:
        raise ValueError("options.report_rule_ids: required when report_category is violation")
    return str(category), tuple(str(r) for r in rules)


def _comment(options: Mapping[str, Any]) -> str:
    value = options.get("report_comment", DEFAULT_COMMENT)
    if not isinstance(value, str) or len(value) > 1000:
        raise ValueError("options.report_comment: text of at most 1000 characters")
    return value


def _int(options: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"options.{key}: a whole number from {low} to {high}")
    return value
