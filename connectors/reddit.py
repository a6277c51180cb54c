"""Reddit connector: searches Reddit for the school's names (mention sources only), reads the
comments of each matching post once, re-reads recent matches for edits and removals, and
reports posts to a subreddit's moderators.

**API access needs Reddit's approval.** Since November 2025 self-service API access is closed:
a new OAuth app only works once Reddit has approved it (Responsible Builder Policy; file a
request through Reddit's developer support). Existing approved keys keep working. Until then
every call fails with 401/403 and the source is paused with an ``AuthFailed`` alert.

Options (``context.options``):

* ``api_base``: default ``https://oauth.reddit.com``; ``auth_base``: the token endpoint's host,
  default ``https://www.reddit.com``. Plain ``http://`` is accepted for loopback hosts only.
* ``user_agent``: Reddit requires a unique, descriptive one. Default
  ``vigil:<source name>:0.1 (by u/<reddit_username>)``; ``reddit_username`` default ``unknown``.
* ``subreddits``: list of subreddit names; when given, search only those (``restrict_sr``).
* ``page_size``: results per request, 1–100 (default 100).
* ``first_poll_pages``: pages read back in time per search term on the first poll (default 1).
* ``comments``: also read the comments of each new matching post, once (default true).
* ``watch_items``: how many recent matches are re-read each poll in one ``/api/info`` call to
  notice edits and removals (0–100, default 100).
* ``report_reason``: text sent with reports (at most 100 characters).
* ``is_moderator``: true only if the account moderates the subreddits searched; then
  ``delete`` removes the post (``POST /api/remove``, spam=false). Default false.

Secrets (``context.secrets``): ``client_id`` and ``client_secret`` (required); ``username`` and
``password`` (optional, together: a "script" app's password grant; without them the app-only
``client_credentials`` grant is used, which cannot report or remove). The bearer token is
kept in memory only.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

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
from connectors.state import read_state, write_state

__all__ = ["RedditConnector", "thing_to_post"]

PLATFORM = "reddit"
WEB = "https://www.reddit.com"
RATE_LIMIT_WAIT = 60.0  # Reddit's window is one minute (100 queries per OAuth client)
MAX_PENDING = 200  # posts whose comments are still to be read
GONE_TEXT = ("[deleted]", "[removed]")
IMAGE_HINTS = (".jpg", ".jpeg", ".png", ".gif", ".webp")
DEFAULT_REASON = "Targets pupils or staff of a UK school (reported by its safeguarding team)"
_CREDENTIAL = "credentials.{0}: required (give {0}_env, {0}_file or {0}_credential)"
_NO_REMOVE = (
    "Only a subreddit's moderators can remove posts on Reddit. Report it instead (the post's "
    "⋯ menu → Report on reddit.com), or ask the subreddit's moderators via modmail."
)
_NO_HIDE = (
    "Reddit has no way to hide other people's posts for everyone. Report it (⋯ → Report on "
    "reddit.com); a moderator of the subreddit can remove it."
)


@dataclass(frozen=True, kw_only=True)
class _Settings:
    api_base: str
    auth_base: str
    user_agent: str
    client_id: str
    client_secret: str
    username: str
    password: str
    subreddits: tuple[str, ...]
    terms: tuple[str, ...]
    page_size: int
    first_poll_pages: int
    comments: bool
    watch_items: int
    report_reason: str
    is_moderator: bool


class _TokenRejected(AuthFailed):
    """HTTP 401 from the API: the bearer token expired or was revoked."""


class _NotFound(ConnectorUnavailable):
    """HTTP 404: the post or subreddit no longer exists."""


class RedditConnector:
    """Searches Reddit through the OAuth API (``https://oauth.reddit.com``); needs approval."""

    name: ClassVar[str] = PLATFORM
    # 100 queries/minute per OAuth client: a 15-minute poll of 3 terms uses about 5–30 calls.
    poll_interval: ClassVar[int] = 900
    rate_limit: ClassVar[str] = "100 queries / minute per OAuth client id"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.REPORT, Capability.DELETE}  # delete = moderator removal, if is_moderator
    )

    def __init__(self, settings: _Settings, context: SourceContext) -> None:
        self._s = settings
        self._kind = context.kind
        self._clock = context.clock
        self._account = context.account or None
        self._bearer: str | None = None
        self._expires = datetime.min.replace(tzinfo=UTC)
        client = {"transport": context.transport, "sleep": context.sleep}
        self._http = HttpClient(
            HttpOptions(base_url=settings.api_base, user_agent=settings.user_agent),
            error_mapper=self._error,
            **client,
        )
        self._auth = HttpClient(
            HttpOptions(base_url=settings.auth_base, user_agent=settings.user_agent),
            error_mapper=_token_error,
            **client,
        )

    @classmethod
    def from_context(cls, context: SourceContext) -> Self:
        """Validate options and secrets (see the module docstring) and build the connector."""
        return cls(_settings(context), context)

    async def aclose(self) -> None:
        """Close both HTTP clients."""
        await self._http.aclose()
        await self._auth.aclose()

    async def check(self) -> None:
        """Get a token, then one search with limit=1 (this also proves the app is approved)."""
        params = {"q": _query(self._s.terms[0]), "limit": "1", "sort": "new", "raw_json": "1"}
        response = await self._call("GET", "/search", params=params)
        _listing(response)

    # -- auth -----------------------------------------------------------------------------

    async def _token(self) -> str:
        if self._bearer is not None and self._clock() < self._expires:
            return self._bearer
        secret = f"{self._s.client_id}:{self._s.client_secret}".encode()
        basic = "Basic " + base64.b64encode(secret).decode("ascii")
        data = {"grant_type": "client_credentials"}
        if self._s.username:
            data = {"grant_type": "password", "username": self._s.username}
            data["password"] = self._s.password
        response = await self._auth.request(
            "POST", "/api/v1/access_token", data=data, headers={"Authorization": basic}
        )
        body = response.body if isinstance(response.body, dict) else {}
        token, lifetime = body.get("access_token"), body.get("expires_in", 3600)
        if not isinstance(token, str) or not token:
            raise AuthFailed(f"token endpoint: no token ({str(body.get('error', '?'))[:80]})")
        seconds = float(lifetime) if isinstance(lifetime, int | float) else 3600.0
        self._bearer, self._expires = token, self._clock() + timedelta(seconds=seconds - 60)
        return token

    async def _call(
        self, method: str, path: str, *, params: Any = None, data: Any = None
    ) -> Response:
        """An API call with the bearer token; a 401 fetches a new token once, then gives up."""
        try:
            return await self._send(method, path, params, data)
        except _TokenRejected:
            self._bearer = None
            return await self._send(method, path, params, data)

    async def _send(self, method: str, path: str, params: Any, data: Any) -> Response:
        headers = {"Authorization": f"bearer {await self._token()}"}
        return await self._http.request(method, path, params=params, data=data, headers=headers)

    # -- fetching -------------------------------------------------------------------------

    async def fetch(self, cursor: Cursor) -> Batch:
        """One page: re-read of recent matches, a search page, or one post's comments."""
        state = _State.load(read_state(cursor), len(self._s.terms))
        while True:
            posts, rejects, gone = await self._step(state)
            done = state.step > len(self._s.terms) and not state.pending
            if posts or rejects or gone or done:
                break
        if done:
            state.step = 0
        return Batch(
            posts=tuple(posts),
            rejects=tuple(rejects),
            gone=tuple(gone),
            cursor=write_state(state.dump()),
            exhausted=done,
        )

    async def _step(self, state: _State) -> tuple[list[Post], list[Reject], list[str]]:
        if state.pending:
            posts, rejects = await self._comments(state, state.pending.pop(0))
            return posts, rejects, []
        if state.step == 0:
            state.step = 1
            return await self._refresh(state)
        term = self._s.terms[state.step - 1]
        posts, rejects = await self._search(state, term)
        return posts, rejects, []

    async def _search(self, state: _State, term: str) -> tuple[list[Post], list[Reject]]:
        """One page of ``sort=new`` results, newest first, down to the saved watermark."""
        position = state.streams.get(term, {})
        response = await self._call("GET", self._search_path(), params=self._params(term, position))
        children, after = _listing(response)
        since, ids = _float(position.get("since")), list(position.get("ids") or ())
        fresh = [c for c in children if _is_new(c, since, ids)]
        pages = int(position.get("n") or 0) + 1
        more = bool(after and children) and len(fresh) == len(children)
        more = more and (since is not None or pages < self._s.first_poll_pages)
        state.streams[term] = _advance(position, fresh, after if more else None, pages)
        if not more:
            state.step += 1
        posts, rejects = self._map(fresh)
        state.watch_posts(posts, self._s.watch_items)
        if self._s.comments:
            state.queue(p.external_id for p in posts if _has_comments(p.raw))
        return posts, rejects

    def _search_path(self) -> str:
        return f"/r/{'+'.join(self._s.subreddits)}/search" if self._s.subreddits else "/search"

    def _params(self, term: str, position: Mapping[str, Any]) -> dict[str, str]:
        params = {"q": _query(term), "sort": "new", "type": "link", "raw_json": "1"}
        params["limit"] = str(self._s.page_size)
        if self._s.subreddits:
            params["restrict_sr"] = "1"
        if position.get("after"):
            params["after"] = str(position["after"])
        return params

    async def _comments(self, state: _State, fullname: str) -> tuple[list[Post], list[Reject]]:
        """Every comment Reddit returns for one post ("load more" stubs are not followed)."""
        try:
            response = await self._call(
                "GET", f"/comments/{fullname.removeprefix('t3_')}", params=_COMMENT_PARAMS
            )
        except _NotFound:
            return [], []
        body = response.body
        if not isinstance(body, list) or len(body) < 2:
            raise PayloadInvalid(f"{response.path}: expected [post, comments]", response.text)
        children = _flatten(_children(body[1], response))
        posts, rejects = self._map(children)
        state.watch_posts(posts, self._s.watch_items)
        return posts, rejects

    async def _refresh(self, state: _State) -> tuple[list[Post], list[Reject], list[str]]:
        """One /api/info call for the watched items: edited ones are re-sent, removed are gone."""
        if not state.watch:
            return [], [], []
        response = await self._call(
            "GET", "/api/info", params={"id": ",".join(state.watch), "raw_json": "1"}
        )
        children, _ = _listing(response)
        found = {_fullname(c): c for c in children if _fullname(c)}
        gone = [f for f in state.watch if f not in found or _removed(found[f])]
        edited = [
            found[f]
            for f in state.watch
            if f in found and f not in gone and _edited(found[f]) != state.watch[f]
        ]
        posts, rejects = self._map(edited)
        for thing in edited:  # even a rejected one: it is not re-sent until it changes again
            state.watch[str(_fullname(thing))] = _edited(thing)
        for fullname in gone:
            state.watch.pop(fullname, None)
        return posts, rejects, gone

    def _map(self, children: Sequence[Any]) -> tuple[list[Post], list[Reject]]:
        posts: list[Post] = []
        rejects: list[Reject] = []
        for child in children:
            try:
                posts.append(thing_to_post(child, self._kind, self._account))
            except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as err:
                rejects.append(Reject(error=f"reddit thing: {err!r}", payload=_dump(child)))
        return posts, rejects

    # -- moderation -----------------------------------------------------------------------

    async def moderate(self, capability: Capability, post: ModerationTarget) -> ModerationResult:
        """Report to the subreddit's moderators; remove only when ``is_moderator`` is set."""
        if capability is Capability.REPORT:
            data = {"api_type": "json", "thing_id": post.external_id}
            data |= {"reason": self._s.report_reason, "other_reason": self._s.report_reason}
            response = await self._call("POST", "/api/report", data=data)
            _raise_for_json_errors(response)
            return ModerationResult(supported=True, done=True, detail="reported on Reddit")
        if capability is Capability.DELETE and self._s.is_moderator:
            data = {"id": post.external_id, "spam": "false"}
            await self._call("POST", "/api/remove", data=data)
            return ModerationResult(supported=True, done=True, detail="removed as moderator")
        why = _NO_REMOVE if capability is Capability.DELETE else _NO_HIDE
        return ModerationResult(supported=False, done=False, detail=why)

    # -- errors ---------------------------------------------------------------------------

    def _error(self, response: Response) -> ConnectorError | None:
        where = f"{response.path}: HTTP {response.status}"
        if response.status == 429:
            return RateLimited(_reset(response.headers), where)
        if response.status == 401:
            return _TokenRejected(f"{where}: token rejected")
        if response.status == 403:
            return AuthFailed(f"{where}: forbidden (app not approved, or no access)")
        if response.status == 404:
            return _NotFound(where)
        remaining = _float(response.headers.get("x-ratelimit-remaining"))
        if response.ok and remaining is not None and remaining < 1:
            return RateLimited(_reset(response.headers), f"{where}: request quota used up")
        return None


