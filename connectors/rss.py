"""RSS and Atom feeds (news sites, forums, Google Alerts) as a mention source.

Options (``context.options``):

* ``feeds`` — list of feed URLs (http or https). A feed whose URL is itself a secret (every
  Google Alerts feed URL is) goes in the credentials instead.
* ``require_terms`` — ``true``: keep only entries whose title or summary mention one of the
  source's ``search_terms``; ``false``: keep every entry. Not set (the default): decided per
  feed — Google Alerts feeds are already filtered by Google, so they keep every entry; any
  other feed (a news site's feed carries everything it publishes) needs a term.
* ``api_base`` — base URL for feeds given as a path (``/feeds/news.xml``); default ``""``
  (absolute URLs only). For the tests and the fake platform server.
* ``timeout`` — seconds per request (default 30).

Secrets (``context.secrets``): ``feed_url`` and ``feed_url_<N>`` (N = 1, 2, ...), one feed URL
each. Feed URLs never appear in error messages or the cursor: a feed is named by its option
index and host (``options.feeds[0] (news.example)``) or its secret's name
(``credentials.feed_url_2``), and the cursor keys feeds by a hash of the URL.

One ``fetch`` reads one feed (conditional GET: ``If-None-Match`` / ``If-Modified-Since``; a 304
means nothing new). Feeds that have nothing new are passed over in the same call, so a page is
either some posts or the end of the round. The bytes are parsed with ``feedparser`` from an
in-memory stream, so feedparser never fetches or opens anything itself. Entries already sent
(same id, text and link) are not sent again. A feed that is not a feed raises
``PayloadInvalid`` and any other failure of one feed raises too; either way that feed is passed
over on the next call, so one broken feed cannot starve the others. Feeds have no moderation:
report on the site itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlsplit

import feedparser

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
from connectors.text import html_to_text

__all__ = ["RssConnector", "entry_to_post", "strip_html", "unwrap_google_redirect"]

OPT_FEEDS = "feeds"
OPT_REQUIRE_TERMS = "require_terms"
OPT_API_BASE = "api_base"
OPT_TIMEOUT = "timeout"
SECRET_FEED = re.compile(r"^feed_url(?:_(\d+))?$")
ACCEPT = "application/atom+xml, application/rss+xml, application/xml;q=0.9, text/xml;q=0.9"
RATE_LIMIT_WAIT = 3600.0  # feeds rarely say how long; an hour is the polling interval anyway
MAX_SEEN = 500  # fingerprints kept per feed: more than any feed carries at once
MAX_PAYLOAD = 200_000
NOT_SUPPORTED = (
    "RSS/Atom feeds have no moderation API: report the item on the site that published it "
    "(follow its permalink) or through Report Harmful Content"
)
_GOOGLE_HOST = re.compile(r"^(?:www\.)?google\.[a-z.]+$")


@dataclass(frozen=True, kw_only=True)
class _Feed:
    url: str
    label: str  # safe to show: never the URL
    key: str  # the cursor's name for this feed
    filtered: bool  # only entries that mention a search term
    secret: bool


@dataclass(kw_only=True)
class _Page:
    posts: list[Post] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


class RssConnector:
    """Reads RSS/Atom feeds, one feed per page; no moderation (see the module docstring)."""

    name: ClassVar[str] = "rss"
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    # Google Alerts updates a feed a few times a day and documents no limits: 30-60 min is kind.
    poll_interval: ClassVar[float] = 1800.0

    def __init__(
        self,
        *,
        feeds: Sequence[_Feed],
        http: HttpClient,
        terms: Sequence[str],
        context: SourceContext,
    ) -> None:
        self._feeds = tuple(feeds)
        self._http = http
        self._matcher = _term_matcher(terms)
        self._context = context
        self._skip_once: set[str] = set()  # feeds that failed: passed over on the next call

    @classmethod
    def from_context(cls, context: SourceContext) -> Self:
        """Validate options and credentials; see the module docstring for the names."""
        options = context.options
        api_base = _str_option(options, OPT_API_BASE, "")
        require = options.get(OPT_REQUIRE_TERMS)
        if require is not None and not isinstance(require, bool):
            raise ValueError(f"options.{OPT_REQUIRE_TERMS}: must be true or false")
        feeds = _feeds(options, context.secrets, require, relative_ok=bool(api_base))
        terms = tuple(t for t in context.search_terms if t.strip())
        if not terms and any(f.filtered for f in feeds):
            raise ValueError(
                f"options.{OPT_REQUIRE_TERMS}: feeds other than Google Alerts need search_terms "
                f"to filter on (or set {OPT_REQUIRE_TERMS} = false)"
            )
        http = HttpClient(
            HttpOptions(base_url=api_base, timeout=_timeout(options)),
            transport=context.transport,
            headers={"Accept": ACCEPT},
            error_mapper=_feed_error,
            sleep=context.sleep,
        )
        return cls(feeds=feeds, http=http, terms=terms, context=context)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    async def check(self) -> None:
        """Fetch every feed once (they are the credentials) and make sure each is a feed."""
        for feed in self._feeds:
            response = await self._download(feed, {})
            _check_feed(feed, await _parse(response), response)

    async def moderate(self, capability: Capability, post: ModerationTarget) -> ModerationResult:
        """Feeds cannot be moderated: always ``supported=False``."""
        return ModerationResult(supported=False, done=False, detail=NOT_SUPPORTED)

    async def fetch(self, cursor: Cursor) -> Batch:
        """The next feed of this round with something new, or the end of the round."""
        state = read_state(cursor)
        saved = state.get("feeds")
        feeds_state: dict[str, dict[str, Any]] = {
            f.key: dict(saved[f.key])
            if isinstance(saved, dict) and isinstance(saved.get(f.key), dict)
            else {}
            for f in self._feeds
        }
        for index in range(self._start(state), len(self._feeds)):
            feed = self._feeds[index]
            if feed.key in self._skip_once:
                self._skip_once.discard(feed.key)
                continue
            page = await self._read(feed, feeds_state[feed.key])
            if page.posts or page.rejects:
                return _batch(page, feeds_state, self._next_key(index))
        return _batch(_Page(), feeds_state, None)

    def _start(self, state: Mapping[str, Any]) -> int:
        keys = [f.key for f in self._feeds]
        following = state.get("next")
        return keys.index(following) if following in keys else 0

    def _next_key(self, index: int) -> str | None:
        return self._feeds[index + 1].key if index + 1 < len(self._feeds) else None

    async def _read(self, feed: _Feed, feed_state: dict[str, Any]) -> _Page:
        try:
            response = await self._download(feed, feed_state)
            if response.status == 304:
                return _Page()
            parsed = await _parse(response)
            _check_feed(feed, parsed, response)
        except (ConnectorUnavailable, PayloadInvalid):
            self._skip_once.add(feed.key)
            raise
        _remember_validators(feed_state, response)
        return self._page(feed, parsed.entries, feed_state)

    async def _download(self, feed: _Feed, feed_state: Mapping[str, Any]) -> Response:
        headers = {}
        if isinstance(feed_state.get("etag"), str):
            headers["If-None-Match"] = feed_state["etag"]
        if isinstance(feed_state.get("modified"), str):
            headers["If-Modified-Since"] = feed_state["modified"]
        try:
            return await self._http.request("GET", feed.url, headers=headers, parse_json=False)
        except ConnectorError as err:
            # HttpClient names the URL path, and a Google Alerts path is the secret itself:
            # re-raise under the feed's label without chaining the original message.
            raise _relabelled(err, feed.label) from None

    def _page(self, feed: _Feed, entries: Iterable[Any], feed_state: dict[str, Any]) -> _Page:
        page, seen = _Page(), set(feed_state.get("seen") or ())
        fingerprints: list[str] = []
        for entry in entries:
            raw = _jsonable(entry)
            try:
                post = entry_to_post(
                    raw,
                    kind=self._context.kind,
                    account=self._context.account or None,
                    now=self._context.clock(),
                )
            except (PayloadInvalid, ValueError) as err:
                payload = json.dumps(raw, sort_keys=True, ensure_ascii=False)
                mark = _fingerprint("reject", payload)
                if mark not in seen:
                    page.rejects.append(Reject(error=f"{feed.label}: {err}", payload=payload))
                fingerprints.append(mark)
                continue
            mark = _fingerprint(post.external_id, post.text, post.permalink or "")
            fingerprints.append(mark)
            if mark not in seen and (not feed.filtered or self._mentions(post.text)):
                page.posts.append(post)
        feed_state["seen"] = fingerprints[:MAX_SEEN]
        return page

    def _mentions(self, text: str) -> bool:
        return self._matcher is not None and self._matcher.search(text) is not None


def _batch(page: _Page, feeds_state: Mapping[str, Any], following: str | None) -> Batch:
    state: dict[str, Any] = {"feeds": dict(feeds_state)}
    if following is not None:
        state["next"] = following
    return Batch(
        posts=tuple(page.posts),
        rejects=tuple(page.rejects),
        cursor=write_state(state),
        exhausted=following is None,
    )


# --- options ---------------------------------------------------------------------------------


def _str_option(options: Mapping[str, Any], key: str, default: str) -> str:
    value = options.get(key, default)
    if not isinstance(value, str):
        raise ValueError(f"options.{key}: must be a string")
    return value.rstrip("/")


def _timeout(options: Mapping[str, Any]) -> float:
    value = options.get(OPT_TIMEOUT, 30.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 300:
        raise ValueError(f"options.{OPT_TIMEOUT}: must be a number of seconds between 0 and 300")
    return float(value)


def _feeds(
    options: Mapping[str, Any], secrets: Mapping[str, str], require: bool | None, relative_ok: bool
) -> tuple[_Feed, ...]:
    listed = options.get(OPT_FEEDS, [])
    if not isinstance(listed, list | tuple) or not all(isinstance(u, str) for u in listed):
        raise ValueError(f"options.{OPT_FEEDS}: must be a list of feed URLs")
    found: list[tuple[str, str, bool]] = []
    for index, url in enumerate(listed):
        label = f"options.{OPT_FEEDS}[{index}]"
        _check_url(url, label, relative_ok)
        found.append((url, f"{label} ({urlsplit(url).hostname or 'api_base'})", False))
    for name in sorted((n for n in secrets if SECRET_FEED.match(n)), key=_secret_order):
        _check_url(secrets[name], f"credentials.{name}", relative_ok)
        found.append((secrets[name], f"credentials.{name}", True))
    if not found:
        raise ValueError(
            f"options.{OPT_FEEDS}: give at least one feed URL, or a secret feed URL as "
            "credentials.feed_url (give feed_url_env, feed_url_file or feed_url_credential)"
        )
    feeds: dict[str, _Feed] = {}
    for url, label, secret in found:
        filtered = not _is_google_alert(url) if require is None else require
        key = hashlib.sha256(url.encode()).hexdigest()[:16]
        feeds.setdefault(
            key, _Feed(url=url, label=label, key=key, filtered=filtered, secret=secret)
        )
    return tuple(feeds.values())


def _secret_order(name: str) -> int:
    match = SECRET_FEED.match(name)
    return int(match.group(1)) if match and match.group(1) else 0


def _check_url(url: str, label: str, relative_ok: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.hostname:
        return
    if relative_ok and not parts.scheme and url.startswith("/"):
        return
    raise ValueError(f"{label}: must be an http(s) URL")  # never echo the URL: it may be secret


def _is_google_alert(url: str) -> bool:
    parts = urlsplit(url)
    return bool(_GOOGLE_HOST.match(parts.hostname or "")) and parts.path.startswith(
        "/alerts/feeds/"
    )


def _term_matcher(terms: Sequence[str]) -> re.Pattern[str] | None:
    if not terms:
        return None
    alternatives = "|".join(re.escape(" ".join(t.split())) for t in terms)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


# --- HTTP --------------------------------------------------------------------------------------


def _feed_error(response: Response) -> ConnectorError | None:
    """Feeds answer 200 or 304; anything else is named by status only (the URL may be secret)."""
    if response.status in (200, 304):
        return None
    if response.status == 429:
        wait = retry_after_seconds(response.headers.get("retry-after"))
        return RateLimited(wait if wait is not None else RATE_LIMIT_WAIT, "HTTP 429")
    if response.status in (301, 302, 303, 307, 308):
        return _FeedHttpError(f"HTTP {response.status}: the feed moved; update its URL")
    return _FeedHttpError(f"HTTP {response.status}")


class _FeedHttpError(ConnectorUnavailable):
    """A feed's own HTTP failure; its message carries no URL."""


