"""Bluesky (AT Protocol): XRPC calls over httpx with an app password.

Options (``context.options``):

* ``handle`` — the school's account handle, e.g. ``exampleacademy.bsky.social``: the login
  identifier, and the account an own source reads. Default: the source's ``account``.
* ``api_base`` — the PDS or entryway; default ``https://bsky.social``.
* ``page_size`` — items per call, 1–100; default 50.
* ``lookback_days`` — how far back the first poll reads; default 7.
* ``thread_depth`` — reply depth read per watched thread, 1–1000; default 100.
* ``report_service`` — the ``atproto-proxy`` target of reports; default Bluesky's moderation
  service ``did:plc:ar7c4by46qjdydhdevvrndac#atproto_labeler``.
* ``report_reason_type`` — default ``com.atproto.moderation.defs#reasonOther``.
* ``timeout`` — seconds per request; default 30.

Secrets (``context.secrets``): ``app_password`` — an app password of the school's account
(Settings → Privacy and security → App passwords), never the account password.

``createSession`` gives the access and refresh JWTs. They live in memory only: never in the
cursor, a message or a log. An ``ExpiredToken``/``InvalidToken`` answer is followed by one
``refreshSession`` and one retry; if that fails too, ``AuthFailed``.

Mention sources page ``app.bsky.feed.searchPosts`` (``sort=latest``) for each search term in
turn, from a ``since`` watermark kept per term with a short overlap (late indexing), and never
send a post twice. Own sources page ``app.bsky.feed.getAuthorFeed`` back to the last watermark,
then re-read each watched thread (the newest ``MAX_WATCHED_THREADS`` of the school's own
posts) with ``app.bsky.feed.getPostThread``, one thread per page: replies that vanished are
``gone``.

Moderation: ``report`` (``com.atproto.moderation.createReport``, strongRef subject), ``hide``
and ``unhide`` of replies in threads the school started (the root post's threadgate
``hiddenReplies``, at most 50 per thread). Deleting other people's posts is not possible.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Self

from connectors._bluesky_posts import (
    iso,
    parse_time,
    post_view_to_post,
    rkey_of,
    sort_at,
    uri_of,
)
from connectors.base import (
    AuthFailed,
    Batch,
    Capability,
    ConnectorError,
    ConnectorUnavailable,
    Cursor,
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
from connectors.state import MAX_WATCHED_THREADS, read_state, track_thread, write_state

__all__ = ["BlueskyConnector", "post_view_to_post"]

DEFAULT_API_BASE = "https://bsky.social"
DEFAULT_REPORT_SERVICE = "did:plc:ar7c4by46qjdydhdevvrndac#atproto_labeler"
DEFAULT_REASON_TYPE = "com.atproto.moderation.defs#reasonOther"
REPORT_REASON = "Reported by the school's safeguarding team (Vigil) after human review."
THREADGATE = "app.bsky.feed.threadgate"
MAX_HIDDEN_REPLIES = 50  # app.bsky.feed.threadgate lexicon: hiddenReplies maxLength
RATE_LIMIT_WAIT = 60.0
OVERLAP = timedelta(minutes=10)  # search indexes late: re-ask this far back, skip what we sent
MAX_SEEN = 300
MAX_CALLS_PER_FETCH = 10  # empty pages followed within one fetch before giving the poller one
MAX_CIDS = 10_000
_TOKEN_ERRORS = frozenset({"ExpiredToken", "InvalidToken"})
_NOT_FOUND = frozenset({"NotFound", "RecordNotFound"})
NO_DELETE = (
    "Bluesky lets an account delete only its own posts: report this one instead "
    "(on bsky.app: the post's ⋯ menu → Report post)"
)


class _TokenExpired(AuthFailed):
    """The access (or refresh) JWT expired or was revoked."""


class _NotFound(ConnectorUnavailable):
    """The post or record does not exist (any more)."""


@dataclass(kw_only=True)
class _Session:
    did: str
    access: str = field(repr=False)
    refresh: str = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class _Settings:
    handle: str
    password: str = field(repr=False)
    page_size: int
    lookback: timedelta
    thread_depth: int
    report_service: str
    reason_type: str


@dataclass(kw_only=True)
class _Page:
    posts: list[Post] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.posts or self.rejects or self.gone)


class BlueskyConnector:
    """Bluesky own-account and search sources; report, hide and unhide replies."""

    name: ClassVar[str] = "bluesky"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.REPORT, Capability.HIDE, Capability.UNHIDE}
    )
    # 3000 requests / 5 min per account is generous; a poll costs 1 + 1 + up to 50 calls.
    poll_interval: ClassVar[float] = 600.0

    def __init__(self, *, settings: _Settings, http: HttpClient, context: SourceContext) -> None:
        self._settings = settings
        self._http = http
        self._context = context
        self._session: _Session | None = None
        self._cids: OrderedDict[str, str] = OrderedDict()  # uri → cid, for reports

    @classmethod
    def from_context(cls, context: SourceContext) -> Self:
        """Validate options and credentials; see the module docstring for the names."""
        settings = _settings(context)
        http = HttpClient(
            HttpOptions(
                base_url=_str_option(context.options, "api_base", DEFAULT_API_BASE),
                timeout=_number(context.options, "timeout", 30.0, 1, 300),
            ),
            transport=context.transport,
            headers={"Accept": "application/json"},
            error_mapper=_error_mapper(context.clock),
            sleep=context.sleep,
        )
        return cls(settings=settings, http=http, context=context)

    async def aclose(self) -> None:
        """Forget the session and close the HTTP client."""
        self._session = None
        await self._http.aclose()

    async def check(self) -> None:
        """Log in (if not yet) and ask the PDS who we are."""
        await self._xrpc("GET", "com.atproto.server.getSession")

    async def fetch(self, cursor: Cursor) -> Batch:
        """One page: search results (mention sources) or the author feed / a thread (own)."""
        state = read_state(cursor)
        if self._context.kind is SourceKind.MENTION:
            page, exhausted = await self._fetch_mentions(state)
        else:
            page, exhausted = await self._fetch_own(state)
        return Batch(
            posts=tuple(page.posts),
            rejects=tuple(page.rejects),
            gone=tuple(page.gone),
            cursor=write_state(state),
            exhausted=exhausted,
        )

    # --- session -------------------------------------------------------------------------

    async def _login(self) -> _Session:
        if self._session is None:
            response = await self._http.request(
                "POST",
                "/xrpc/com.atproto.server.createSession",
                json_body={
                    "identifier": self._settings.handle,
                    "password": self._settings.password,
                },
            )
            self._session = _session_from(response, "createSession")
        return self._session

    async def _refresh(self, session: _Session) -> _Session:
        self._session = None
        try:
            response = await self._http.request(
                "POST",
                "/xrpc/com.atproto.server.refreshSession",
                headers={"Authorization": f"Bearer {session.refresh}"},
            )
        except AuthFailed as err:
            raise AuthFailed("refreshSession: refused; check the app password") from err
        self._session = _session_from(response, "refreshSession")
        return self._session

    async def _xrpc(
        self,
        method: str,
        nsid: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """One authenticated call; an expired token is refreshed once and the call retried."""
        session = await self._login()
        for attempt in (1, 2):
            auth = {"Authorization": f"Bearer {session.access}", **(headers or {})}
            try:
                return await self._http.request(
                    method, f"/xrpc/{nsid}", params=params, json_body=body, headers=auth
                )
            except _TokenExpired as err:
                if attempt == 2:
                    self._session = None
                    raise AuthFailed(f"{nsid}: token refused after a refresh") from err
                session = await self._refresh(session)
        raise AssertionError("unreachable")  # pragma: no cover

    # --- mention sources -----------------------------------------------------------------

    async def _fetch_mentions(self, state: dict[str, Any]) -> tuple[_Page, bool]:
        terms = self._context.search_terms
        index = _int_in(state, "term")
        index = index if index < len(terms) else 0
        saved = _dict_in(state, "terms")
        state["terms"] = {t: _dict_in(saved, t) for t in terms}
        for _ in range(MAX_CALLS_PER_FETCH):
            term_state = state["terms"][terms[index]]
            page = await self._search_page(terms[index], term_state)
            if term_state.get("cursor") is None:
                index += 1
            state["term"] = index % len(terms)
            if page or index == len(terms):
                return page, index == len(terms)
        return _Page(), False

    async def _search_page(self, term: str, term_state: dict[str, Any]) -> _Page:
        now = self._context.clock()
        since = parse_time(term_state.get("since")) or now - self._settings.lookback
        params: dict[str, Any] = {
            "q": f'"{term}"' if " " in term.strip() else term.strip(),
            "sort": "latest",
            "since": iso(since - OVERLAP),
            "limit": self._settings.page_size,
        }
        if isinstance(term_state.get("cursor"), str):
            params["cursor"] = term_state["cursor"]
        response = await self._xrpc("GET", "app.bsky.feed.searchPosts", params=params)
        views = _list_field(response, "posts")
        seen: dict[str, str] = _dict_in(term_state, "seen")
        page = self._map_views((v for v in views if uri_of(v) not in seen), seen)
        following = response.body.get("cursor")
        if views and isinstance(following, str) and following:
            term_state.update(cursor=following, seen=_newest(seen))
        else:
            term_state.update(cursor=None, **_closed_round(seen, since))
        return page

    # --- own-account sources -------------------------------------------------------------

    async def _fetch_own(self, state: dict[str, Any]) -> tuple[_Page, bool]:
        for _ in range(MAX_CALLS_PER_FETCH):
            if state.get("phase") != "threads":
                page = await self._author_feed_page(state)
            else:
                page = await self._thread_page(state)
            if state.get("phase") == "done":
                state["phase"] = "feed"
                return page, True
            if page:
                return page, False
        return _Page(), False

    async def _author_feed_page(self, state: dict[str, Any]) -> _Page:
        feed = _dict_in(state, "feed")
        since = parse_time(feed.get("since")) or self._context.clock() - self._settings.lookback
        params: dict[str, Any] = {
            "actor": self._settings.handle,
            "limit": self._settings.page_size,
            "filter": "posts_with_replies",
        }
        if isinstance(feed.get("cursor"), str):
            params["cursor"] = feed["cursor"]
        response = await self._xrpc("GET", "app.bsky.feed.getAuthorFeed", params=params)
        items = _list_field(response, "feed")
        views, older = _own_views(items, since)
        newest = max([feed.get("newest") or "", *(sort_at(v) for v in views)])
        page = self._map_views(iter(views), {})
        _watch(state, [p.external_id for p in page.posts if p.parent_id is None])
        following = response.body.get("cursor")
        if items and not older and isinstance(following, str) and following:
            state["feed"] = {**feed, "cursor": following, "newest": newest}
        else:
            state["feed"] = {"since": newest or iso(since)}
            state.update(phase="threads", thread=0)
        return page

    async def _thread_page(self, state: dict[str, Any]) -> _Page:
        threads = [t for t in state.get("threads") or [] if isinstance(t, str)]
        index = _int_in(state, "thread")
        if index >= len(threads):
            state["phase"] = "done"
            return _Page()
        root = threads[index]
        watched: dict[str, list[str]] = _dict_in(state, "watched")
        page = await self._read_thread(root, watched)
        if root not in watched:  # the root is gone: stop watching the thread
            threads.remove(root)
        else:
            index += 1
        state.update(threads=threads, watched=watched, thread=index)
        if index >= len(threads):
            state["phase"] = "done"
        return page

    async def _read_thread(self, root: str, watched: dict[str, list[str]]) -> _Page:
        params = {"uri": root, "depth": self._settings.thread_depth, "parentHeight": 0}
        try:
            response = await self._xrpc("GET", "app.bsky.feed.getPostThread", params=params)
            thread = response.body.get("thread") if isinstance(response.body, dict) else None
        except _NotFound:
            thread = None
        if not isinstance(thread, dict) or not isinstance(thread.get("post"), dict):
            gone = [root] if root in watched else []
            watched.pop(root, None)
            return _Page(gone=gone)
        page = self._map_views(_thread_views(thread), {})
        seen = [p.external_id for p in page.posts] + [_reject_uri(r) for r in page.rejects]
        page.gone = track_thread(watched, root, seen)
        return page

    # --- mapping ---------------------------------------------------------------------------

    def _map_views(self, views: Iterator[Any], seen: dict[str, str]) -> _Page:
        page = _Page()
        account = self._context.account or self._settings.handle
        for view in views:
            try:
                post = post_view_to_post(
                    view, kind=self._context.kind, account=account, now=self._context.clock()
                )
            except (PayloadInvalid, ValueError) as err:
                payload = json.dumps(view, sort_keys=True, ensure_ascii=False, default=str)
                page.rejects.append(Reject(error=f"bluesky post: {err}", payload=payload))
                continue
            seen[post.external_id] = sort_at(view)
            self._remember_cid(post.external_id, view.get("cid"))
            page.posts.append(post)
        return page

    def _remember_cid(self, uri: str, cid: Any) -> None:
        if isinstance(cid, str) and cid:
            self._cids[uri] = cid
            self._cids.move_to_end(uri)
            while len(self._cids) > MAX_CIDS:
                self._cids.popitem(last=False)

    # --- moderation ------------------------------------------------------------------------

    async def moderate(self, capability: Capability, post: ModerationTarget) -> ModerationResult:
        """Report a post, or hide/unhide a reply in one of the school's threads."""
        if capability is Capability.REPORT:
            return await self._report(post.external_id)
        if capability in (Capability.HIDE, Capability.UNHIDE):
            return await self._set_hidden(post, hidden=capability is Capability.HIDE)
        return ModerationResult(supported=False, done=False, detail=NO_DELETE)

    async def _report(self, uri: str) -> ModerationResult:
        cid = self._cids.get(uri) or await self._lookup_cid(uri)
        if cid is None:
            return ModerationResult(
                supported=False,
                done=False,
                detail="the post is no longer on Bluesky; report the account on bsky.app instead",
            )
        body = {
            "reasonType": self._settings.reason_type,
            "reason": REPORT_REASON,
            "subject": {"$type": "com.atproto.repo.strongRef", "uri": uri, "cid": cid},
        }
        response = await self._xrpc(
            "POST",
            "com.atproto.moderation.createReport",
            body=body,
            headers={"atproto-proxy": self._settings.report_service},
        )
        report_id = response.body.get("id") if isinstance(response.body, dict) else None
        return ModerationResult(supported=True, done=True, detail=f"Bluesky report {report_id}")

    async def _lookup_cid(self, uri: str) -> str | None:
        response = await self._xrpc("GET", "app.bsky.feed.getPosts", params={"uris": uri})
        for view in _list_field(response, "posts"):
            if (
                isinstance(view, dict)
                and view.get("uri") == uri
                and isinstance(view.get("cid"), str)
            ):
                return str(view["cid"])
        return None

    async def _set_hidden(self, post: ModerationTarget, *, hidden: bool) -> ModerationResult:
        session = await self._login()
        root = post.thread_id
        if not root or root == post.external_id or _did(root) != session.did:
            return ModerationResult(
                supported=False,
                done=False,
                detail="Bluesky can hide only replies in threads the school's account started",
            )
        current = await self._threadgate(session.did, rkey_of(root))
        record = dict(current.get("value") or {}) if current else {}
        replies = [u for u in record.get("hiddenReplies") or [] if u != post.external_id]
        if hidden:
            replies.append(post.external_id)
        if len(replies) > MAX_HIDDEN_REPLIES:
            return ModerationResult(
                supported=False, done=False, detail="this thread already hides 50 replies"
            )
        record.update(
            {"$type": THREADGATE, "post": root, "hiddenReplies": replies},
            createdAt=record.get("createdAt") or iso(self._context.clock()),
        )  # no "allow" key is added: without it anyone may still reply, as before
        await self._put_threadgate(session.did, rkey_of(root), record, current)
        return ModerationResult(
            supported=True, done=True, detail="threadgate hiddenReplies updated"
        )

    async def _threadgate(self, did: str, rkey: str) -> dict[str, Any] | None:
        params = {"repo": did, "collection": THREADGATE, "rkey": rkey}
        try:
            response = await self._xrpc("GET", "com.atproto.repo.getRecord", params=params)
        except _NotFound:
            return None
        return response.body if isinstance(response.body, dict) else None

    async def _put_threadgate(
        self, did: str, rkey: str, record: dict[str, Any], current: Mapping[str, Any] | None
    ) -> None:
        body: dict[str, Any] = {
            "repo": did,
            "collection": THREADGATE,
            "rkey": rkey,
            "record": record,
        }
        if current and isinstance(current.get("cid"), str):
            body["swapRecord"] = current["cid"]  # someone else changed it meanwhile → retry
        await self._xrpc("POST", "com.atproto.repo.putRecord", body=body)


