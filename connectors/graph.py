"""Shared Graph API plumbing for the Facebook Pages and Instagram connectors.

One piece of code per idea, used by both platforms (graph.facebook.com, versioned):

* ``graph_settings``: options and secrets shared by both (``graph_version``, ``api_base``,
  ``watch_threads``, ``page_size``; secrets ``access_token`` and optional ``app_secret``).
* ``graph_error_mapper``: Meta answers rate limits with HTTP 400/403 and an ``error.code``, not
  429, so errors are mapped on the body's code; tokens are scrubbed from every message.
* ``usage_wait``: the ``X-App-Usage`` / ``X-Business-Use-Case-Usage`` headers, so a read that
  succeeded near 100% usage slows us down before Meta blocks the Page.
* ``GraphApi``: one ``HttpClient`` with the token in the ``Authorization`` header (never in a
  URL), ``read`` for GETs and ``write`` for moderation calls.
* ``listing`` / ``next_after``: cursor paging; stop when ``paging.next`` is absent.
* ``GraphConnector``: the poll engine both connectors share (a listing of threads, then the
  comments of each watched thread, one page per ``fetch``) and comment moderation.

Docs: https://developers.facebook.com/docs/graph-api/guides/error-handling ,
https://developers.facebook.com/docs/graph-api/overview/rate-limiting/ ,
https://developers.facebook.com/docs/graph-api/results/ .
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

import httpx

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
from connectors.http import ErrorMapper, HttpClient, HttpOptions, Response
from connectors.state import (
    MAX_WATCHED_THREADS,
    prune_threads,
    read_state,
    track_thread,
    write_state,
)

__all__ = [
    "DEFAULT_API_BASE",
    "DEFAULT_GRAPH_VERSION",
    "GraphApi",
    "GraphConnector",
    "GraphError",
    "GraphSettings",
    "collect",
    "graph_error_mapper",
    "graph_settings",
    "listing",
    "next_after",
    "parse_time",
    "usage_wait",
]

DEFAULT_API_BASE = "https://graph.facebook.com"
DEFAULT_GRAPH_VERSION = "v25.0"
DEFAULT_WATCH_THREADS = 10  # threads re-read each poll: each costs one call (see the docs)
DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 100  # Graph API's largest `limit`
_VERSION = re.compile(r"^v\d+\.\d+$")

AUTH_CODES = frozenset({190, 102, 463, 467})  # token expired, invalid or session gone
AUTH_SUBCODES = frozenset({463, 467})
# A missing permission (10, 200-299) needs a person to re-grant it, as a dead token does.
PERMISSION_CODES = frozenset({10, *range(200, 300)})
RATE_CODES = frozenset({4, 17, 32, 341, 613, *range(80001, 80010)})
RATE_WAITS = {4: 3600.0, 17: 3600.0, 341: 3600.0}  # app/user limits: a rolling one-hour window
DEFAULT_RATE_WAIT = 900.0  # Page/BUC throttles with no estimate in the headers
SLOW_DOWN_PERCENT = 95.0  # usage headers at/above this: stop before Meta blocks us at 100%
SLOW_DOWN_WAIT = 300.0
MISSING_CODE, MISSING_SUBCODE = 100, 33  # "object does not exist" (deleted post or media)
MAX_MESSAGE = 300
_TOKEN_LIKE = re.compile(r"\b(EAA|IGQ|IGA)[A-Za-z0-9_\-]{16,}")
_MAX_STEPS = MAX_WATCHED_THREADS + 2  # calls one fetch may make to find a non-empty page
Entry = tuple[Any, Callable[[Any], Post]]  # a raw item and the function that maps it


class GraphError(ConnectorUnavailable):
    """A Graph API error that is neither an auth failure nor a rate limit."""

    def __init__(self, message: str, *, code: int | None, subcode: int | None) -> None:
        super().__init__(message)
        self.code = code
        self.subcode = subcode

    @property
    def missing(self) -> bool:
        """The object does not exist (or can no longer be read)."""
        return self.code == MISSING_CODE and self.subcode == MISSING_SUBCODE


# --- settings ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class GraphSettings:
    """Options and secrets common to the Graph API connectors."""

    api_base: str
    version: str
    object_id: str
    token: str
    app_secret: str | None = None
    watch_threads: int = DEFAULT_WATCH_THREADS
    page_size: int = DEFAULT_PAGE_SIZE

    def __repr__(self) -> str:  # never show secrets
        return f"GraphSettings(version={self.version!r}, object_id={self.object_id!r})"


def graph_settings(context: SourceContext, id_option: str) -> GraphSettings:
    """Validate a source's options; errors name the key (``options.page_id: ...``)."""
    options = context.options
    object_id = _text(options, id_option, context.account)
    if not object_id:
        raise ValueError(f"options.{id_option}: required (or set the source's account)")
    version = _text(options, "graph_version", DEFAULT_GRAPH_VERSION)
    if not _VERSION.match(version):
        raise ValueError(f'options.graph_version: must look like "v25.0", got {version!r}')
    api_base = _text(options, "api_base", DEFAULT_API_BASE).rstrip("/")
    if not api_base.startswith(("https://", "http://")):
        raise ValueError("options.api_base: must be an http(s) URL")
    token = context.secrets.get("access_token", "")
    if not token:
        raise ValueError(
            "credentials.access_token: required "
            "(give access_token_env, access_token_file or access_token_credential)"
        )
    return GraphSettings(
        api_base=api_base,
        version=version,
        object_id=object_id,
        token=token,
        app_secret=context.secrets.get("app_secret") or None,
        watch_threads=_whole(options, "watch_threads", DEFAULT_WATCH_THREADS, MAX_WATCHED_THREADS),
        page_size=_whole(options, "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
    )


def _text(options: Mapping[str, Any], key: str, default: str) -> str:
    value = options.get(key)
    if value is None or value == "":
        return default
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ValueError(f"options.{key}: must be a string")
    return str(value).strip()


def _whole(options: Mapping[str, Any], key: str, default: int, most: int) -> int:
    value = options.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
        raise ValueError(f"options.{key}: must be a whole number from 1 to {most}")
    return value


# --- errors and usage headers -------------------------------------------------------------


def graph_error_mapper(secrets: Sequence[str]) -> ErrorMapper:
    """Map Graph API error bodies (any status) to our errors; ``secrets`` are scrubbed."""

    def mapper(response: Response) -> ConnectorError | None:
        error = response.body.get("error") if isinstance(response.body, dict) else None
        if response.ok or not isinstance(error, dict):
            return None  # 2xx, or not a Graph error body: HttpClient's defaults apply
        return _mapped(response, error, secrets)

    return mapper


def _mapped(response: Response, error: Mapping[str, Any], secrets: Sequence[str]) -> ConnectorError:
    code, subcode = _int(error.get("code")), _int(error.get("error_subcode"))
    where = f"{response.path}: HTTP {response.status}, Graph error {code}"
    if subcode is not None:
        where += f"/{subcode}"
    message = f"{where}: {scrub(str(error.get('message', '')), secrets)}"
    if code in AUTH_CODES or subcode in AUTH_SUBCODES or code in PERMISSION_CODES:
        return AuthFailed(message)
    if code in RATE_CODES:
        estimate = _usage(response.headers)[1]
        wait = estimate if estimate > 0 else RATE_WAITS.get(code or 0, DEFAULT_RATE_WAIT)
        return RateLimited(wait, message)
    return GraphError(message, code=code, subcode=subcode)


def scrub(message: str, secrets: Sequence[str]) -> str:
    """A platform message made safe to store: no secrets, no token-like strings, bounded."""
    for secret in secrets:
        if secret:
            message = message.replace(secret, "[redacted]")
    return _TOKEN_LIKE.sub("[redacted]", message)[:MAX_MESSAGE]


def usage_wait(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait when the usage headers say we are near the limit, else None.

    ``X-App-Usage`` holds percentages; ``X-Business-Use-Case-Usage`` holds percentages per
    object and ``estimated_time_to_regain_access`` in minutes. A missing header is not zero
    usage, but there is nothing to act on either.
    """
    percent, estimate = _usage(headers)
    if percent < SLOW_DOWN_PERCENT and estimate <= 0:
        return None
    return max(estimate, SLOW_DOWN_WAIT)


def _usage(headers: Mapping[str, str]) -> tuple[float, float]:
    """(highest usage percentage, seconds until access is regained) from the headers."""
    rows: list[Any] = [_json(headers.get("x-app-usage"))]
    buc = _json(headers.get("x-business-use-case-usage"))
    if isinstance(buc, dict):
        rows += [row for entries in buc.values() if isinstance(entries, list) for row in entries]
    percent, minutes = 0.0, 0.0
    for row in rows:
        if isinstance(row, dict):
            for key in ("call_count", "total_time", "total_cputime"):
                percent = max(percent, _number(row.get(key)))
            minutes = max(minutes, _number(row.get("estimated_time_to_regain_access")))
    return percent, minutes * 60.0


def _json(value: str | None) -> Any:
    if not value:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return None


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --- the client -------------------------------------------------------------------------


class GraphApi:
    """Graph API calls for one token: reads (with the usage check) and moderation writes."""

    def __init__(
        self,
        settings: GraphSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        secrets = [s for s in (settings.token, settings.app_secret) if s]
        self._proof = (
            hmac.new(
                settings.app_secret.encode(), settings.token.encode(), hashlib.sha256
            ).hexdigest()
            if settings.app_secret
            else None
        )
        base_url = f"{settings.api_base}/{settings.version}/"
        common: dict[str, Any] = {
            "transport": transport,
            "headers": {"Authorization": f"Bearer {settings.token}"},
            "error_mapper": graph_error_mapper(secrets),
            "sleep": sleep,
        }
        self._http = HttpClient(HttpOptions(base_url=base_url), **common)
        # Creating (a public reply) is never retried within the call: a timeout after Meta
        # stored the comment would post it twice. The caller reads the thread before retrying.
        self._once = HttpClient(HttpOptions(base_url=base_url, retries=0), **common)

    async def read(self, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """GET a JSON object; near the usage limit raise RateLimited (reads only, so a
        moderation call that worked is never reported as failed)."""
        response = await self._http.get(path, params=self._signed(params))
        wait = usage_wait(response.headers)
        if wait is not None:
            raise RateLimited(wait, f"GET {response.path}: usage headers near the limit")
        if not isinstance(response.body, dict):
            raise PayloadInvalid(f"GET {response.path}: not a JSON object", response.text)
        return response.body

    async def write(self, method: str, path: str, data: Mapping[str, str] | None = None) -> None:
        """POST or DELETE; the Graph API answers ``{"success": true}``."""
        response = await self._http.request(method, path, params=self._signed({}), data=data)
        body = response.body
        if not isinstance(body, dict) or body.get("success") is not True:
            raise ConnectorUnavailable(f"{method} {response.path}: success not confirmed")

    async def create(self, path: str, data: Mapping[str, str]) -> str:
        """POST that creates an object (a comment), once; the Graph API answers ``{"id": ...}``."""
        response = await self._once.request("POST", path, params=self._signed({}), data=data)
        body = response.body
        new_id = body.get("id") if isinstance(body, dict) else None
        if not isinstance(new_id, str | int) or isinstance(new_id, bool) or not str(new_id):
            raise ConnectorUnavailable(f"POST {response.path}: no id in the answer")
        return str(new_id)

    def _signed(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {**params, "appsecret_proof": self._proof} if self._proof else dict(params)

    async def aclose(self) -> None:
        """Close the connection pools."""
        await self._http.aclose()
        await self._once.aclose()


# --- payload helpers ----------------------------------------------------------------------


def listing(body: Mapping[str, Any], what: str) -> tuple[list[Any], str | None]:
    """The ``data`` items of a paged Graph response and the cursor of the next page."""
    data = body.get("data")
    if not isinstance(data, list):
        raise PayloadInvalid(f"{what}: no data list", json.dumps(body, default=str))
    return data, next_after(body)


def next_after(body: Mapping[str, Any]) -> str | None:
    """``paging.cursors.after``, but only when ``paging.next`` says there is a next page."""
    paging = body.get("paging")
    if not isinstance(paging, dict) or not paging.get("next"):
        return None
    cursors = paging.get("cursors")
    after = cursors.get("after") if isinstance(cursors, dict) else None
    return after if isinstance(after, str) and after else None


def parse_time(value: Any) -> datetime:
    """A Graph time (``2026-10-05T14:03:11+0000``) as aware UTC."""
    if not isinstance(value, str):
        raise ValueError(f"time must be a string, got {type(value).__name__}")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"time {value!r} has no zone")
    return parsed.astimezone(UTC)


def collect(entries: Sequence[Entry]) -> tuple[list[Post], list[Reject], list[str]]:
    """Map each item; a malformed one becomes a Reject. Returns posts, rejects and every id
    seen (rejected items too, so a bad item is never taken for a deleted one)."""
    posts: list[Post] = []
    rejects: list[Reject] = []
    ids: list[str] = []
    for item, parse in entries:
        if isinstance(item, dict) and item.get("id") is not None:
            ids.append(str(item["id"]))
        try:
            posts.append(parse(item))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            error = f"{type(err).__name__}: {err}"[:MAX_MESSAGE]
            rejects.append(Reject(error=error, payload=json.dumps(item, default=str)))
    return posts, rejects, ids


def mapping(item: Any, key: str) -> Mapping[str, Any]:
    """``item[key]`` when it is an object, else empty."""
    value = item.get(key) if isinstance(item, dict) else None
    return value if isinstance(value, dict) else {}


def optional_text(value: Any) -> str | None:
    """A string field, or None."""
    return value if isinstance(value, str) and value else None


def require_id(item: Any) -> str:
    """The item's ``id`` (items must be objects with an id)."""
    if not isinstance(item, dict):
        raise TypeError(f"item must be an object, got {type(item).__name__}")
    value = item.get("id")
    if not isinstance(value, str | int) or isinstance(value, bool) or not str(value):
        raise ValueError("item has no id")
    return str(value)


# --- the poll engine ----------------------------------------------------------------------

_GRAPH_ID = re.compile(r"^[0-9]+(_[0-9]+)?$")


@dataclass(kw_only=True)
class _Step:
    """What one ``fetch`` has gathered so far."""

    posts: list[Post]
    rejects: list[Reject]
    gone: list[str]

    def empty(self) -> bool:
        return not (self.posts or self.rejects or self.gone)


class GraphConnector:
    """The poll engine and comment moderation shared by the Graph API connectors.

    Own-account sources read the listing (``/feed``, ``/media``) newest first, following pages
    only while every item is newer than the last poll's newest, then re-read the comments of
    the newest ``watch_threads`` threads (and of last poll's threads, so a deleted post is
    noticed) one page per ``fetch``. Mention sources read their listing (``/tagged``,
    ``/tags``) and send only items newer than the saved mark.
    """

    name: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.HIDE, Capability.UNHIDE, Capability.DELETE, Capability.REPLY}
    )
    id_option: ClassVar[str]  # "page_id" / "ig_user_id"
    hide_field: ClassVar[str]  # "is_hidden" / "hide"
    check_fields: ClassVar[str]
    comment_limit: ClassVar[int] = 100
    report_help: ClassVar[str]
    post_help: ClassVar[str]
    reply_limit: ClassVar[int] = 8000  # characters in one comment
    text_field: ClassVar[str] = "message"  # a comment's text when read back

    def __init__(
        self, *, settings: GraphSettings, kind: SourceKind, account: str, api: GraphApi
    ) -> None:
        self.settings = settings
        self.kind = kind
        self.account = account
        self.api = api

    @classmethod
    def from_context(cls, context: SourceContext) -> Self:
        """Build from ``context.options`` and ``context.secrets``; errors name the key."""
        settings = graph_settings(context, cls.id_option)
        api = GraphApi(settings, transport=context.transport, sleep=context.sleep)
        return cls(
            settings=settings,
            kind=context.kind,
            account=context.account or settings.object_id,
            api=api,
        )

    # Platform hooks ------------------------------------------------------------------

    def listing_path(self) -> str:
        """The edge listing this source's threads (posts or media)."""
        raise NotImplementedError

    def listing_fields(self) -> str:
        """``fields=`` for the listing."""
        raise NotImplementedError

    def parse_top(self, item: Any) -> Post:
        """One listing item (a post or media) as a Post."""
        raise NotImplementedError

    def thread_params(self) -> dict[str, str]:
        """Query parameters for ``/{thread-id}/comments``."""
        raise NotImplementedError

    def thread_entries(self, items: Sequence[Any], thread: str, link: str | None) -> list[Entry]:
        """The comments of one page, each with its mapping function."""
        raise NotImplementedError

    def complete(self, items: Sequence[Any]) -> bool:
        """False when a page holds only part of some replies (then nothing is marked gone)."""
        return True

    def reply_edge(self, parent: str, thread: str | None) -> str:
        """The edge of ``parent`` a reply is posted to (and read back from)."""
        return "comments"

    def reply_read_params(self) -> dict[str, str]:
        """Extra parameters for reading back a thread's comments, newest first if possible."""
        return {}

    # Connector protocol --------------------------------------------------------------

    async def check(self) -> None:
        """One cheap authenticated call: read the account object itself."""
        body = await self.api.read(self.settings.object_id, {"fields": self.check_fields})
        if "id" not in body:
            raise PayloadInvalid("account object has no id", json.dumps(body, default=str))

    async def aclose(self) -> None:
        """Release network resources."""
        await self.api.aclose()

    async def fetch(self, cursor: Cursor) -> Batch:
        """One page: the listing, or the comments of one watched thread.

        Empty steps (a thread with no comments) are skipped within one call, so the poller,
        which stops at an empty page, still reaches every watched thread.
        """
        state = _valid_state(read_state(cursor))
        step = _Step(posts=[], rejects=[], gone=[])
        for _ in range(_MAX_STEPS):
            if "todo" in state.get("run", {}):
                await self._thread_step(state, step)
            else:
                await self._listing_step(state, step)
            if "run" not in state or not step.empty():
                break
        return Batch(
            posts=tuple(step.posts),
            rejects=tuple(step.rejects),
            gone=tuple(dict.fromkeys(step.gone)),
            cursor=write_state(state),
            exhausted="run" not in state,
        )

    async def moderate(self, capability: Capability, post: ModerationTarget) -> ModerationResult:
        """Hide, unhide or delete a comment, or reply in its thread (``post.text``); reporting
        and acting on posts are not possible."""
        if capability is Capability.REPORT:
            return ModerationResult(supported=False, done=False, detail=self.report_help)
        if capability is Capability.REPLY:
            return await self._reply(post)
        if post.parent_id is None or post.external_id == post.thread_id:
            return ModerationResult(supported=False, done=False, detail=self.post_help)
        if not _GRAPH_ID.match(post.external_id):
            detail = f"{post.external_id!r} is not a {self.name} comment id"
            return ModerationResult(supported=False, done=False, detail=detail)
        if capability is Capability.DELETE:
            await self.api.write("DELETE", post.external_id)
        else:
            hidden = "true" if capability is Capability.HIDE else "false"
            await self.api.write("POST", post.external_id, {self.hide_field: hidden})
        return ModerationResult(supported=True, done=True, detail=f"{capability.value}: done")

    async def _reply(self, post: ModerationTarget) -> ModerationResult:
        """Reply under the removed comment's parent (the post, or the comment it answered):
        a hidden comment's own replies are hidden with it, and Instagram refuses them.

        Idempotent: when the thread already holds the same message, nothing is posted."""
        message = (post.text or "").strip()
        if not 0 < len(message) <= self.reply_limit:
            raise ValueError(f"a reply needs target.text of 1 to {self.reply_limit} characters")
        parent = post.parent_id
        if parent is None or post.external_id == post.thread_id:
            detail = f"only a comment has a thread to reply in on {self.name}; {self.post_help}"
            return ModerationResult(supported=False, done=False, detail=detail)
        if not _GRAPH_ID.match(parent):
            detail = f"{parent!r} is not a {self.name} post or comment id"
            return ModerationResult(supported=False, done=False, detail=detail)
        path = f"{parent}/{self.reply_edge(parent, post.thread_id)}"
        existing = await self._posted(path, message)
        if existing is not None:
            return ModerationResult(supported=True, done=True, detail=f"reply: already {existing}")
        new_id = await self.api.create(path, {"message": message})
        return ModerationResult(supported=True, done=True, detail=f"reply: posted {new_id}")

    async def _posted(self, path: str, message: str) -> str | None:
        """The id of a comment at ``path`` (first page) whose text is ``message``, if any."""
        params: dict[str, Any] = {"fields": f"id,{self.text_field}", "limit": self.comment_limit}
        params.update(self.reply_read_params())
        items, _ = listing(await self.api.read(path, params), path)
        wanted = " ".join(message.split())
        for item in items:
            text = item.get(self.text_field) if isinstance(item, dict) else None
            if isinstance(text, str) and " ".join(text.split()) == wanted:
                return str(item.get("id"))
        return None

    # The engine ----------------------------------------------------------------------

    async def _listing_step(self, state: dict[str, Any], step: _Step) -> None:
        run = state.setdefault("run", {"top": []})
        own = self.kind is SourceKind.OWN
        limit = self.settings.watch_threads if own else self.settings.page_size
        params: dict[str, Any] = {"fields": self.listing_fields(), "limit": limit}
        if run.get("after"):
            params["after"] = run["after"]
        body = await self.api.read(self.listing_path(), params)
        items, after = listing(body, self.listing_path())
        posts, rejects, ids = collect([(item, self.parse_top) for item in items])
        if not run.get("after"):
            run["top"] = ids[: self.settings.watch_threads]
        _note_newest(run, posts)
        step.posts += posts if own else _unseen(state, posts)
        step.rejects += rejects
        links = state.setdefault("links", {})
        links.update({p.external_id: p.permalink for p in posts if own and p.permalink})
        if after and _newer_than_mark(state, posts):
            run["after"] = after
        else:
            self._listing_done(state)

    def _listing_done(self, state: dict[str, Any]) -> None:
        run = state.pop("run")
        _advance_mark(state, run)
        if self.kind is not SourceKind.OWN:
            return
        todo = list(dict.fromkeys([*run["top"], *state.get("threads", [])]))
        state["threads"] = run["top"]
        if todo:
            state["run"] = {"todo": todo}
        else:
            _cycle_done(state)

    async def _thread_step(self, state: dict[str, Any], step: _Step) -> None:
        run = state["run"]
        thread = run["todo"][0]
        params: dict[str, Any] = {**self.thread_params(), "limit": self.comment_limit}
        if run.get("after"):
            params["after"] = run["after"]
        try:
            body = await self.api.read(f"{thread}/comments", params)
        except GraphError as err:
            if not err.missing:
                raise
            step.gone += [thread, *state.get("watched", {}).pop(thread, [])]
            state["threads"] = [t for t in state.get("threads", []) if t != thread]
            _next_thread(state)
            return
        items, after = listing(body, f"{thread}/comments")
        link = state.get("links", {}).get(thread)
        posts, rejects, ids = collect(self.thread_entries(items, thread, link))
        step.posts += posts
        step.rejects += rejects
        run["seen"] = [*run.get("seen", []), *ids]
        run["partial"] = bool(run.get("partial")) or not self.complete(items)
        if after:
            run["after"] = after
            return
        watched = state.setdefault("watched", {})
        kept = watched.get(thread, []) if run["partial"] else []
        step.gone += track_thread(watched, thread, [*run["seen"], *kept])
        _next_thread(state)


