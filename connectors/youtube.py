"""YouTube Data API v3 connector: comments on the school's channel, or a video search.

Options (``context.options``):

* ``channel_id`` — the school's channel id, ``UC…`` (required for own-account sources).
* ``api_base`` — default ``https://www.googleapis.com/youtube/v3``.
* ``daily_quota`` — quota units this source may spend per day (default 10000, the project's
  default allowance; the day resets at midnight Pacific time). Counted in the cursor.
* ``page_size`` — ``maxResults`` per list call, 1–100 (search: at most 50; default 100).
* ``watch_threads`` — how many of the newest comment threads are re-read every poll to notice
  edits and deletions, 0–50 (default 20).
* ``backfill_days`` — how far back the first poll reads, 1–365 (default 7).
* ``search_pages`` — search.list pages per mention poll, 1–5 (default 1; 100 units each).
* ``ban_author_on_delete`` — also ban the author when deleting (rejecting) (default false).
* ``timeout`` — seconds per HTTP call (default 30).

Secrets (``context.secrets``): ``api_key`` for reads, and/or ``oauth_token`` (an OAuth 2.0 access
token with scope ``https://www.googleapis.com/auth/youtube.force-ssl``, from the channel owner)
for reads and moderation. At least one is required.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any, ClassVar, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
from connectors.http import ErrorMapper, HttpClient, HttpOptions, Response
from connectors.state import (
    MAX_WATCHED_THREADS,
    prune_threads,
    read_state,
    track_thread,
    write_state,
)

__all__ = ["YouTubeConnector", "comment_to_post", "pacific_reset", "video_to_post"]

API_BASE = "https://www.googleapis.com/youtube/v3"
COST = {"commentThreads": 1, "comments": 1, "channels": 1, "search": 100, "moderate": 50}
RATE_LIMIT_WAIT = 60.0  # rateLimitExceeded: a short-term limit, unlike the daily quota
STATUS = {
    Capability.HIDE: "heldForReview",
    Capability.UNHIDE: "published",
    Capability.DELETE: "rejected",
}
REPORT_ROUTE = "report it on the web (⋯ → Report on the comment)"
AUTH_REASONS = frozenset({"keyInvalid", "keyExpired", "API_KEY_INVALID", "authError"})
REFUSALS = frozenset({"operationNotSupported", "commentNotFound"})
try:
    PACIFIC: timezone | ZoneInfo = ZoneInfo("America/Los_Angeles")
except ZoneInfoNotFoundError:  # no tz database: standard time errs late by an hour, never early
    PACIFIC = timezone(timedelta(hours=-8))


def pacific_reset(now: datetime) -> tuple[date, float]:
    """Today's quota day (Pacific date) and the seconds until its quota resets."""
    local = now.astimezone(PACIFIC)
    midnight = datetime.combine(local.date() + timedelta(days=1), time(), tzinfo=PACIFIC)
    return local.date(), max((midnight - now).total_seconds(), 1.0)


def _time(value: Any) -> datetime:
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    return parsed


def comment_to_post(
    comment: Mapping[str, Any], *, kind: SourceKind, account: str | None, video_id: str = ""
) -> Post:
    """Map one ``youtube#comment`` resource to a Post; raises on a malformed item."""
    snippet = comment["snippet"]
    comment_id = str(comment["id"])
    video = str(snippet.get("videoId") or video_id)
    parent = snippet.get("parentId")
    published = _time(snippet["publishedAt"])
    updated = _time(snippet["updatedAt"]) if snippet.get("updatedAt") else published
    # textOriginal is guaranteed only to the comment's author; textDisplay always comes
    # (plain text, because we ask for textFormat=plainText).
    text = snippet.get("textOriginal") or snippet.get("textDisplay") or ""
    if not isinstance(text, str):
        raise TypeError("comment text is not a string")
    author = snippet.get("authorChannelId") or {}
    return Post(
        platform="youtube",
        external_id=comment_id,
        text=text,
        created_at=published,
        updated_at=updated if updated != published else None,
        source_kind=kind,
        parent_id=str(parent) if parent else video or None,
        thread_id=str(parent or comment_id),
        author_id=str(author["value"]) if author.get("value") else None,
        author_handle=snippet.get("authorDisplayName"),
        author_name=snippet.get("authorDisplayName"),
        permalink=f"https://www.youtube.com/watch?v={video}&lc={comment_id}" if video else None,
        account=account,
        raw=dict(comment),
    )