# -- cursor state ---------------------------------------------------------------------------


@dataclass(kw_only=True)
class _State:
    """The cursor: where each term's search stands, the poll's step, queued comment reads,
    and the watched items with the ``edited`` value seen last (0 when never edited)."""

    step: int
    streams: dict[str, dict[str, Any]]
    pending: list[str]
    watch: dict[str, float]

    @classmethod
    def load(cls, raw: Mapping[str, Any], terms: int) -> _State:
        step = raw.get("step")
        streams = raw.get("streams") if isinstance(raw.get("streams"), dict) else {}
        pending = raw.get("pending") if isinstance(raw.get("pending"), list) else []
        watch = raw.get("watch") if isinstance(raw.get("watch"), list) else []
        return cls(
            step=step if isinstance(step, int) and 0 <= step <= terms + 1 else 0,
            streams={k: v for k, v in (streams or {}).items() if isinstance(v, dict)},
            pending=[p for p in pending or () if isinstance(p, str)],
            watch={str(w[0]): float(w[1]) for w in watch or () if _pair(w)},
        )

    def dump(self) -> dict[str, Any]:
        watch = [[k, v] for k, v in self.watch.items()]
        return {"step": self.step, "streams": self.streams, "pending": self.pending, "watch": watch}

    def queue(self, fullnames: Any) -> None:
        self.pending = list(dict.fromkeys([*self.pending, *fullnames]))[-MAX_PENDING:]

    def watch_posts(self, posts: Sequence[Post], keep: int) -> None:
        """Newest first: the posts just read, then what was watched before."""
        fresh = {p.external_id: _edited(p.raw) for p in posts}
        older = {k: v for k, v in self.watch.items() if k not in fresh}
        self.watch = dict(list({**fresh, **older}.items())[:keep])


