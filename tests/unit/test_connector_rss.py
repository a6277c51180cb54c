"""The RSS/Atom connector: conditional GET, one feed per page, mapping, filtering, errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.base import (
    Capability,
    ConnectorUnavailable,
    Cursor,
    ModerationTarget,
    PayloadInvalid,
    RateLimited,
    SourceContext,
    SourceKind,
)
from connectors.rss import (
    RssConnector,
    entry_to_post,
    strip_html,
    unwrap_google_redirect,
)
from connectors.state import read_state

FIXTURES = Path(__file__).parent.parent / "fixtures" / "rss"
ALERT_URL = "https://www.google.com/alerts/feeds/00000000000000000000/11111111111111111111"
NEWS_URL = "https://www.example-gazette.co.uk/education/rss.xml"
NOW = datetime(2026, 10, 7, 12, 0, tzinfo=UTC)
TERMS = ("Example Academy",)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeFeeds:
    """Serves queued replies per URL (the last one repeats) and records every request."""

    routes: dict[str, list[Reply]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def add(self, url: str, *replies: Reply) -> None:
        self.routes.setdefault(url, []).extend(replies)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue = self.routes.get(str(request.url))
        if not queue:
            return httpx.Response(404, content=b"not found")
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        return httpx.Response(reply.status, content=reply.body, headers=reply.headers)


def atom(name: str = "google_alerts_feed.atom.xml", etag: str = '"v1"') -> Reply:
    return Reply(body=fixture(name), headers={"content-type": "application/atom+xml", "etag": etag})


def rss(name: str = "news_feed.rss.xml") -> Reply:
    return Reply(
        body=fixture(name),
        headers={"content-type": "application/rss+xml", "last-modified": "Tue, 06 Oct 2026"},
    )


@dataclass
class Sleeps:
    waits: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def make(
    fake: FakeFeeds,
    *,
    feeds: list[str] | None = None,
    secrets: dict[str, str] | None = None,
    terms: tuple[str, ...] = TERMS,
    sleep: Callable[[float], Any] | None = None,
    **options: Any,
) -> RssConnector:
    context = SourceContext(
        source_name="news",
        kind=SourceKind.MENTION,
        search_terms=terms,
        options={"feeds": feeds if feeds is not None else [], **options},
        secrets=secrets if secrets is not None else {"feed_url": ALERT_URL},
        clock=lambda: NOW,
        transport=httpx.MockTransport(fake),
        sleep=sleep or Sleeps(),
    )
    return RssConnector.from_context(context)


async def test_first_poll_maps_a_google_alert() -> None:
    fake = FakeFeeds()
    fake.add(ALERT_URL, atom())
    batch = await make(fake).fetch(Cursor())
    (post,) = batch.posts
    assert post.platform == "rss"
    assert post.external_id == "tag:google.com,2013:googlealerts/feed:22222222222222222222"
    assert post.text == (
        "Parents raise concerns at Example Academy meeting\n\n"
        "Parents gathered at Example Academy on Monday evening to discuss ..."
    )
    assert post.permalink == (
        "https://www.example-news.co.uk/news/parents-raise-concerns-example-academy"
    )
    assert post.created_at == datetime(2026, 10, 5, 16, 55, tzinfo=UTC)
    assert post.updated_at is None and post.author_name is None
    assert post.source_kind is SourceKind.MENTION
    json.loads(post.raw_json())  # JSON as received, without feedparser's struct_time values
    assert batch.exhausted and not batch.rejects and not batch.gone
    assert ALERT_URL not in (batch.cursor.value or "")  # the feed URL is a secret
    assert fake.requests[0].headers["accept"].startswith("application/atom+xml")


async def test_one_feed_per_page_and_the_cursor_remembers_the_next() -> None:
    fake = FakeFeeds()
    fake.add(NEWS_URL, rss())
    fake.add(ALERT_URL, atom())
    connector = make(fake, feeds=[NEWS_URL])
    first = await connector.fetch(Cursor())
    assert [p.external_id for p in first.posts] == ["gazette-education-1001"]
    assert not first.exhausted
    second = await connector.fetch(first.cursor)
    assert [p.external_id for p in second.posts] == [
        "tag:google.com,2013:googlealerts/feed:22222222222222222222"
    ]
    assert second.exhausted and "next" not in read_state(second.cursor)
    assert [str(r.url) for r in fake.requests] == [NEWS_URL, ALERT_URL]


async def test_incremental_poll_uses_validators_and_sends_nothing_old() -> None:
    fake = FakeFeeds()
    fake.add(NEWS_URL, rss(), Reply(status=304), rss())
    fake.add(ALERT_URL, atom(), Reply(status=304))
    connector = make(fake, feeds=[NEWS_URL])
    cursor = Cursor()
    for _ in range(2):
        cursor = (await connector.fetch(cursor)).cursor
    again = await connector.fetch(cursor)  # both 304: nothing new, end of the round
    assert again.posts == () and again.exhausted
    assert fake.requests[2].headers["if-modified-since"] == "Tue, 06 Oct 2026"
    assert fake.requests[3].headers["if-none-match"] == '"v1"'
    same = await connector.fetch(again.cursor)  # 200 with the same entries: nothing re-sent
    assert same.posts == () and same.exhausted


async def test_an_empty_feed_is_an_empty_page() -> None:
    fake = FakeFeeds()
    fake.add(ALERT_URL, atom("google_alerts_feed_empty.atom.xml"))
    batch = await make(fake).fetch(Cursor())
    assert batch.posts == () and batch.rejects == () and batch.exhausted


async def test_an_edited_entry_comes_again_with_its_new_text() -> None:
    fake = FakeFeeds()
    fake.add(ALERT_URL, atom(), atom("google_alerts_feed_updated.atom.xml", etag='"v2"'))
    connector = make(fake)
    first = await connector.fetch(Cursor())
    second = await connector.fetch(first.cursor)
    by_id = {p.external_id: p for p in second.posts}
    edited = by_id["tag:google.com,2013:googlealerts/feed:22222222222222222222"]
    assert "the head teacher has since responded" in edited.text
    assert edited.updated_at == datetime(2026, 10, 6, 8, 0, tzinfo=UTC)
    new = by_id["tag:google.com,2013:googlealerts/feed:33333333333333333333"]
    assert new.text.endswith("took first place & a trophy ...")
    assert new.permalink == "https://www.example-gazette.co.uk/education/maths-challenge"


async def test_entries_that_roll_off_a_feed_are_not_reported_gone() -> None:
    fake = FakeFeeds()
    fake.add(ALERT_URL, atom(), atom("google_alerts_feed_empty.atom.xml", etag='"v3"'))
    connector = make(fake)
    first = await connector.fetch(Cursor())
    later = await connector.fetch(first.cursor)
    assert later.gone == () and later.posts == ()


async def test_rate_limit_names_the_feed_not_its_url() -> None:
    fake = FakeFeeds()
    fake.add(ALERT_URL, Reply(status=429, headers={"retry-after": "120"}))
    with pytest.raises(RateLimited) as caught:
        await make(fake).fetch(Cursor())
    assert caught.value.retry_after == 120
    assert "credentials.feed_url" in str(caught.value)
    assert "11111111111111111111" not in str(caught.value)


async def test_a_dead_feed_fails_once_then_is_passed_over() -> None:
    fake = FakeFeeds()
    fake.add(ALERT_URL, Reply(status=404))
    fake.add(NEWS_URL, rss())
    connector = make(fake, feeds=[NEWS_URL], secrets={"feed_url_2": ALERT_URL})
    first = await connector.fetch(Cursor())
    with pytest.raises(ConnectorUnavailable) as caught:
        await connector.fetch(first.cursor)
    message = str(caught.value)
    assert message == "credentials.feed_url_2: HTTP 404"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    retry = await connector.fetch(first.cursor)  # the poller kept the cursor: move on
    assert retry.exhausted and retry.posts == ()


async def test_server_errors_are_retried_by_the_http_client() -> None:
    fake = FakeFeeds()
    fake.add(ALERT_URL, Reply(status=503), Reply(status=502), atom())
    sleeps = Sleeps()
    batch = await make(fake, sleep=sleeps).fetch(Cursor())
    assert len(batch.posts) == 1 and len(sleeps.waits) == 2


async def test_server_errors_that_persist_never_show_the_secret_path() -> None:
    fake = FakeFeeds()
    fake.add(ALERT_URL, Reply(status=503))
    with pytest.raises(ConnectorUnavailable) as caught:
        await make(fake).fetch(Cursor())
    assert str(caught.value) == "credentials.feed_url: HTTP 503"


async def test_a_page_that_is_not_a_feed_is_invalid_and_redacted() -> None:
    fake = FakeFeeds()
    fake.add(
        ALERT_URL, Reply(body=fixture("not_a_feed.html"), headers={"content-type": "text/html"})
    )
    fake.add(NEWS_URL, rss())
    connector = make(fake, secrets={"feed_url": ALERT_URL}, feeds=[NEWS_URL])
    first = await connector.fetch(Cursor())
    with pytest.raises(PayloadInvalid) as caught:
        await connector.fetch(first.cursor)
    assert "credentials.feed_url: not an RSS or Atom feed" in str(caught.value)
    assert "Please sign in" in caught.value.payload
    assert "11111111111111111111" not in caught.value.payload
    assert (await connector.fetch(first.cursor)).exhausted  # passed over next time


async def test_a_body_that_looks_like_a_url_is_never_fetched() -> None:
    fake = FakeFeeds()
    fake.add(ALERT_URL, Reply(body=b"https://attacker.example/feed.xml"))
    with pytest.raises(PayloadInvalid):
        await make(fake).fetch(Cursor())
    assert len(fake.requests) == 1


async def test_one_bad_entry_is_rejected_and_the_rest_go_through() -> None:
    fake = FakeFeeds()
    fake.add(NEWS_URL, rss())
    batch = await make(fake, feeds=[NEWS_URL], secrets={}).fetch(Cursor())
    assert [p.external_id for p in batch.posts] == ["gazette-education-1001"]
    (reject,) = batch.rejects
    assert "neither an id nor a link" in reject.error
    assert json.loads(reject.payload)["title"] == "Letters: example academy parking"
    again = await make(fake, feeds=[NEWS_URL], secrets={}).fetch(batch.cursor)
    assert again.rejects == ()  # the same bad entry is quarantined once


async def test_general_feeds_keep_only_entries_that_mention_a_term() -> None:
    fake = FakeFeeds()
    fake.add(NEWS_URL, rss())
    post = (await make(fake, feeds=[NEWS_URL], secrets={}).fetch(Cursor())).posts[0]
    assert post.text == (
        "New sports hall opens at Example Academy\n\n"
        "The academy's new hall & pool opened on Monday."
    )
    assert post.author_name == "Jo Reporter"
    assert [(m.url, m.type) for m in post.media] == [
        ("https://images.example-gazette.co.uk/sports-hall.jpg", "image")
    ]
    assert post.created_at == datetime(2026, 10, 6, 8, 30, tzinfo=UTC)
    everything = make(fake, feeds=[NEWS_URL], secrets={}, require_terms=False)
    assert len((await everything.fetch(Cursor())).posts) == 2


async def test_a_feed_in_another_encoding_is_decoded() -> None:
    body = (
        '<?xml version="1.0" encoding="iso-8859-1"?><rss version="2.0"><channel><title>t</title>'
        "<item><guid>g1</guid><title>Caf\xe9 at Example Academy</title></item></channel></rss>"
    ).encode("latin-1")
    fake = FakeFeeds()
    fake.add(NEWS_URL, Reply(body=body, headers={"content-type": "text/xml; charset=iso-8859-1"}))
    batch = await make(fake, feeds=[NEWS_URL], secrets={}).fetch(Cursor())
    assert batch.posts[0].text == "Café at Example Academy"
    assert batch.posts[0].created_at == NOW  # no date in the entry: the clock's time


@pytest.mark.parametrize("capability", list(Capability))
async def test_feeds_cannot_be_moderated(capability: Capability) -> None:
    connector = make(FakeFeeds())
    target = ModerationTarget(platform="rss", external_id="x")
    result = await connector.moderate(capability, target)
    assert not result.supported and not result.done and "report" in result.detail
    assert connector.capabilities == frozenset()


@pytest.mark.parametrize(
    ("options", "secrets", "terms", "key"),
    [
        ({}, {}, TERMS, "options.feeds: give at least one feed URL"),
        ({"feeds": "https://a.example/rss"}, {}, TERMS, "options.feeds: must be a list"),
        ({"feeds": ["ftp://a.example/rss"]}, {}, TERMS, "options.feeds[0]: must be an http(s)"),
        ({}, {"feed_url_3": "javascript:x"}, TERMS, "credentials.feed_url_3: must be an http(s)"),
        ({"feeds": [NEWS_URL], "require_terms": "yes"}, {}, TERMS, "options.require_terms: must"),
        ({"feeds": [NEWS_URL]}, {}, (), "options.require_terms: feeds other than Google"),
        ({"feeds": [NEWS_URL], "timeout": 0}, {}, TERMS, "options.timeout:"),
        ({"feeds": [NEWS_URL], "api_base": 3}, {}, TERMS, "options.api_base: must be a string"),
    ],
)
def test_from_context_names_the_bad_key(
    options: dict[str, Any], secrets: dict[str, str], terms: tuple[str, ...], key: str
) -> None:
    context = SourceContext(
        source_name="news",
        kind=SourceKind.MENTION,
        search_terms=terms,
        options=options,
        secrets=secrets,
    )
    with pytest.raises(ValueError) as caught:
        RssConnector.from_context(context)
    assert str(caught.value).startswith(key)


def test_google_alerts_need_no_terms_and_relative_feeds_need_api_base() -> None:
    alerts_only = SourceContext(
        source_name="alerts", kind=SourceKind.MENTION, secrets={"feed_url": ALERT_URL}
    )
    RssConnector.from_context(alerts_only)
    relative = SourceContext(
        source_name="fake",
        kind=SourceKind.MENTION,
        search_terms=TERMS,
        options={"feeds": ["/feeds/news.xml"], "api_base": "http://127.0.0.1:8080"},
    )
    RssConnector.from_context(relative)


async def test_relative_feeds_are_read_from_api_base() -> None:
    fake = FakeFeeds()
    fake.add("http://127.0.0.1:8080/feeds/news.xml", rss())
    connector = make(fake, feeds=["/feeds/news.xml"], secrets={}, api_base="http://127.0.0.1:8080")
    assert len((await connector.fetch(Cursor())).posts) == 1


async def test_check_reads_every_feed() -> None:
    fake = FakeFeeds()
    fake.add(ALERT_URL, atom())
    fake.add(NEWS_URL, Reply(body=fixture("not_a_feed.html")))
    await make(fake).check()
    with pytest.raises(PayloadInvalid, match=r"options.feeds\[0\] \(www.example-gazette.co.uk\)"):
        await make(fake, feeds=[NEWS_URL]).check()


async def test_aclose_closes_the_client() -> None:
    connector = make(FakeFeeds())
    await connector.aclose()


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        (
            "https://www.google.com/url?rct=j&url=https://news.example/a?b=1&ct=ga",
            "https://news.example/a?b=1",
        ),
        (
            "https://www.google.com/url?url=javascript:alert(1)",
            "https://www.google.com/url?url=javascript:alert(1)",
        ),
        (
            "https://news.example/url?url=https://elsewhere.example/",
            "https://news.example/url?url=https://elsewhere.example/",
        ),
    ],
)
def test_google_redirects_are_unwrapped_only_to_http(link: str, expected: str) -> None:
    assert unwrap_google_redirect(link) == expected


def test_strip_html_keeps_text_only() -> None:
    assert strip_html("<b>A</b>&amp;B<script>x()</script><style>p{}</style><br>C&lt;D") == "A&B C<D"
    assert strip_html("plain   text\n") == "plain text"


def test_entry_links_that_are_not_http_are_dropped() -> None:
    post = entry_to_post(
        {"id": "x", "title": "t", "link": "javascript:alert(1)"},
        kind=SourceKind.MENTION,
        account=None,
        now=NOW,
    )
    assert post.permalink is None