def video_to_post(item: Mapping[str, Any], *, kind: SourceKind, account: str | None) -> Post:
    """Map one ``youtube#searchResult`` (a video) to a Post: title and description as text."""
    video = str(item["id"]["videoId"])
    snippet = item["snippet"]
    thumbs = snippet.get("thumbnails") or {}
    best = thumbs.get("high") or thumbs.get("medium") or thumbs.get("default") or {}
    return Post(
        platform="youtube",
        external_id=video,
        text=f"{snippet.get('title', '')}\n\n{snippet.get('description', '')}".strip(),
        created_at=_time(snippet["publishedAt"]),
        source_kind=kind,
        thread_id=video,
        author_id=snippet.get("channelId"),
        author_name=snippet.get("channelTitle"),
        media=(Media(url=str(best["url"]), type="image"),) if best.get("url") else (),
        permalink=f"https://www.youtube.com/watch?v={video}",
        account=account,
        raw=dict(item),
    )


def _thread_posts(
    item: Mapping[str, Any], kind: SourceKind, account: str | None
) -> tuple[list[Post], int]:
    """The top-level comment and included replies of one commentThread, and totalReplyCount."""
    snippet = item["snippet"]
    video = str(snippet.get("videoId") or "")
    posts = [
        comment_to_post(snippet["topLevelComment"], kind=kind, account=account, video_id=video)
    ]
    for reply in (item.get("replies") or {}).get("comments") or ():
        posts.append(comment_to_post(reply, kind=kind, account=account, video_id=video))
    return posts, int(snippet.get("totalReplyCount") or 0)


def _reasons(response: Response) -> set[str]:
    """The ``errors[].reason`` values and any ``google.rpc.ErrorInfo`` reasons of an error."""
    error = response.body.get("error") if isinstance(response.body, dict) else None
    if not isinstance(error, dict):
        return set()
    listed = [*(error.get("errors") or ()), *(error.get("details") or ())]
    return {str(e.get("reason", "")) for e in listed if isinstance(e, dict)} - {""}


class _Refused(ConnectorUnavailable):
    """YouTube refused a moderation call for a reason retrying will not change."""


def _error_mapper(clock: Callable[[], datetime]) -> ErrorMapper:
    """Google's error shapes → our errors (quota 403 → RateLimited until the Pacific reset)."""

    def mapped(response: Response) -> ConnectorError | None:
        if response.ok:
            return None
        reasons = _reasons(response)
        where = f"YouTube {response.path}: HTTP {response.status} {','.join(sorted(reasons))}"
        if reasons & {"quotaExceeded", "dailyLimitExceeded", "RATE_LIMIT_EXCEEDED"}:
            return RateLimited(pacific_reset(clock())[1], where.strip())
        if reasons & {"rateLimitExceeded", "userRateLimitExceeded"}:
            return RateLimited(RATE_LIMIT_WAIT, where.strip())
        if response.status in (401, 403) or reasons & AUTH_REASONS:
            return AuthFailed(where.strip())
        if reasons & REFUSALS:
            return _Refused(where.strip())
        return None  # the shared default: 429 → RateLimited, else ConnectorUnavailable

    return mapped


def _int_option(options: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = options.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"options.{key}: must be a whole number from {low} to {high}")
    return value


def _items(response: Response) -> tuple[list[Any], str | None]:
    body = response.body
    if not isinstance(body, dict) or not isinstance(body.get("items", []), list):
        raise PayloadInvalid(f"YouTube {response.path}: not a list response", response.text)
    token = body.get("nextPageToken")
    return list(body.get("items", [])), str(token) if token else None