def _pair(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[1], int | float)
        and not isinstance(value[1], bool)
    )


def _advance(
    position: Mapping[str, Any], fresh: Sequence[Any], after: str | None, pages: int
) -> dict[str, Any]:
    """The stream's new position: keep paging (``after``) or settle on the newest time seen."""
    top, top_ids = _float(position.get("top")), list(position.get("top_ids") or ())
    for child in fresh:
        created, name = _created(child), _fullname(child)
        if created is None or name is None:
            continue
        if top is None or created > top:
            top, top_ids = created, [name]
        elif created == top:
            top_ids.append(name)
    since, ids = _float(position.get("since")), list(position.get("ids") or ())
    if after:
        return {
            "since": since,
            "ids": ids,
            "top": top,
            "top_ids": top_ids,
            "after": after,
            "n": pages,
        }
    if top is not None and (since is None or top > since):
        return {"since": top, "ids": top_ids}
    if top is not None and top == since:
        return {"since": since, "ids": list(dict.fromkeys(ids + top_ids))}
    return {"since": since, "ids": ids} if since is not None else {}


# -- mapping a thing ------------------------------------------------------------------------


def thing_to_post(thing: Mapping[str, Any], kind: SourceKind, account: str | None = None) -> Post:
    """Normalise one Reddit thing: a link (``t3``) or a comment (``t1``)."""
    data = thing["data"]
    if not isinstance(data, Mapping):
        raise TypeError("data is not an object")
    if thing.get("kind") == "t3":
        title, body = str(data.get("title") or ""), str(data.get("selftext") or "")
        text, parent, thread = "\n\n".join(p for p in (title, body) if p), None, data["name"]
    elif thing.get("kind") == "t1":
        text, parent, thread = str(data.get("body") or ""), data.get("parent_id"), data["link_id"]
    else:
        raise ValueError(f"unexpected kind {thing.get('kind')!r}")
    edited = _edited(data)
    return Post(
        platform=PLATFORM,
        external_id=str(data["name"]),
        text=text,
        created_at=datetime.fromtimestamp(float(data["created_utc"]), UTC),
        updated_at=datetime.fromtimestamp(edited, UTC) if edited else None,
        source_kind=kind,
        parent_id=_opt(parent),
        thread_id=_opt(thread),
        author_id=_opt(data.get("author_fullname")),
        author_handle=_opt(data.get("author")),
        media=_media(data) if thing.get("kind") == "t3" else (),
        permalink=WEB + str(data["permalink"]) if data.get("permalink") else None,
        account=account or _opt(data.get("subreddit_name_prefixed")),
        raw=dict(thing),
    )