def _relabelled(err: ConnectorError, label: str) -> ConnectorError:
    if isinstance(err, RateLimited):
        return RateLimited(err.retry_after, f"{label}: rate limited")
    # HttpClient's own messages read "GET <path>: <reason>"; keep only the reason.
    reason = str(err) if isinstance(err, _FeedHttpError) else str(err).rsplit(": ", 1)[-1]
    if isinstance(err, AuthFailed):
        return AuthFailed(f"{label}: {reason}")
    return ConnectorUnavailable(f"{label}: {reason}")


def _remember_validators(feed_state: dict[str, Any], response: Response) -> None:
    for key, header in (("etag", "etag"), ("modified", "last-modified")):
        value = response.headers.get(header)
        if value:
            feed_state[key] = value
        else:
            feed_state.pop(key, None)


def _body(response: Response) -> tuple[bytes, str]:
    """The body as bytes and the content type feedparser should believe."""
    content = getattr(response, "content", None)  # when connectors.http keeps the bytes
    if isinstance(content, bytes):
        return content, response.headers.get("content-type", "application/xml")
    # Only the decoded text is kept: hand it over as UTF-8 and say so, so that an XML
    # declaration naming another encoding does not make feedparser decode it twice.
    return response.text.encode("utf-8"), "application/xml; charset=utf-8"