# --- options -------------------------------------------------------------------------------


def _settings(context: SourceContext) -> _Settings:
    options = context.options
    handle = options.get("handle", context.account)
    if not isinstance(handle, str) or not handle.strip():
        raise ValueError("options.handle: the school's Bluesky handle is required")
    password = context.secrets.get("app_password", "")
    if not password:
        raise ValueError(
            "credentials.app_password: required (give app_password_env, app_password_file "
            "or app_password_credential)"
        )
    if context.kind is SourceKind.MENTION and not any(t.strip() for t in context.search_terms):
        raise ValueError("search_terms: a Bluesky mention source needs at least one term")
    return _Settings(
        handle=handle.strip().lstrip("@"),
        password=password,
        page_size=int(_number(options, "page_size", 50, 1, 100)),
        lookback=timedelta(days=_number(options, "lookback_days", 7, 0, 365)),
        thread_depth=int(_number(options, "thread_depth", 100, 1, 1000)),
        report_service=_str_option(options, "report_service", DEFAULT_REPORT_SERVICE),
        reason_type=_str_option(options, "report_reason_type", DEFAULT_REASON_TYPE),
    )


def _str_option(options: Mapping[str, Any], key: str, default: str) -> str:
    value = options.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"options.{key}: must be a non-empty string")
    return value.strip().rstrip("/")