def _media(data: Mapping[str, Any]) -> tuple[Media, ...]:
    """The link's target by reference: an image, a video, or another web page."""
    url = data.get("url_overridden_by_dest") or data.get("url")
    if not isinstance(url, str) or not url or data.get("is_self"):
        return ()
    if data.get("post_hint") == "image" or urlsplit(url).path.lower().endswith(IMAGE_HINTS):
        return (Media(url=url, type="image"),)
    if data.get("is_video") or data.get("post_hint") in ("hosted:video", "rich:video"):
        return (Media(url=url, type="video"),)
    if url.startswith(WEB) and "/comments/" in url:
        return ()  # the post's own page
    return (Media(url=url, type="link"),)


def _edited(data: Mapping[str, Any]) -> float:
    """Reddit's ``edited``: false, or the edit time in epoch seconds."""
    if "data" in data and isinstance(data["data"], Mapping):
        data = data["data"]
    value = data.get("edited")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _removed(thing: Mapping[str, Any]) -> bool:
    data = thing.get("data")
    if not isinstance(data, Mapping):
        return False
    text = data.get("body") if thing.get("kind") == "t1" else data.get("selftext")
    return data.get("removed_by_category") is not None or text in GONE_TEXT


_COMMENT_PARAMS = {"sort": "new", "limit": "500", "raw_json": "1"}


