"""X (Twitter) API v2 connector, through tweepy's ``AsyncClient`` (aiohttp).

Options (``context.options``):

* ``user_id`` — the school's numeric X account id (required for own-account sources).
* ``page_size`` — results per API call, 10–100 (default 100).
* ``watch_conversations`` — how many of the school's newest conversations (at most 7 days old:
  recent search reaches back 7 days) have their replies re-read every poll, 0–50 (default 10).
* ``backfill_days`` — how far back the first poll reads, 1–7 (default 7).
* ``timeout`` — seconds per API call (default 30).
* ``api_base`` — only the real base is accepted: tweepy 4.17 hard-codes ``https://api.twitter.com``,
  so the fake platform server cannot serve X (tests patch aiohttp with ``aioresponses``).

Secrets (``context.secrets``):

* ``bearer_token`` — app-only bearer token for every read (required).
* ``user_access_token`` — OAuth 2.0 user-context token (scopes ``tweet.read users.read
  tweet.moderate.write``) for hide/unhide; lasts about 2 hours and is not refreshed here, or
* ``consumer_key``, ``consumer_secret``, ``access_token``, ``access_token_secret`` — OAuth 1.0a
  user context for hide/unhide (these do not expire; preferred).

``context.transport`` may be an ``aiohttp.ClientSession`` to use (the caller closes it).

Edits: X gives every edit a new post id and lists all versions in ``edit_history_tweet_ids``; the
first id there is the item's ``external_id``, so an edit becomes a new version of the same item.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Self

import aiohttp
import tweepy
from tweepy.asynchronous import AsyncClient

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
from connectors.http import HttpOptions, retry_transient
from connectors.state import (
    MAX_WATCHED_THREADS,
    prune_threads,
    read_state,
    track_thread,
    write_state,
)

__all__ = ["XConnector", "snowflake_time", "tweet_to_post"]

API_BASES = ("https://api.twitter.com", "https://api.x.com", "https://api.x.com/2")
TWEET_FIELDS = [
    "author_id",
    "created_at",
    "conversation_id",
    "in_reply_to_user_id",
    "referenced_tweets",
    "edit_history_tweet_ids",
    "attachments",
]
EXPANSIONS = ["author_id", "attachments.media_keys"]
USER_FIELDS = ["username", "name"]
MEDIA_FIELDS = ["type", "url", "preview_image_url"]
SEARCH_WINDOW = timedelta(days=7)  # recent search reaches back 7 days
SEARCH_QUERY_MAX = 512  # characters, on the pay-per-use and Basic access levels
DEFAULT_WAIT = 60.0  # a 429 without x-rate-limit-reset
SNOWFLAKE_EPOCH_MS = 1288834974657
REFUSED_HIDE = re.compile(r"not (permitted|allowed|authorized)|cannot hide", re.IGNORECASE)
REPORT_ROUTE = "report it on the web (⋯ → Report post) or via https://help.x.com/forms"
OAUTH1_KEYS = ("consumer_key", "consumer_secret", "access_token", "access_token_secret")

# tweepy hands back the aiohttp response, so the body text is kept for quarantine and the
# 429 handling stays ours (wait_on_rate_limit would sleep inside the connector, without a cap).
_raw: dict[str, Any] = {"return_type": aiohttp.ClientResponse, "wait_on_rate_limit": False}

OWN_STAGES = ("timeline", "mentions", "conversations")
MENTION_STAGES = ("search",)


def snowflake_time(post_id: str) -> datetime:
    """When an X post id was minted (ids are Twitter snowflakes)."""
    millis = (int(post_id) >> 22) + SNOWFLAKE_EPOCH_MS
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def tweet_to_post(
    tweet: Mapping[str, Any],
    *,
    users: Mapping[str, Mapping[str, Any]],
    media: Mapping[str, Mapping[str, Any]],
    kind: SourceKind,
    account: str | None,
) -> Post:
    """Map one v2 tweet object (with the page's ``includes``) to a Post; raises on a bad item."""
    version = _digits(tweet["id"])
    history = [_digits(i) for i in tweet.get("edit_history_tweet_ids") or [version]]
    first = history[0]
    text = tweet.get("text", "")
    if not isinstance(text, str):
        raise TypeError("text is not a string")
    stamp = _time(tweet["created_at"]) if tweet.get("created_at") else snowflake_time(version)
    user = users.get(str(tweet.get("author_id")), {})
    handle = user.get("username")
    return Post(
        platform="x",
        external_id=first,
        text=text,
        created_at=snowflake_time(first) if first != version else stamp,
        updated_at=stamp if first != version else None,
        source_kind=kind,
        parent_id=_replied_to(tweet),
        thread_id=_opt(tweet.get("conversation_id")),
        author_id=_opt(tweet.get("author_id")),
        author_handle=_opt(handle),
        author_name=_opt(user.get("name")),
        media=_media(tweet, media),
        permalink=f"https://x.com/{handle}/status/{version}"
        if handle
        else f"https://x.com/i/web/status/{version}",
        account=account,
        raw=dict(tweet),
    )


def _digits(value: Any) -> str:
    text = str(value)
    if not text.isdigit():
        raise ValueError(f"not an X post id: {text[:40]!r}")
    return text


def _time(value: Any) -> datetime:
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("created_at has no time zone")
    return parsed


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def _replied_to(tweet: Mapping[str, Any]) -> str | None:
    for ref in tweet.get("referenced_tweets") or ():
        if ref.get("type") == "replied_to":
            return str(ref["id"])
    return None


def _media(tweet: Mapping[str, Any], media: Mapping[str, Mapping[str, Any]]) -> tuple[Media, ...]:
    keys = (tweet.get("attachments") or {}).get("media_keys") or ()
    found = []
    for key in keys:
        item = media.get(str(key), {})
        url = item.get("url") or item.get("preview_image_url")
        if url:
            kind = "image" if item.get("type") == "photo" else "video"
            found.append(Media(url=str(url), type=kind))
    return tuple(found)


def _by_id(items: Any, key: str) -> dict[str, Mapping[str, Any]]:
    if not isinstance(items, list):
        return {}
    return {str(i[key]): i for i in items if isinstance(i, dict) and key in i}


def _page_body(text: str, what: str) -> dict[str, Any]:
    """The JSON page, checked against the documented envelope."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError as err:
        raise PayloadInvalid(f"X {what}: not JSON ({err.msg})", text) from err
    if not isinstance(body, dict) or not isinstance(body.get("data", []), list):
        raise PayloadInvalid(f"X {what}: not a v2 list response", text)
    if not isinstance(body.get("meta", {}), dict) or not isinstance(body.get("includes", {}), dict):
        raise PayloadInvalid(f"X {what}: meta/includes are not objects", text)
    return body


def _wait(reset: int | None, now: datetime) -> float:
    if reset is None:
        return DEFAULT_WAIT
    return max(float(reset) - now.timestamp(), 0.0) + 1.0


RETRIES = HttpOptions(base_url=API_BASES[0])  # shared retry settings; tweepy owns the URL


def _transient(err: BaseException) -> bool:
    """5xx answers, dropped connections and timeouts are worth another try at once."""
    return isinstance(err, tweepy.TwitterServerError | aiohttp.ClientConnectionError | TimeoutError)


def _mapped(err: Exception, what: str, now: datetime) -> ConnectorError:
    """Our error for a tweepy / aiohttp failure (never with tokens or query strings)."""
    if isinstance(err, tweepy.TooManyRequests):
        return RateLimited(_wait(err.reset_time, now), f"X {what}: HTTP 429")
    if isinstance(err, tweepy.HTTPException):
        status = int(err.response.status)
    elif isinstance(err, aiohttp.ClientResponseError):  # e.g. an error page that is not JSON
        status = err.status
    else:
        return ConnectorUnavailable(f"X {what}: {type(err).__name__}")
    if status == 429:
        return RateLimited(DEFAULT_WAIT, f"X {what}: HTTP 429")
    if status in (401, 403):
        return AuthFailed(f"X {what}: HTTP {status}: credentials rejected or not permitted")
    return ConnectorUnavailable(f"X {what}: HTTP {status}")


def _search_query(terms: tuple[str, ...], handle: str) -> str:
    quoted = " OR ".join(f'"{t.replace(chr(34), " ").strip()}"' for t in terms if t.strip())
    query = f"({quoted}) -is:retweet"
    if re.fullmatch(r"[A-Za-z0-9_]{1,15}", handle):
        query += f" -from:{handle}"
    return query


def _int_option(options: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = options.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"options.{key}: must be a whole number from {low} to {high}")
    return value


def _secret_error(name: str) -> ValueError:
    return ValueError(
        f"credentials.{name}: required (give {name}_env, {name}_file or {name}_credential)"
    )


class XConnector:
    """The school's X account (tweets, replies, mentions) or an X recent search for its names."""

    name: ClassVar[str] = "x"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.HIDE, Capability.UNHIDE})
    # 5 minutes: one own-account poll is ~3 + watched-conversation calls; search recent allows
    # 450 calls / 15 min per app; X bills per post read (re-reads are de-duplicated per UTC day).
    poll_interval: ClassVar[float] = 300.0
    rate_limit: ClassVar[str] = "x-rate-limit-* headers, 15-minute windows; 429 on excess"

    def __init__(self, context: SourceContext, *, user_id: str, query: str) -> None:
        self.context = context
        self.user_id = user_id
        self.query = query
        options = context.options
        self.page_size = _int_option(options, "page_size", 100, 10, 100)
        self.watch = _int_option(options, "watch_conversations", 10, 0, MAX_WATCHED_THREADS)
        self.backfill = timedelta(days=_int_option(options, "backfill_days", 7, 1, 7))
        self.timeout = _int_option(options, "timeout", 30, 1, 600)
        self.account = context.account or user_id or None
        self._session: aiohttp.ClientSession | None = None
        self._owns_session = False
        self.reader = AsyncClient(bearer_token=context.secrets["bearer_token"], **_raw)
        self.moderator, self._oauth1 = _moderation_client(context.secrets)

    @classmethod
    def from_context(cls, context: SourceContext) -> Self:
        """Validate options and secrets; raise ValueError naming the key."""
        base = str(context.options.get("api_base", API_BASES[0])).rstrip("/")
        if base not in API_BASES:
            raise ValueError(
                "options.api_base: tweepy 4.17 hard-codes https://api.twitter.com; "
                "X cannot be pointed at another server"
            )
        if not context.secrets.get("bearer_token"):
            raise _secret_error("bearer_token")
        given = [k for k in OAUTH1_KEYS if context.secrets.get(k)]
        if given and len(given) < len(OAUTH1_KEYS):
            raise _secret_error(next(k for k in OAUTH1_KEYS if k not in given))
        user_id = str(context.options.get("user_id", "")).strip()
        if user_id and not user_id.isdigit():
            raise ValueError("options.user_id: the numeric X account id, e.g. 1234567890")
        if context.kind == SourceKind.OWN and not user_id:
            raise ValueError("options.user_id: required for an own-account X source")
        query = ""
        if context.kind == SourceKind.MENTION:
            if not any(t.strip() for t in context.search_terms):
                raise ValueError("search_terms: an X mention source needs at least one term")
            query = _search_query(context.search_terms, context.account.lstrip("@"))
            if len(query) > SEARCH_QUERY_MAX:
                raise ValueError(f"search_terms: the X query is over {SEARCH_QUERY_MAX} characters")
        return cls(context, user_id=user_id, query=query)

    # ---- plumbing -------------------------------------------------------------------------

    def _client_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            given = self.context.transport
            if isinstance(given, aiohttp.ClientSession):
                self._session = given
            else:
                timeout = aiohttp.ClientTimeout(total=self.timeout)
                self._session, self._owns_session = aiohttp.ClientSession(timeout=timeout), True
            self.reader.session = self._session
            if self.moderator is not None:
                self.moderator.session = self._session
        return self._session

    async def _call(self, what: str, call: Callable[[], Awaitable[Any]]) -> str:
        """Run one tweepy call (which does not retry by itself) through the shared transient
        retry; return the body text, or raise our errors."""
        self._client_session()

        async def attempt() -> str:
            async with asyncio.timeout(self.timeout):
                response = await call()
                return str(await response.text())

        try:
            return await retry_transient(
                attempt, is_transient=_transient, options=RETRIES, sleep=self.context.sleep
            )
        except (tweepy.TweepyException, aiohttp.ClientError, TimeoutError) as err:
            raise _mapped(err, what, self.context.clock()) from err

    async def aclose(self) -> None:
        """Close the aiohttp session if this connector opened it."""
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    async def check(self) -> None:
        """Look up the school's account with the bearer token (and the user token, if set)."""
        handle = self.context.account.lstrip("@")
        if self.user_id:
            uid = self.user_id
            await self._call("users lookup", lambda: self.reader.get_user(id=uid))
        elif handle:
            await self._call("users lookup", lambda: self.reader.get_user(username=handle))
        else:
            query = self.query
            await self._call(
                "search", lambda: self.reader.search_recent_tweets(query, max_results=10)
            )
        if self.moderator is not None:
            client, oauth1 = self.moderator, self._oauth1
            await self._call("users/me", lambda: client.get_me(user_auth=oauth1))

    # ---- fetch ----------------------------------------------------------------------------

    async def fetch(self, cursor: Cursor) -> Batch:
        """One page: timeline, then mentions, then each watched conversation (own), or search."""
        state = read_state(cursor)
        stages = OWN_STAGES if self.context.kind == SourceKind.OWN else MENTION_STAGES
        step = state.get("step") or {"stage": stages[0]}
        if step["stage"] == "conversations" and not self._conversation_queue(state, step):
            state.pop("step", None)
            return Batch(posts=(), cursor=write_state(state))
        what = step["stage"]
        body = _page_body(await self._call(what, lambda: self._request(step, state)), what)
        posts, rejects = self._page(body)
        gone = self._advance(state, step, body, posts, stages)
        return Batch(
            posts=tuple(posts),
            cursor=write_state(state),
            gone=tuple(gone),
            rejects=tuple(rejects),
            exhausted="step" not in state,
        )

    def _request(self, step: dict[str, Any], state: Mapping[str, Any]) -> Any:
        stage, token = step["stage"], step.get("token")
        fields: dict[str, Any] = {
            "tweet_fields": TWEET_FIELDS,
            "expansions": EXPANSIONS,
            "user_fields": USER_FIELDS,
            "media_fields": MEDIA_FIELDS,
            "max_results": self.page_size,
        }
        if stage == "conversations":
            query = f"conversation_id:{step['queue'][0]}"
            return self.reader.search_recent_tweets(query, next_token=token, **fields)
        since = self._since(state, step)
        if stage == "search":
            return self.reader.search_recent_tweets(self.query, next_token=token, **since, **fields)
        call = (
            self.reader.get_users_tweets if stage == "timeline" else self.reader.get_users_mentions
        )
        extra = {"exclude": ["retweets"]} if stage == "timeline" else {}
        return call(self.user_id, pagination_token=token, **since, **extra, **fields)

    def _since(self, state: Mapping[str, Any], step: dict[str, Any]) -> dict[str, Any]:
        """since_id from the saved cursor, or a start time on the first poll (kept in the step so
        every page of one read asks the same question). Recent search refuses a since_id older
        than 7 days, so a stale one falls back to a start time."""
        stage = step["stage"]
        if "start" not in step:
            window = SEARCH_WINDOW - timedelta(hours=1) if stage == "search" else self.backfill
            step["start"] = (self.context.clock() - window).isoformat()
        floor = datetime.fromisoformat(step["start"])
        since = (state.get("since") or {}).get(stage)
        if since and (stage != "search" or snowflake_time(since) > floor):
            return {"since_id": since}
        return {"start_time": floor}

    def _page(self, body: Mapping[str, Any]) -> tuple[list[Post], list[Reject]]:
        includes = body.get("includes") or {}
        users, media = (
            _by_id(includes.get("users"), "id"),
            _by_id(includes.get("media"), "media_key"),
        )
        account = self.account
        latest: dict[str, Post] = {}
        rejects = [
            Reject(error=f"X partial error: {e.get('title', '')}", payload=json.dumps(e))
            for e in body.get("errors") or ()
            if isinstance(e, dict)
        ]
        for tweet in body.get("data") or ():
            try:
                post = tweet_to_post(
                    tweet, users=users, media=media, kind=self.context.kind, account=account
                )
            except (KeyError, TypeError, ValueError, AttributeError) as err:
                rejects.append(Reject(error=f"X post: {err}", payload=json.dumps(tweet)))
                continue
            kept = latest.get(post.external_id)
            if kept is None or int(post.raw["id"]) > int(kept.raw["id"]):  # newest edit wins
                latest[post.external_id] = post
        return list(latest.values()), rejects

    # ---- cursor state ---------------------------------------------------------------------

    def _advance(
        self,
        state: dict[str, Any],
        step: dict[str, Any],
        body: Mapping[str, Any],
        posts: list[Post],
        stages: tuple[str, ...],
    ) -> list[str]:
        """Move the cursor past this page; return ids gone from a fully re-read conversation."""
        meta = body.get("meta") or {}
        if step["stage"] == "timeline":
            self._watch_roots(state, posts)
        if step["stage"] == "conversations":
            step.setdefault("ids", []).extend(p.external_id for p in posts)
        elif "token" not in step and meta.get("newest_id"):
            step["newest"] = str(meta["newest_id"])
        state["step"] = step
        if meta.get("next_token"):
            step["token"] = str(meta["next_token"])
            return []
        step.pop("token", None)
        if step["stage"] == "conversations":
            return self._conversation_done(state, step)
        if step.get("newest"):
            state.setdefault("since", {})[step["stage"]] = step["newest"]
        self._next_stage(state, step["stage"], stages)
        return []

    def _next_stage(self, state: dict[str, Any], stage: str, stages: tuple[str, ...]) -> None:
        position = stages.index(stage) + 1
        if position < len(stages):
            state["step"] = {"stage": stages[position]}
        else:
            state.pop("step", None)

    def _conversation_done(self, state: dict[str, Any], step: dict[str, Any]) -> list[str]:
        seen: dict[str, list[str]] = state.setdefault("seen", {})
        conversation = step["queue"].pop(0)
        gone = track_thread(seen, conversation, step.pop("ids", []))
        if not step["queue"]:
            state.pop("step", None)
        return gone

    def _watch_roots(self, state: dict[str, Any], posts: list[Post]) -> None:
        """Remember the school's own conversation roots (newest first, bounded)."""
        watch: dict[str, str] = state.setdefault("watch", {})
        for post in posts:
            if post.thread_id and post.thread_id == post.external_id:
                watch[post.external_id] = post.created_at.isoformat()
        newest = sorted(watch, key=int, reverse=True)[: self.watch]
        state["watch"] = {k: watch[k] for k in newest}

    def _conversation_queue(self, state: dict[str, Any], step: dict[str, Any]) -> list[str]:
        """The conversations still to re-read this poll (built once, at the start of the stage).
        Ones older than the 7-day search window are dropped without marking replies gone."""
        if "queue" not in step:
            floor = self.context.clock() - SEARCH_WINDOW + timedelta(hours=1)
            watch = state.get("watch") or {}
            fresh = [c for c in watch if datetime.fromisoformat(watch[c]) > floor]
            state["watch"] = {c: watch[c] for c in fresh}
            state["seen"] = prune_threads(state.get("seen") or {}, fresh)
            step["queue"] = sorted(fresh, key=int, reverse=True)
        queue: list[str] = step["queue"]
        return queue

    # ---- moderation -----------------------------------------------------------------------

    async def moderate(self, capability: Capability, post: ModerationTarget) -> ModerationResult:
        """Hide or unhide a reply in one of the school's conversations; nothing else is possible."""
        if capability not in self.capabilities:
            why = "X lets an account delete only its own posts"
            if capability == Capability.REPORT:
                why = "X has no reporting API"
            link = f"https://x.com/i/web/status/{post.external_id}"
            return ModerationResult(
                supported=False, done=False, detail=f"{why}; {REPORT_ROUTE}: {link}"
            )
        if self.moderator is None or not self.user_id:
            return ModerationResult(
                supported=False,
                done=False,
                detail="hiding replies needs options.user_id and a user-context token "
                "(user_access_token, or the four OAuth 1.0a secrets)",
            )
        target, why = await self._own_reply(post)
        if target is None:
            return ModerationResult(supported=False, done=False, detail=f"{why}; {REPORT_ROUTE}")
        return await self._hide(target, hidden=capability == Capability.HIDE)

    async def _own_reply(self, post: ModerationTarget) -> tuple[str | None, str]:
        """The current version id of ``post`` if it replies in a conversation the school
        started (else None and why); one lookup of the reply and its conversation's root."""
        ids = [post.external_id] + ([post.thread_id] if post.thread_id else [])
        tweets = await self._lookup(ids)
        reply = tweets.get(post.external_id)
        if reply is None:
            return None, "X no longer returns this post (deleted or protected)"
        root_id = str(reply.get("conversation_id") or post.thread_id or "")
        if not root_id or root_id == post.external_id:
            return None, "X hides only replies, and this post starts its conversation"
        root = tweets.get(root_id) or (await self._lookup([root_id])).get(root_id)
        if root is None or str(root.get("author_id")) != self.user_id:
            return None, "X hides only replies in conversations the school started"
        history = reply.get("edit_history_tweet_ids") or [post.external_id]
        return str(history[-1]), ""  # hide the newest version of an edited reply

    async def _lookup(self, ids: list[str]) -> dict[str, Mapping[str, Any]]:
        fields = ["author_id", "conversation_id", "edit_history_tweet_ids"]
        text = await self._call(
            "tweets lookup", lambda: self.reader.get_tweets(ids, tweet_fields=fields)
        )
        body = _page_body(text, "tweets lookup")
        return _by_id(body.get("data"), "id")

    async def _hide(self, tweet_id: str, *, hidden: bool) -> ModerationResult:
        assert self.moderator is not None
        client, oauth1 = self.moderator, self._oauth1
        call = client.hide_reply if hidden else client.unhide_reply
        try:
            text = await self._call("hide reply", lambda: call(tweet_id, user_auth=oauth1))
        except AuthFailed as err:
            cause = err.__cause__
            if isinstance(cause, tweepy.Forbidden) and _refused_hide(cause):
                detail = f"X refused to change this reply's visibility; {REPORT_ROUTE}"
                return ModerationResult(supported=False, done=False, detail=detail)
            raise
        try:
            data = json.loads(text).get("data") or {}
        except (json.JSONDecodeError, AttributeError) as err:
            raise PayloadInvalid("X hide reply: not a v2 response", text) from err
        verb = "hidden" if hidden else "unhidden"
        done = data.get("hidden") is hidden
        return ModerationResult(supported=True, done=done, detail=f"reply {tweet_id} {verb}")


def _refused_hide(err: tweepy.Forbidden) -> bool:
    return any(REFUSED_HIDE.search(str(m)) for m in err.api_messages)


def _moderation_client(secrets: Mapping[str, str]) -> tuple[AsyncClient | None, bool]:
    """The user-context client for hide/unhide and whether it signs with OAuth 1.0a."""
    if all(secrets.get(k) for k in OAUTH1_KEYS):
        return AsyncClient(**{k: secrets[k] for k in OAUTH1_KEYS}, **_raw), True
    if secrets.get("user_access_token"):
        return AsyncClient(bearer_token=secrets["user_access_token"], **_raw), False
    return None, False
