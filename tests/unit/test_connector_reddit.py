"""The Reddit connector against recorded payloads served by httpx.MockTransport."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from connectors.base import (
    AuthFailed,
    Capability,
    ConnectorUnavailable,
    Cursor,
    ModerationTarget,
    PayloadInvalid,
    RateLimited,
    SourceContext,
    SourceKind,
)
from connectors.reddit import RedditConnector, thing_to_post
from connectors.state import read_state

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "reddit"
NOW = datetime(2026, 10, 5, 17, 0, tzinfo=UTC)
Handler = Callable[[httpx.Request], httpx.Response]
POST_ID = "t3_1nyabcd"
COMMENTS = "/comments/1nyabcd"
TOKEN_PATH = "/api/v1/access_token"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def token(value: str = "tok-1") -> httpx.Response:
    return reply(load("access_token.json") | {"access_token": value})


class Platform:
    """Routes by path to queued responses (the last one repeats) and records requests."""

    def __init__(self, routes: dict[str, list[httpx.Response] | Handler]) -> None:
        self.routes = {TOKEN_PATH: [token()], **routes}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self.routes.get(request.url.path)
        if route is None:
            return reply({"message": "Not Found", "error": 404}, 404)
        if callable(route):
            return route(request)
        return route.pop(0) if len(route) > 1 else route[0]

    def to(self, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == path]

    def params(self, path: str) -> list[dict[str, str]]:
        return [dict(r.url.params) for r in self.to(path)]


def listing(children: list[Any], after: str | None = None) -> dict[str, Any]:
    data = {"after": after, "dist": len(children), "modhash": "", "geo_filter": "", "before": None}
    return {"kind": "Listing", "data": data | {"children": children}}


def links(n: int, start: int, comments: int = 0) -> list[dict[str, Any]]:
    """``n`` links shaped like the fixture, newest first, one minute apart."""
    base = load("search_listing.json")["data"]["children"][0]
    out = []
    for i in range(n):
        item = copy.deepcopy(base)
        item["data"] |= {
            "id": f"p{start - i}",
            "name": f"t3_p{start - i}",
            "created_utc": 1759680000.0 + 60 * (start - i),
            "num_comments": comments,
            "permalink": f"/r/exampletown/comments/p{start - i}/title/",
        }
        out.append(item)
    return out


def make(
    platform: Platform,
    *,
    sleeps: list[float] | None = None,
    secrets: dict[str, str] | None = None,
    **options: Any,
) -> RedditConnector:
    async def sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    context = SourceContext(
        source_name="reddit-mentions",
        kind=SourceKind.MENTION,
        search_terms=("Example Academy",),
        options={"reddit_username": "example_academy_it", **options},
        secrets=secrets or {"client_id": "cid", "client_secret": "csecret"},
        clock=lambda: NOW,
        transport=httpx.MockTransport(platform),
        sleep=sleep,
    )
    return RedditConnector.from_context(context)


async def drain(connector: RedditConnector, cursor: Cursor) -> tuple[list[Any], Cursor]:
    batches = []
    for _ in range(50):
        batch = await connector.fetch(cursor)
        batches.append(batch)
        cursor = batch.cursor
        if batch.exhausted:
            return batches, cursor
    raise AssertionError("never exhausted")


def ids(batches: list[Any]) -> list[str]:
    return [p.external_id for b in batches for p in b.posts]


# -- polling -----------------------------------------------------------------------------


async def test_first_poll_searches_then_reads_the_comments_of_each_match_once() -> None:
    platform = Platform(
        {
            "/search": [reply(load("search_listing.json"))],
            COMMENTS: [reply(load("post_comments.json"))],
        }
    )
    connector = make(platform)
    batches, cursor = await drain(connector, Cursor())
    assert ids(batches) == [POST_ID, "t1_o1abc01", "t1_o2bcd02"]
    post, top, nested = [p for b in batches for p in b.posts]
    assert post.text == (
        "Anyone else hear about Example Academy's new uniform policy?\n\nSeems over the top..."
    )
    assert post.permalink == (
        "https://www.reddit.com/r/exampletown/comments/1nyabcd/anyone_else_hear_about_example_academys_new/"
    )
    assert post.created_at == datetime(2025, 10, 5, 16, 0, tzinfo=UTC)
    assert post.author_handle == "throwaway_parent" and post.account == "r/exampletown"
    assert post.thread_id == POST_ID and post.parent_id is None and post.media == ()
    assert top.parent_id == POST_ID and top.thread_id == POST_ID
    assert nested.parent_id == "t1_o1abc01" and nested.text.endswith("& it's fine.")
    search = platform.params("/search")[0]
    assert search["q"] == '"Example Academy"' and search["sort"] == "new"
    assert search["type"] == "link" and search["raw_json"] == "1"
    assert platform.params(COMMENTS)[0]["sort"] == "new"
    assert read_state(cursor)["pending"] == []


async def test_requests_carry_bearer_token_and_descriptive_user_agent() -> None:
    platform = Platform({"/search": [reply(listing([]))]})
    await make(platform).fetch(Cursor())
    grant, search = platform.requests
    assert grant.url.host == "www.reddit.com" and search.url.host == "oauth.reddit.com"
    expected = "Basic " + base64.b64encode(b"cid:csecret").decode()
    assert grant.headers["authorization"] == expected
    assert parse_qs(grant.content.decode()) == {"grant_type": ["client_credentials"]}
    assert search.headers["authorization"] == "bearer tok-1"
    agent = "vigil:reddit-mentions:0.1 (by u/example_academy_it)"
    assert grant.headers["user-agent"] == search.headers["user-agent"] == agent


async def test_script_app_uses_the_password_grant_and_reuses_its_token() -> None:
    platform = Platform({"/search": [reply(listing([]))]})
    secrets = {"client_id": "cid", "client_secret": "cs", "username": "u", "password": "p"}
    connector = make(platform, secrets=secrets)
    await connector.fetch(Cursor())
    await connector.fetch(Cursor())
    grants = platform.to(TOKEN_PATH)
    assert len(grants) == 1
    assert parse_qs(grants[0].content.decode()) == {
        "grant_type": ["password"],
        "username": ["u"],
        "password": ["p"],
    }


async def test_paged_first_poll_follows_after_and_restricts_to_subreddits() -> None:
    path = "/r/exampletown+exampleshire/search"
    platform = Platform(
        {path: [reply(listing(links(2, 10), "t3_p9")), reply(listing(links(2, 8), "t3_p7"))]}
    )
    connector = make(
        platform, subreddits=["exampletown", "r/exampleshire"], page_size=2, first_poll_pages=2
    )
    batches, cursor = await drain(connector, Cursor())
    assert ids(batches) == ["t3_p10", "t3_p9", "t3_p8", "t3_p7"]
    sent = platform.params(path)
    assert [s.get("after") for s in sent] == [None, "t3_p9"]
    assert all(s["restrict_sr"] == "1" and s["limit"] == "2" for s in sent)
    position = read_state(cursor)["streams"]["Example Academy"]
    assert position == {"since": 1759680600.0, "ids": ["t3_p10"]}


async def test_incremental_poll_stops_at_the_watermark_and_resends_nothing_old() -> None:
    second = listing(links(3, 12), "t3_p10")  # p12, p11 are new; p10 was seen
    platform = Platform({"/search": [reply(listing(links(1, 10))), reply(second)]})
    connector = make(platform, comments=False, watch_items=0)
    _, cursor = await drain(connector, Cursor())
    batches, cursor = await drain(connector, cursor)
    assert ids(batches) == ["t3_p12", "t3_p11"]
    assert "after" not in platform.params("/search")[-1]
    assert len(platform.to("/search")) == 2  # the old item ended the paging
    assert read_state(cursor)["streams"]["Example Academy"]["since"] == 1759680720.0


async def test_incremental_paging_continues_until_it_reaches_old_items() -> None:
    pages = [listing(links(2, 20), "t3_p19"), listing(links(2, 18), "t3_p17")]
    platform = Platform(
        {"/search": [reply(listing(links(1, 17))), reply(pages[0]), reply(pages[1])]}
    )
    connector = make(platform, comments=False, watch_items=0, page_size=2)
    _, cursor = await drain(connector, Cursor())
    batches, _ = await drain(connector, cursor)
    assert ids(batches) == ["t3_p20", "t3_p19", "t3_p18"]
    assert [p.get("after") for p in platform.params("/search")[1:]] == [None, "t3_p19"]


async def test_empty_search_is_exhausted_with_nothing() -> None:
    platform = Platform({"/search": [reply(listing([]))]})
    batch = await make(platform).fetch(Cursor())
    assert batch.posts == () and batch.exhausted and batch.gone == ()


async def test_watched_items_are_reread_for_edits_and_removals() -> None:
    platform = Platform(
        {
            "/search": [reply(load("search_listing.json")), reply(listing([]))],
            COMMENTS: [reply(load("post_comments.json"))],
            "/api/info": [reply(load("info_listing.json"))],
        }
    )
    connector = make(platform)
    _, cursor = await drain(connector, Cursor())
    batches, cursor = await drain(connector, cursor)
    info = platform.params("/api/info")[0]
    assert sorted(info["id"].split(",")) == ["t1_o1abc01", "t1_o2bcd02", POST_ID]
    edited = [p for b in batches for p in b.posts]
    assert [p.external_id for p in edited] == [POST_ID]
    assert "only for Year 7" in edited[0].text
    assert edited[0].updated_at == datetime.fromtimestamp(1759690000.0, UTC)
    assert [g for b in batches for g in b.gone] == ["t1_o1abc01"]
    again, _ = await drain(connector, cursor)  # nothing changed since: nothing re-sent
    assert ids(again) == [] and [g for b in again for g in b.gone] == []


async def test_a_deleted_post_skips_its_comment_read() -> None:
    platform = Platform({"/search": [reply(load("search_listing.json"))]})
    batches, cursor = await drain(make(platform), Cursor())
    assert ids(batches) == [POST_ID] and len(platform.to(COMMENTS)) == 1
    assert read_state(cursor)["pending"] == []


# -- errors ------------------------------------------------------------------------------


async def test_quota_used_up_on_a_200_raises_rate_limited_before_the_next_call() -> None:
    headers = load("rate_limit_headers.json") | {"X-Ratelimit-Remaining": "0.0"}
    platform = Platform({"/search": [reply(load("search_listing.json"), headers=headers)]})
    with pytest.raises(RateLimited) as caught:
        await make(platform).fetch(Cursor())
    assert caught.value.retry_after == 417.0


async def test_headers_with_quota_left_pass() -> None:
    headers = load("rate_limit_headers.json")
    platform = Platform({"/search": [reply(listing([]), headers=headers)]})
    assert (await make(platform).fetch(Cursor())).exhausted


async def test_429_uses_the_reset_header() -> None:
    headers = load("rate_limit_headers.json") | {"X-Ratelimit-Remaining": "0"}
    platform = Platform(
        {"/search": [reply({"message": "Too Many Requests", "error": 429}, 429, headers)]}
    )
    with pytest.raises(RateLimited) as caught:
        await make(platform).fetch(Cursor())
    assert caught.value.retry_after == 417.0


async def test_401_refreshes_the_token_once_then_succeeds() -> None:
    unauthorized = reply({"message": "Unauthorized", "error": 401}, 401)
    platform = Platform(
        {
            TOKEN_PATH: [token("old"), token("new")],
            "/search": [unauthorized, reply(listing([]))],
        }
    )
    assert (await make(platform).fetch(Cursor())).exhausted
    assert [r.headers["authorization"] for r in platform.to("/search")] == [
        "bearer old",
        "bearer new",
    ]


async def test_401_after_a_fresh_token_is_auth_failed() -> None:
    platform = Platform({"/search": [reply({"message": "Unauthorized", "error": 401}, 401)]})
    with pytest.raises(AuthFailed) as caught:
        await make(platform).fetch(Cursor())
    assert len(platform.to(TOKEN_PATH)) == 2 and "tok-1" not in str(caught.value)


async def test_bad_client_credentials_are_auth_failed() -> None:
    platform = Platform({TOKEN_PATH: [reply({"message": "Unauthorized", "error": 401}, 401)]})
    with pytest.raises(AuthFailed) as caught:
        await make(platform).fetch(Cursor())
    assert "csecret" not in str(caught.value)
    platform = Platform({TOKEN_PATH: [reply({"error": "invalid_grant"})]})
    with pytest.raises(AuthFailed, match="invalid_grant"):
        await make(platform).fetch(Cursor())


async def test_unapproved_app_403_is_auth_failed() -> None:
    platform = Platform({"/search": [reply({"message": "Forbidden", "error": 403}, 403)]})
    with pytest.raises(AuthFailed, match="approved"):
        await make(platform).fetch(Cursor())


async def test_server_error_is_retried_by_the_http_client() -> None:
    sleeps: list[float] = []
    platform = Platform({"/search": [reply({}, 503), reply(listing([]))]})
    assert (await make(platform, sleeps=sleeps).fetch(Cursor())).exhausted
    assert len(sleeps) == 1


async def test_html_instead_of_a_listing_is_payload_invalid() -> None:
    page = httpx.Response(200, text="<html>blocked</html>")
    platform = Platform({"/search": [page]})
    with pytest.raises(PayloadInvalid):
        await make(platform).fetch(Cursor())
    platform = Platform({"/search": [reply({"kind": "t3", "data": {}})]})
    with pytest.raises(PayloadInvalid, match="not a Listing"):
        await make(platform).fetch(Cursor())


async def test_one_malformed_child_is_rejected_and_the_rest_kept() -> None:
    children = links(3, 30)
    del children[1]["data"]["created_utc"]
    children[2]["kind"] = "t5"
    platform = Platform({"/search": [reply(listing(children))]})
    batch = await make(platform).fetch(Cursor())
    assert [p.external_id for p in batch.posts] == ["t3_p30"]
    assert len(batch.rejects) == 2 and "t3_p29" in batch.rejects[0].payload


# -- moderation --------------------------------------------------------------------------

TARGET = ModerationTarget(platform="reddit", external_id="t1_o1abc01")


async def test_report_posts_thing_id_and_reason() -> None:
    platform = Platform({"/api/report": [reply(load("report_response.json"))]})
    result = await make(platform, report_reason="Names a pupil").moderate(Capability.REPORT, TARGET)
    assert result.supported and result.done
    form = parse_qs(platform.to("/api/report")[0].content.decode())
    assert form == {
        "api_type": ["json"],
        "thing_id": ["t1_o1abc01"],
        "reason": ["Names a pupil"],
        "other_reason": ["Names a pupil"],
    }


async def test_refused_report_raises() -> None:
    platform = Platform({"/api/report": [reply(load("report_refused.json"))]})
    with pytest.raises(ConnectorUnavailable, match="SUBREDDIT_NOTALLOWED"):
        await make(platform).moderate(Capability.REPORT, TARGET)


async def test_remove_needs_is_moderator() -> None:
    platform = Platform({"/api/remove": [reply({})]})
    result = await make(platform).moderate(Capability.DELETE, TARGET)
    assert not result.supported and "moderators" in result.detail and platform.requests == []
    result = await make(platform, is_moderator=True).moderate(Capability.DELETE, TARGET)
    assert result.supported and result.done
    assert parse_qs(platform.to("/api/remove")[0].content.decode()) == {
        "id": ["t1_o1abc01"],
        "spam": ["false"],
    }


async def test_remove_refused_for_a_non_moderator_raises() -> None:
    platform = Platform({"/api/remove": [reply({"message": "Forbidden", "error": 403}, 403)]})
    with pytest.raises(AuthFailed):
        await make(platform, is_moderator=True).moderate(Capability.DELETE, TARGET)


@pytest.mark.parametrize("capability", [Capability.HIDE, Capability.UNHIDE])
async def test_hide_is_not_supported(capability: Capability) -> None:
    result = await make(Platform({})).moderate(capability, TARGET)
    assert not result.supported and not result.done and "Report" in result.detail


# -- setup and check ---------------------------------------------------------------------


async def test_check_gets_a_token_and_makes_one_search() -> None:
    platform = Platform({"/search": [reply(load("search_listing.json"))]})
    await make(platform).check()
    assert [r.url.path for r in platform.requests] == [TOKEN_PATH, "/search"]
    assert platform.params("/search")[0]["limit"] == "1"


def context(
    kind: SourceKind = SourceKind.MENTION,
    secrets: dict[str, str] | None = None,
    terms: tuple[str, ...] = ("Example Academy",),
    **options: Any,
) -> SourceContext:
    return SourceContext(
        source_name="r",
        kind=kind,
        search_terms=terms,
        options=options,
        secrets={"client_id": "a", "client_secret": "b"} if secrets is None else secrets,
    )


@pytest.mark.parametrize(
    ("ctx", "key"),
    [
        (context(SourceKind.OWN), "kind"),
        (context(secrets={"client_secret": "b"}), "credentials.client_id"),
        (context(secrets={"client_id": "a"}), "credentials.client_secret"),
        (
            context(secrets={"client_id": "a", "client_secret": "b", "username": "u"}),
            "credentials.password",
        ),
        (context(terms=()), "search_terms"),
        (context(api_base="http://oauth.reddit.com"), "options.api_base"),
        (context(auth_base="www.reddit.com"), "options.auth_base"),
        (context(user_agent="python"), "options.user_agent"),
        (context(subreddits="exampletown"), "options.subreddits"),
        (context(subreddits=["bad name"]), "options.subreddits"),
        (context(page_size=0), "options.page_size"),
        (context(is_moderator="yes"), "options.is_moderator"),
        (context(report_reason="x" * 101), "options.report_reason"),
        (context(watch_items=101), "options.watch_items"),
    ],
)
def test_from_context_names_the_bad_key(ctx: SourceContext, key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        RedditConnector.from_context(ctx)


def test_loopback_http_is_allowed_for_the_fake_server() -> None:
    RedditConnector.from_context(
        context(api_base="http://127.0.0.1:9000", auth_base="http://localhost:9000")
    )


# -- mapping -----------------------------------------------------------------------------


def test_image_posts_keep_the_image_url_by_reference_only() -> None:
    thing = links(1, 1)[0]
    thing["data"] |= {"url": "https://i.redd.it/abc123.jpeg", "post_hint": "image", "selftext": ""}
    post = thing_to_post(thing, SourceKind.MENTION)
    assert [(m.url, m.type) for m in post.media] == [("https://i.redd.it/abc123.jpeg", "image")]
    assert post.text == "Anyone else hear about Example Academy's new uniform policy?"
    thing["data"] |= {"url": "https://news.example/story", "post_hint": "link"}
    assert thing_to_post(thing, SourceKind.MENTION).media[0].type == "link"