def _valid_state(state: dict[str, Any]) -> dict[str, Any]:
    """The saved state, or a fresh one when it is not what this engine writes."""
    checks = (
        ("run", dict),
        ("threads", list),
        ("watched", dict),
        ("links", dict),
        ("mark", int),
        ("mark_ids", list),
    )
    if all(isinstance(state.get(key, kind()), kind) for key, kind in checks):
        return state
    return {}


def _unix(post: Post) -> int:
    return int(post.created_at.timestamp())


def _note_newest(run: dict[str, Any], posts: Sequence[Post]) -> None:
    """Keep the newest creation time seen in this listing, and the ids created then."""
    for post in posts:
        when = _unix(post)
        if when > run.get("newest", -1):
            run["newest"], run["newest_ids"] = when, [post.external_id]
        elif when == run["newest"]:
            run["newest_ids"].append(post.external_id)


def _advance_mark(state: dict[str, Any], run: Mapping[str, Any]) -> None:
    newest, mark = run.get("newest"), state.get("mark")
    if newest is None:
        return
    if mark is None or newest > mark:
        state["mark"], state["mark_ids"] = newest, run["newest_ids"]
    elif newest == mark:
        state["mark_ids"] = list(dict.fromkeys([*state.get("mark_ids", []), *run["newest_ids"]]))


def _newer_than_mark(state: Mapping[str, Any], posts: Sequence[Post]) -> bool:
    """Page on only while the whole page is newer than last poll's newest (never on a first
    poll, which reads one page)."""
    mark = state.get("mark")
    return mark is not None and bool(posts) and min(_unix(p) for p in posts) > mark


def _unseen(state: Mapping[str, Any], posts: Sequence[Post]) -> list[Post]:
    """Posts the platform says are newer than the saved mark (ties broken by id)."""
    mark, ids = state.get("mark"), set(state.get("mark_ids", []))
    if mark is None:
        return list(posts)
    return [p for p in posts if _unix(p) > mark or (_unix(p) == mark and p.external_id not in ids)]


def _next_thread(state: dict[str, Any]) -> None:
    todo = state["run"]["todo"][1:]
    if todo:
        state["run"] = {"todo": todo}
        return
    del state["run"]
    _cycle_done(state)


def _cycle_done(state: dict[str, Any]) -> None:
    threads = state.get("threads", [])
    state["watched"] = prune_threads(state.get("watched", {}), threads)
    state["links"] = {t: link for t, link in state.get("links", {}).items() if t in threads}