def _number(options: Mapping[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"options.{key}: must be a number from {low:g} to {high:g}")
    return float(value)


# --- errors and sessions --------------------------------------------------------------------


def _error_mapper(clock: Callable[[], datetime]) -> Callable[[Response], ConnectorError | None]:
    def mapped(response: Response) -> ConnectorError | None:
        if response.ok:
            return None
        body = response.body if isinstance(response.body, dict) else {}
        error = str(body.get("error") or "")[:60]
        where = f"{response.path}: HTTP {response.status} {error}".rstrip()
        if response.status == 429:
            return RateLimited(_rate_limit_wait(response, clock()), where)
        if response.status in (400, 401) and error in _TOKEN_ERRORS:
            return _TokenExpired(where)
        if response.status in (401, 403):
            return AuthFailed(where)
        if response.status in (400, 404) and error in _NOT_FOUND:
            return _NotFound(where)
        return ConnectorUnavailable(where)

    return mapped


def _rate_limit_wait(response: Response, now: datetime) -> float:
    reset = response.headers.get("ratelimit-reset")
    try:
        return max(float(reset or "") - now.timestamp(), 1.0)
    except ValueError:
        wait = retry_after_seconds(response.headers.get("retry-after"), now=now)
        return wait if wait is not None else RATE_LIMIT_WAIT


def _session_from(response: Response, call: str) -> _Session:
    body = response.body if isinstance(response.body, dict) else {}
    values = [body.get(k) for k in ("did", "accessJwt", "refreshJwt")]
    if not all(isinstance(v, str) and v for v in values):
        # the payload would hold tokens: keep only the field names for the quarantine
        raise PayloadInvalid(f"{call}: no did/accessJwt/refreshJwt", json.dumps(sorted(body)))
    did, access, refresh = (str(v) for v in values)
    return _Session(did=did, access=access, refresh=refresh)


def _list_field(response: Response, key: str) -> list[Any]:
    body = response.body
    if not isinstance(body, dict) or not isinstance(body.get(key), list):
        raise PayloadInvalid(f"{response.path}: no {key!r} list in the response", response.text)
    return list(body[key])


# --- cursors -------------------------------------------------------------------------------


def _closed_round(seen: Mapping[str, str], since: datetime) -> dict[str, Any]:
    """A term's state after its last page: the new watermark and the posts near it."""
    newest = max([iso(since), *seen.values()])
    floor = iso((parse_time(newest) or since) - OVERLAP)
    return {"since": newest, "seen": _newest({u: t for u, t in seen.items() if t >= floor})}


def _newest(seen: Mapping[str, str]) -> dict[str, str]:
    """The ``MAX_SEEN`` most recent of ``seen`` (uri → sort time): enough to skip the overlap."""
    recent = sorted(((t, u) for u, t in seen.items()), reverse=True)[:MAX_SEEN]
    return {u: t for t, u in recent}


def _int_in(state: Mapping[str, Any], key: str) -> int:
    value = state.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _dict_in(state: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = state.get(key)
    return dict(value) if isinstance(value, dict) else {}


def _watch(state: dict[str, Any], roots: list[str]) -> None:
    threads = {t for t in state.get("threads") or [] if isinstance(t, str)} | set(roots)
    # rkeys are TIDs, which sort by creation time: keep the newest threads
    state["threads"] = sorted(threads, key=rkey_of, reverse=True)[:MAX_WATCHED_THREADS]
    watched = _dict_in(state, "watched")
    state["watched"] = {t: watched[t] for t in state["threads"] if t in watched}


def _own_views(items: list[Any], since: datetime) -> tuple[list[Any], bool]:
    """The school's own posts on a feed page newer than ``since``; True once older ones show."""
    views, older, floor = [], False, iso(since)
    for item in items:
        view = item.get("post") if isinstance(item, dict) else None
        reason = item.get("reason") if isinstance(item, dict) else None
        kind = reason.get("$type") if isinstance(reason, dict) else None
        if kind is not None and kind != "app.bsky.feed.defs#reasonPin":
            continue  # a repost of someone else's post
        if kind is None and isinstance(view, dict) and sort_at(view) <= floor:
            older = True
            continue
        views.append(view if view is not None else item)
    return views, older


def _thread_views(thread: Mapping[str, Any]) -> Iterator[Any]:
    """Every post in a thread, root first; deleted and blocked replies are skipped."""
    stack: list[Any] = [thread]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict) or "post" not in node:
            continue  # app.bsky.feed.defs#notFoundPost / #blockedPost
        yield node["post"]
        replies = node.get("replies")
        stack.extend(reversed(replies) if isinstance(replies, list) else ())


def _reject_uri(reject: Reject) -> str:
    try:
        return uri_of(json.loads(reject.payload))
    except json.JSONDecodeError:
        return ""


def _did(uri: str) -> str:
    return uri.removeprefix("at://").split("/", 1)[0]