class YouTubeConnector:
    """Comments and replies on the school's YouTube channel, or a video search for its names."""

    name: ClassVar[str] = "youtube"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.HIDE, Capability.UNHIDE, Capability.DELETE}
    )
    # 15 minutes: an own-account poll costs 1 unit per 100 threads plus 1 per re-read thread
    # with more than 5 replies (~96 polls/day fit easily in 10,000 units); search costs 100.
    poll_interval: ClassVar[float] = 900.0
    rate_limit: ClassVar[str] = "daily quota (10,000 units by default), counted locally"

    def __init__(self, context: SourceContext, *, channel_id: str) -> None:
        self.context = context
        self.channel_id = channel_id
        options = context.options
        self.daily_quota = _int_option(options, "daily_quota", 10_000, 1, 100_000_000)
        self.page_size = _int_option(options, "page_size", 100, 1, 100)
        self.watch = _int_option(options, "watch_threads", 20, 0, MAX_WATCHED_THREADS)
        self.backfill = timedelta(days=_int_option(options, "backfill_days", 7, 1, 365))
        self.search_pages = _int_option(options, "search_pages", 1, 1, 5)
        self.ban_author = bool(options.get("ban_author_on_delete", False))
        self.account = context.account or channel_id or None
        self.api_key = context.secrets.get("api_key", "")
        self.oauth_token = context.secrets.get("oauth_token", "")
        self.query = "|".join(f'"{t.replace(chr(34), " ").strip()}"' for t in context.search_terms)
        self._unsaved_units = 0  # moderation spends quota outside fetch; added at the next fetch
        self.http = HttpClient(
            HttpOptions(
                base_url=str(options.get("api_base", API_BASE)).rstrip("/"),
                timeout=float(_int_option(options, "timeout", 30, 1, 600)),
            ),
            transport=context.transport,
            sleep=context.sleep,
            error_mapper=_error_mapper(context.clock),
        )

    @classmethod
    def from_context(cls, context: SourceContext) -> Self:
        """Validate options and secrets; raise ValueError naming the key."""
        base = context.options.get("api_base", API_BASE)
        if not isinstance(base, str) or not base.startswith(("http://", "https://")):
            raise ValueError("options.api_base: must be an http(s) URL")
        if not context.secrets.get("api_key") and not context.secrets.get("oauth_token"):
            raise ValueError(
                "credentials.api_key: required unless oauth_token is given "
                "(give api_key_env, api_key_file or api_key_credential)"
            )
        channel_id = str(context.options.get("channel_id", "")).strip()
        if context.kind == SourceKind.OWN and not channel_id.startswith("UC"):
            raise ValueError("options.channel_id: the school's channel id (starts with UC)")
        if context.kind == SourceKind.MENTION and not any(t.strip() for t in context.search_terms):
            raise ValueError("search_terms: a YouTube mention source needs at least one term")
        if not isinstance(context.options.get("ban_author_on_delete", False), bool):
            raise ValueError("options.ban_author_on_delete: must be true or false")
        return cls(context, channel_id=channel_id)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()

    def _read_auth(self) -> tuple[dict[str, str], dict[str, str]]:
        """(params, headers) for a read: the API key if there is one, else the OAuth token."""
        if self.api_key:
            return {"key": self.api_key}, {}
        return {}, {"Authorization": f"Bearer {self.oauth_token}"}

    async def _get(self, state: dict[str, Any], resource: str, params: dict[str, Any]) -> Response:
        """One list call, charged to the day's quota first; over the quota → RateLimited."""
        self._spend(state, COST[resource])
        auth, headers = self._read_auth()
        return await self.http.get(f"/{resource}", params={**params, **auth}, headers=headers)

    def _spend(self, state: dict[str, Any], units: int) -> None:
        day, wait = pacific_reset(self.context.clock())
        quota = state.get("quota") or {}
        used = int(quota.get("used", 0)) if quota.get("day") == day.isoformat() else 0
        used += self._unsaved_units
        if used + units > self.daily_quota:
            state["quota"] = {"day": day.isoformat(), "used": used}
            raise RateLimited(wait, f"YouTube daily quota of {self.daily_quota} units spent")
        self._unsaved_units = 0
        state["quota"] = {"day": day.isoformat(), "used": used + units}

    async def check(self) -> None:
        """channels.list for the school's channel (1 unit), and the OAuth token's own channel."""
        auth, headers = self._read_auth()
        if self.channel_id:
            params = {"part": "id", "id": self.channel_id, **auth}
            await self.http.get("/channels", params=params, headers=headers)
        elif self.api_key:
            await self.http.get("/i18nLanguages", params={"part": "id", **auth})
        if self.oauth_token and (self.api_key or not self.channel_id):
            bearer = {"Authorization": f"Bearer {self.oauth_token}"}
            await self.http.get("/channels", params={"part": "id", "mine": "true"}, headers=bearer)

    # ---- fetch ----------------------------------------------------------------------------

    async def fetch(self, cursor: Cursor) -> Batch:
        """One page: comment threads newest first, then full replies of busy threads (own),
        or one page of video search results (mention)."""
        state = read_state(cursor)
        if self.context.kind == SourceKind.MENTION:
            step = state.get("step") or {"stage": "search"}
            posts, rejects, gone = await self._search_page(state, step)
        else:
            step = state.get("step") or {"stage": "threads"}
            if step["stage"] == "threads":
                posts, rejects, gone = await self._threads_page(state, step)
            else:
                posts, rejects, gone = await self._replies_page(state, step)
        return Batch(
            posts=tuple(posts),
            cursor=write_state(state),
            gone=tuple(gone),
            rejects=tuple(rejects),
            exhausted="step" not in state,
        )

    def _floor(self, state: Mapping[str, Any]) -> str:
        """Stop paging at threads published at or before this time (last poll's newest)."""
        return str(state.get("mark") or (self.context.clock() - self.backfill).isoformat())

    async def _threads_page(
        self, state: dict[str, Any], step: dict[str, Any]
    ) -> tuple[list[Post], list[Reject], list[str]]:
        params = {
            "part": "snippet,replies",
            "allThreadsRelatedToChannelId": self.channel_id,
            "order": "time",
            "textFormat": "plainText",
            "maxResults": self.page_size,
            **({"pageToken": step["token"]} if step.get("token") else {}),
        }
        items, token = _items(await self._get(state, "commentThreads", params))
        posts, rejects, threads = self._map_threads(items)
        first_page = "token" not in step
        gone = self._threads_gone(state, threads, complete=token is None) if first_page else []
        if first_page and threads:
            step["newest"] = max(t["published"] for t in threads)
        gone += self._track_replies(state, step, threads)
        floor = _time(self._floor(state))
        if token and all(_time(t["published"]) > floor for t in threads):
            step["token"] = token
            state["step"] = step
        else:
            self._threads_done(state, step)
        return posts, rejects, gone

    def _map_threads(
        self, items: list[Any]
    ) -> tuple[list[Post], list[Reject], list[dict[str, Any]]]:
        posts: list[Post] = []
        rejects: list[Reject] = []
        threads: list[dict[str, Any]] = []
        for item in items:
            try:
                mapped, total = _thread_posts(item, self.context.kind, self.account)
            except (KeyError, TypeError, ValueError, AttributeError) as err:
                rejects.append(Reject(error=f"YouTube thread: {err!r}", payload=json.dumps(item)))
                continue
            posts.extend(mapped)
            top = mapped[0]
            threads.append(
                {
                    "id": top.external_id,
                    "published": top.created_at.isoformat(),
                    "replies": [p.external_id for p in mapped[1:]],
                    "total": total,
                }
            )
        return posts, rejects, threads

    def _threads_gone(
        self, state: dict[str, Any], threads: list[dict[str, Any]], *, complete: bool
    ) -> list[str]:
        """Watched threads missing from the newest page though they should be on it; then
        watch the newest ``watch_threads`` threads on it."""
        watch: dict[str, str] = state.get("watch") or {}
        present = {t["id"] for t in threads}
        oldest = min((_time(t["published"]) for t in threads), default=None)
        gone = [
            t
            for t, published in watch.items()
            if t not in present
            and (complete or (oldest is not None and _time(published) >= oldest))
        ]
        newest = sorted(threads, key=lambda t: t["published"], reverse=True)[: self.watch]
        state["watch"] = {t["id"]: t["published"] for t in newest}
        state["seen"] = prune_threads(state.get("seen") or {}, state["watch"])
        return gone

    def _track_replies(
        self, state: dict[str, Any], step: dict[str, Any], threads: list[dict[str, Any]]
    ) -> list[str]:
        """Replies of watched threads: complete ones are tracked now, busy ones (more replies
        than the 5 a thread carries) queued for comments.list; new busy threads are too."""
        seen: dict[str, list[str]] = state.setdefault("seen", {})
        watch = state.get("watch") or {}
        floor = _time(self._floor(state))
        gone: list[str] = []
        for thread in threads:
            if thread["total"] > len(thread["replies"]):
                if thread["id"] in watch or _time(thread["published"]) > floor:
                    step.setdefault("queue", []).append(thread["id"])
            elif thread["id"] in watch:
                gone += track_thread(seen, thread["id"], thread["replies"])
        return gone

    def _threads_done(self, state: dict[str, Any], step: dict[str, Any]) -> None:
        if step.get("newest"):
            state["mark"] = step["newest"]
        queue = list(dict.fromkeys(step.get("queue") or ()))
        if queue:
            state["step"] = {"stage": "replies", "queue": queue}
        else:
            state.pop("step", None)

    async def _replies_page(
        self, state: dict[str, Any], step: dict[str, Any]
    ) -> tuple[list[Post], list[Reject], list[str]]:
        thread = step["queue"][0]
        params = {
            "part": "snippet",
            "parentId": thread,
            "textFormat": "plainText",
            "maxResults": self.page_size,
            **({"pageToken": step["token"]} if step.get("token") else {}),
        }
        items, token = _items(await self._get(state, "comments", params))
        posts, rejects = self._map_each(items, comment_to_post)
        step.setdefault("ids", []).extend(p.external_id for p in posts)
        state["step"] = step
        if token:
            step["token"] = token
            return posts, rejects, []
        gone: list[str] = []
        if thread in (state.get("watch") or {}):
            gone = track_thread(state.setdefault("seen", {}), thread, step.get("ids", []))
        step["queue"].pop(0)
        step.pop("token", None)
        step.pop("ids", None)
        if not step["queue"]:
            state.pop("step", None)
        return posts, rejects, gone

    def _map_each(self, items: list[Any], mapper: Any) -> tuple[list[Post], list[Reject]]:
        posts: list[Post] = []
        rejects: list[Reject] = []
        for item in items:
            try:
                posts.append(mapper(item, kind=self.context.kind, account=self.account))
            except (KeyError, TypeError, ValueError, AttributeError) as err:
                rejects.append(Reject(error=f"YouTube item: {err!r}", payload=json.dumps(item)))
        return posts, rejects

    async def _search_page(
        self, state: dict[str, Any], step: dict[str, Any]
    ) -> tuple[list[Post], list[Reject], list[str]]:
        """search.list finds videos only (100 units a page); newest first since the last mark."""
        after = _time(self._floor(state)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        params = {
            "part": "snippet",
            "type": "video",
            "q": self.query,
            "order": "date",
            "publishedAfter": step.setdefault("after", after),
            "maxResults": min(self.page_size, 50),
            **({"pageToken": step["token"]} if step.get("token") else {}),
        }
        items, token = _items(await self._get(state, "search", params))
        posts, rejects = self._map_each(items, video_to_post)
        if posts and "token" not in step:
            step["newest"] = max(p.created_at for p in posts).isoformat()
        step["pages"] = int(step.get("pages", 0)) + 1
        state["step"] = step
        if token and step["pages"] < self.search_pages:
            step["token"] = token
        else:
            if step.get("newest"):
                state["mark"] = step["newest"]
            state.pop("step", None)
        return posts, rejects, []

    # ---- moderation -----------------------------------------------------------------------

    async def moderate(self, capability: Capability, post: ModerationTarget) -> ModerationResult:
        """comments.setModerationStatus: hide = heldForReview, unhide = published,
        delete = rejected (optionally banning the author); report is web-only."""
        if capability not in STATUS:
            return ModerationResult(
                supported=False,
                done=False,
                detail=f"YouTube has no reporting API (markAsSpam is retired); {REPORT_ROUTE}",
            )
        if not self.oauth_token:
            return ModerationResult(
                supported=False,
                done=False,
                detail="moderation needs secrets.oauth_token (scope youtube.force-ssl)",
            )
        params = {"id": post.external_id, "moderationStatus": STATUS[capability]}
        if capability == Capability.DELETE and self.ban_author:
            params["banAuthor"] = "true"  # only valid with rejected (400 banWithoutReject)
        bearer = {"Authorization": f"Bearer {self.oauth_token}"}
        self._unsaved_units += COST["moderate"]
        try:
            await self.http.request(
                "POST", "/comments/setModerationStatus", params=params, headers=bearer
            )
        except _Refused as err:
            return ModerationResult(supported=False, done=False, detail=f"{err}; {REPORT_ROUTE}")
        return ModerationResult(
            supported=True, done=True, detail=f"comment set to {STATUS[capability]}"
        )