def _listing(response: Response) -> tuple[list[Any], str | None]:
    children = _children(response.body, response)
    after = response.body["data"].get("after")
    return children, after if isinstance(after, str) and after else None


def _children(body: Any, response: Response) -> list[Any]:
    data = body.get("data") if isinstance(body, dict) and body.get("kind") == "Listing" else None
    children = data.get("children") if isinstance(data, dict) else None
    if not isinstance(children, list):
        raise PayloadInvalid(f"{response.path}: not a Listing", response.text)
    return children


def _flatten(children: list[Any]) -> list[Any]:
    """Comments depth-first in thread order; ``more`` stubs are skipped."""
    out: list[Any] = []
    stack = list(reversed(children))
    while stack:
        child = stack.pop()
        if isinstance(child, dict) and child.get("kind") == "more":
            continue
        out.append(child)
        data = child.get("data") if isinstance(child, dict) else None
        replies = data.get("replies") if isinstance(data, dict) else None
        if isinstance(replies, dict):
            nested = (replies.get("data") or {}).get("children")
            stack.extend(reversed(nested if isinstance(nested, list) else []))
    return out


def _is_new(child: Any, since: float | None, ids: Sequence[str]) -> bool:
    created = _created(child)
    if since is None or created is None:
        return True  # unreadable children are passed on, to be rejected visibly
    return created > since or (created == since and _fullname(child) not in ids)


def _has_comments(raw: Mapping[str, Any]) -> bool:
    data = raw.get("data")
    count = data.get("num_comments") if isinstance(data, Mapping) else None
    return raw.get("kind") == "t3" and isinstance(count, int) and count > 0


def _created(child: Any) -> float | None:
    data = child.get("data") if isinstance(child, dict) else None
    return _float(data.get("created_utc")) if isinstance(data, dict) else None


def _fullname(child: Any) -> str | None:
    data = child.get("data") if isinstance(child, dict) else None
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name else None


def _raise_for_json_errors(response: Response) -> None:
    """``api_type=json`` answers ``{"json": {"errors": [[code, message, field], ...]}}``."""
    body = response.body
    errors = body.get("json", {}).get("errors") if isinstance(body, dict) else None
    if errors:
        codes = ", ".join(str(e[0]) for e in errors if isinstance(e, list) and e)
        raise ConnectorUnavailable(f"{response.path}: refused ({codes or 'error'})")


def _token_error(response: Response) -> ConnectorError | None:
    where = f"{response.path}: HTTP {response.status}"
    if response.status in (400, 401, 403):
        return AuthFailed(f"{where}: client id/secret (or username/password) rejected")
    if response.status == 429:
        return RateLimited(_reset(response.headers), where)
    return None