async def _parse(response: Response) -> Any:
    data, content_type = _body(response)
    # A stream, never a str or bytes: given those, feedparser may fetch a URL or open a file.
    return await asyncio.to_thread(
        feedparser.parse, io.BytesIO(data), response_headers={"content-type": content_type}
    )


def _check_feed(feed: _Feed, parsed: Any, response: Response) -> None:
    if parsed.entries or (parsed.version and not parsed.bozo):
        return
    problem = type(parsed.get("bozo_exception")).__name__ if parsed.bozo else "no feed found"
    payload = response.text[:MAX_PAYLOAD]
    if feed.secret:  # the feed's own self link would give the secret away in quarantine
        payload = payload.replace(feed.url, "[feed url]").replace(urlsplit(feed.url).path, "[…]")
    raise PayloadInvalid(f"{feed.label}: not an RSS or Atom feed ({problem})", payload)


# --- mapping -----------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """feedparser's dicts as plain JSON: struct_time values become ISO 8601 UTC strings."""
    if isinstance(value, time.struct_time):
        return datetime(*value[:6], tzinfo=UTC).isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def entry_to_post(
    entry: Mapping[str, Any], *, kind: SourceKind, account: str | None, now: datetime
) -> Post:
    """One feed entry (feedparser's dict made JSON-safe by ``_jsonable``) as a Post."""
    link = _http_url(entry.get("link"))
    external_id = _text(entry.get("id"))
    if not external_id and link:
        external_id = "link:" + hashlib.sha256(link.encode()).hexdigest()[:32]
    if not external_id:
        raise PayloadInvalid("entry has neither an id nor a link", json.dumps(entry))
    title = strip_html(_text(entry.get("title")))
    summary = strip_html(_summary(entry))
    created = _time(entry.get("published_parsed")) or _time(entry.get("updated_parsed"))
    updated = _time(entry.get("updated_parsed"))
    return Post(
        platform="rss",
        external_id=external_id,
        text="\n\n".join(part for part in (title, summary) if part),
        created_at=created or now,
        updated_at=updated if created and updated and updated > created else None,
        source_kind=kind,
        author_name=_text(entry.get("author")) or None,
        media=_media(entry.get("links")),
        permalink=unwrap_google_redirect(link) if link else None,
        account=account,
        raw=dict(entry),
    )


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _summary(entry: Mapping[str, Any]) -> str:
    summary = _text(entry.get("summary"))
    content = entry.get("content")
    if not summary and isinstance(content, list) and content and isinstance(content[0], Mapping):
        return _text(content[0].get("value"))
    return summary


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _http_url(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    parts = urlsplit(value.strip())
    return value.strip() if parts.scheme in ("http", "https") and parts.hostname else None


def _media(links: Any) -> tuple[Media, ...]:
    """Enclosures (feedparser lists them among the links with ``rel="enclosure"``)."""
    found = []
    for enclosure in links if isinstance(links, list) else ():
        if not isinstance(enclosure, Mapping) or enclosure.get("rel") != "enclosure":
            continue
        url = _http_url(enclosure.get("href"))
        kind = str(enclosure.get("type") or "").split("/", 1)[0]
        if url:
            found.append(
                Media(url=url, type=kind if kind in ("image", "video", "audio") else "link")
            )
    return tuple(found)


def unwrap_google_redirect(url: str) -> str:
    """The real address behind a ``https://www.google.com/url?...&url=<real>`` link.

    Only an http(s) address is taken; anything else leaves the link as it was.
    """
    parts = urlsplit(url)
    if not _GOOGLE_HOST.match(parts.hostname or "") or parts.path != "/url":
        return url
    query = parse_qs(parts.query)
    for key in ("url", "q"):
        for candidate in query.get(key, []):
            real = _http_url(candidate)
            if real:
                return real
    return url


def strip_html(fragment: str) -> str:
    """Plain text of an HTML fragment: tags dropped, entities decoded, whitespace collapsed."""
    return html_to_text(fragment, keep_lines=False)


def _fingerprint(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:12]