def _reset(headers: httpx.Headers) -> float:
    """Seconds until the window resets: X-Ratelimit-Reset, else Retry-After, else a minute."""
    reset = _float(headers.get("x-ratelimit-reset"))
    if reset is not None:
        return max(reset, 1.0)
    wait = retry_after_seconds(headers.get("retry-after"))
    return wait if wait is not None else RATE_LIMIT_WAIT


def _query(term: str) -> str:
    term = term.strip().replace('"', "")
    return f'"{term}"' if " " in term else term


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _opt(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _dump(item: Any) -> str:
    return json.dumps(item, ensure_ascii=False, default=str)


# -- options --------------------------------------------------------------------------------


def _settings(context: SourceContext) -> _Settings:
    options, secrets = context.options, context.secrets
    if context.kind is not SourceKind.MENTION:
        raise ValueError('kind: the reddit connector reads mention sources only (kind = "mention")')
    client_id, client_secret = _secret(secrets, "client_id"), _secret(secrets, "client_secret")
    username, password = secrets.get("username", ""), secrets.get("password", "")
    if bool(username) != bool(password):
        missing = "password" if username else "username"
        raise ValueError(_CREDENTIAL.format(missing) + ": username and password go together")
    return _Settings(
        api_base=_base_url(options.get("api_base", "https://oauth.reddit.com"), "api_base"),
        auth_base=_base_url(options.get("auth_base", WEB), "auth_base"),
        user_agent=_user_agent(context),
        client_id=client_id,
        client_secret=client_secret,
        username=username,
        password=password,
        subreddits=_subreddits(options),
        terms=_terms(context),
        page_size=_int(options, "page_size", 100, 1, 100),
        first_poll_pages=_int(options, "first_poll_pages", 1, 1, 10),
        comments=_bool(options, "comments", True),
        watch_items=_int(options, "watch_items", 100, 0, 100),
        report_reason=_reason(options),
        is_moderator=_bool(options, "is_moderator", False),
    )


def _secret(secrets: Mapping[str, str], name: str) -> str:
    value = secrets.get(name)
    if not value:
        raise ValueError(_CREDENTIAL.format(name))
    return value


def _base_url(value: Any, key: str) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"options.{key}: must be an https:// URL, got {value!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError(f"options.{key}: plain http is only allowed for loopback hosts")
    return str(value).rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _user_agent(context: SourceContext) -> str:
    username = context.options.get("reddit_username", "unknown")
    if not isinstance(username, str) or not username.strip():
        raise ValueError("options.reddit_username: the Reddit account that runs the app")
    default = f"vigil:{context.source_name}:0.1 (by u/{username.strip().removeprefix('u/')})"
    agent = context.options.get("user_agent", default)
    if not isinstance(agent, str) or len(agent.strip()) < 10:
        raise ValueError("options.user_agent: a unique, descriptive User-Agent is required")
    return agent.strip()


def _subreddits(options: Mapping[str, Any]) -> tuple[str, ...]:
    value = options.get("subreddits", [])
    if not isinstance(value, list | tuple) or not all(isinstance(s, str) for s in value):
        raise ValueError("options.subreddits: must be a list of subreddit names")
    names = [s.strip().removeprefix("/").removeprefix("r/") for s in value]
    if not all(n.replace("_", "").isalnum() for n in names):
        raise ValueError("options.subreddits: names are letters, digits and _ only")
    return tuple(names)


def _terms(context: SourceContext) -> tuple[str, ...]:
    terms = tuple(dict.fromkeys(t.strip() for t in context.search_terms if t.strip()))
    if not terms:
        raise ValueError("search_terms: at least one name to search for is required")
    return terms


def _reason(options: Mapping[str, Any]) -> str:
    value = options.get("report_reason", DEFAULT_REASON)
    if not isinstance(value, str) or not value.strip() or len(value) > 100:
        raise ValueError("options.report_reason: text of 1 to 100 characters")
    return value.strip()


def _bool(options: Mapping[str, Any], key: str, default: bool) -> bool:
    value = options.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"options.{key}: must be true or false")
    return value


def _int(options: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"options.{key}: a whole number from {low} to {high}")
    return value
