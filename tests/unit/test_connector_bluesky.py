"""The Bluesky connector: sessions, search paging, own threads, errors and moderation."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.base import (
    AuthFailed,
    Batch,
    Capability,
    ConnectorUnavailable,
    Cursor,
    ModerationTarget,
    PayloadInvalid,
    RateLimited,
    SourceContext,
    SourceKind,
)
from connectors.bluesky import BlueskyConnector
from connectors.state import read_state

FIXTURES = Path(__file__).parent.parent / "fixtures" / "bluesky"
NOW = datetime(2026, 10, 6, 12, 0, tzinfo=UTC)
SCHOOL = "did:plc:schoolaccount000000000000"
ROOT = f"at://{SCHOOL}/app.bsky.feed.post/3m2aaaaaaaa2k"
OLDER = f"at://{SCHOOL}/app.bsky.feed.post/3m25555555522"
REPLY1 = "at://did:plc:replier1account00000000000/app.bsky.feed.post/3m2bbbbbbbb2k"
REPLY2 = "at://did:plc:replier2account00000000000/app.bsky.feed.post/3m2cccccccc2k"
MENTION = "at://did:plc:abcdefghijklmnopqrstuvwx/app.bsky.feed.post/3m2xyzabcde2k"
PARENT_POST = "at://did:plc:parentaccount0000000000000/app.bsky.feed.post/3m2wwwwwwww2k"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@dataclass
class Reply:
    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakePds:
    """Answers XRPC calls by method id from queues (the last reply repeats); records requests."""

    routes: dict[str, list[Reply]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.add("com.atproto.server.createSession", Reply(load("create_session.json")))

    def add(self, nsid: str, *replies: Reply, replace: bool = False) -> None:
        if replace:
            self.routes[nsid] = []
        self.routes.setdefault(nsid, []).extend(replies)

    def calls(self, nsid: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == f"/xrpc/{nsid}"]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue = self.routes.get(request.url.path.removeprefix("/xrpc/"))
        if not queue:
            return httpx.Response(501, json={"error": "MethodNotImplemented"})
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        content = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        headers = {"content-type": "application/json", **reply.headers}
        return httpx.Response(reply.status, content=content, headers=headers)


@dataclass
class Sleeps:
    waits: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def make(
    pds: FakePds,
    kind: SourceKind = SourceKind.MENTION,
    *,
    terms: tuple[str, ...] = ("Example Academy",),
    sleeps: Sleeps | None = None,
    **options: Any,
) -> BlueskyConnector:
    context = SourceContext(
        source_name="bluesky",
        kind=kind,
        account="exampleacademy.bsky.social",
        search_terms=terms,
        options={"handle": "exampleacademy.bsky.social", "api_base": "https://pds.test", **options},
        secrets={"app_password": "abcd-efgh-ijkl-mnop"},
        clock=lambda: NOW,
        transport=httpx.MockTransport(pds),
        sleep=sleeps or Sleeps(),
    )
    return BlueskyConnector.from_context(context)


async def poll(connector: BlueskyConnector, cursor: Cursor) -> tuple[list[Batch], Cursor]:
    """Fetch until exhausted, as the poller does; returns the pages and the last cursor."""
    batches: list[Batch] = []
    for _ in range(20):
        batch = await connector.fetch(cursor)
        batches.append(batch)
        cursor = batch.cursor
        if batch.exhausted:
            return batches, cursor
    raise AssertionError("never exhausted")


# --- mention sources --------------------------------------------------------------------------


async def test_first_search_poll_logs_in_and_follows_the_paging_cursor() -> None:
    pds = FakePds()
    pds.add(
        "app.bsky.feed.searchPosts",
        Reply(load("search_posts.json")),
        Reply(load("search_posts_page2.json")),
    )
    connector = make(pds)
    first = await connector.fetch(Cursor())
    assert [p.external_id for p in first.posts] == [MENTION] and not first.exhausted
    second = await connector.fetch(first.cursor)
    assert [p.external_id for p in second.posts] == [PARENT_POST] and second.exhausted
    (login,) = pds.calls("com.atproto.server.createSession")
    assert json.loads(login.content) == {
        "identifier": "exampleacademy.bsky.social",
        "password": "abcd-efgh-ijkl-mnop",
    }
    page1, page2 = pds.calls("app.bsky.feed.searchPosts")
    assert page1.url.params["q"] == '"Example Academy"'
    assert page1.url.params["sort"] == "latest" and page1.url.params["limit"] == "50"
    assert page1.url.params["since"] == "2026-09-29T11:50:00.000000Z"  # 7 days + overlap
    assert "cursor" not in page1.url.params and page2.url.params["cursor"] == "25"
    assert page1.headers["authorization"] == "Bearer eyJ...access"


async def test_search_posts_are_mapped() -> None:
    pds = FakePds()
    pds.add("app.bsky.feed.searchPosts", Reply(load("search_posts_page2.json")))
    (post,) = (await make(pds).fetch(Cursor())).posts
    assert post.platform == "bluesky" and post.source_kind is SourceKind.MENTION
    assert post.text == "Photos from the Example Academy open evening"
    assert post.permalink == "https://bsky.app/profile/aparent.bsky.social/post/3m2wwwwwwww2k"
    assert post.author_id == "did:plc:parentaccount0000000000000"
    assert post.author_handle == "aparent.bsky.social" and post.author_name == "A Parent"
    assert post.created_at == datetime(2026, 10, 5, 15, 10, tzinfo=UTC)
    assert post.thread_id == PARENT_POST and post.parent_id is None
    assert [(m.type, m.url.split("/")[4]) for m in post.media] == [("image", "feed_fullsize")]
    assert post.raw["cid"] == "bafyreiparentpostcid000000000000000000000000000000000000000"
    assert post.account == "exampleacademy.bsky.social"


async def test_each_term_is_searched_in_turn() -> None:
    pds = FakePds()
    pds.add("app.bsky.feed.searchPosts", Reply(load("search_posts_page2.json")))
    batches, _ = await poll(make(pds, terms=("Example Academy", "OPS")), Cursor())
    assert [len(b.posts) for b in batches] == [1, 1]
    assert [r.url.params["q"] for r in pds.calls("app.bsky.feed.searchPosts")] == [
        '"Example Academy"',
        "OPS",
    ]


async def test_incremental_search_starts_at_the_watermark_and_skips_what_was_sent() -> None:
    pds = FakePds()
    pds.add("app.bsky.feed.searchPosts", Reply(load("search_posts_page2.json")))
    connector = make(pds)
    _, cursor = await poll(connector, Cursor())
    again, _ = await poll(connector, cursor)
    assert [b.posts for b in again] == [()]  # the same post came back in the overlap
    since = pds.calls("app.bsky.feed.searchPosts")[-1].url.params["since"]
    assert since == "2026-10-05T15:00:00.000000Z"  # newest sort time minus the overlap
    assert "eyJ" not in (cursor.value or "")  # no JWT ever reaches the cursor


async def test_an_empty_search_page_ends_the_round() -> None:
    pds = FakePds()
    pds.add("app.bsky.feed.searchPosts", Reply({"posts": [], "cursor": "0"}))
    batch = await make(pds).fetch(Cursor())
    assert batch.posts == () and batch.exhausted


async def test_one_bad_post_is_rejected_and_the_rest_kept() -> None:
    body = load("search_posts_page2.json")
    body["posts"] = [{"uri": "at://did:plc:x/app.bsky.feed.post/1", "cid": "c"}, *body["posts"]]
    pds = FakePds()
    pds.add("app.bsky.feed.searchPosts", Reply(body))
    batch = await make(pds).fetch(Cursor())
    assert [p.external_id for p in batch.posts] == [PARENT_POST]
    (reject,) = batch.rejects
    assert "not a post view" in reject.error and json.loads(reject.payload)["cid"] == "c"


@pytest.mark.parametrize("body", [{"results": []}, b"<html>Service Unavailable</html>"])
async def test_a_response_that_is_not_the_documented_shape_is_invalid(body: Any) -> None:
    pds = FakePds()
    pds.add("app.bsky.feed.searchPosts", Reply(body))
    with pytest.raises(PayloadInvalid):
        await make(pds).fetch(Cursor())


# --- errors ------------------------------------------------------------------------------------


async def test_rate_limit_waits_until_ratelimit_reset() -> None:
    reset = int((NOW + timedelta(seconds=300)).timestamp())
    pds = FakePds()
    headers = {"ratelimit-reset": str(reset), "ratelimit-remaining": "0"}
    pds.add("app.bsky.feed.searchPosts", Reply(load("error_rate_limited.json"), 429, headers))
    with pytest.raises(RateLimited) as caught:
        await make(pds).fetch(Cursor())
    assert caught.value.retry_after == 300


async def test_an_expired_token_is_refreshed_once_and_the_call_retried() -> None:
    pds = FakePds()
    pds.add("com.atproto.server.refreshSession", Reply(load("refresh_session.json")))
    pds.add(
        "app.bsky.feed.searchPosts",
        Reply(load("error_expired_token.json"), 400),
        Reply(load("search_posts_page2.json")),
    )
    batch = await make(pds).fetch(Cursor())
    assert len(batch.posts) == 1
    (refresh,) = pds.calls("com.atproto.server.refreshSession")
    assert refresh.headers["authorization"] == "Bearer eyJ...refresh"
    retry = pds.calls("app.bsky.feed.searchPosts")[-1]
    assert retry.headers["authorization"] == "Bearer eyJ...access2"


async def test_a_refused_refresh_is_auth_failed_without_tokens_in_the_message() -> None:
    pds = FakePds()
    pds.add("com.atproto.server.refreshSession", Reply(load("error_expired_token.json"), 400))
    pds.add("app.bsky.feed.searchPosts", Reply(load("error_expired_token.json"), 400))
    with pytest.raises(AuthFailed) as caught:
        await make(pds).fetch(Cursor())
    assert "eyJ" not in str(caught.value) and "abcd-efgh" not in str(caught.value)
    assert len(pds.calls("com.atproto.server.refreshSession")) == 1


async def test_a_token_refused_after_refresh_is_auth_failed() -> None:
    pds = FakePds()
    pds.add("com.atproto.server.refreshSession", Reply(load("refresh_session.json")))
    pds.add("app.bsky.feed.searchPosts", Reply(load("error_expired_token.json"), 401))
    with pytest.raises(AuthFailed, match="after a refresh"):
        await make(pds).fetch(Cursor())


async def test_a_wrong_app_password_is_auth_failed() -> None:
    pds = FakePds()
    refused = {"error": "AuthenticationRequired", "message": "Invalid identifier or password"}
    pds.add("com.atproto.server.createSession", Reply(refused, 401), replace=True)
    with pytest.raises(AuthFailed):
        await make(pds).check()


async def test_server_errors_are_retried_by_the_http_client() -> None:
    pds = FakePds()
    pds.add(
        "app.bsky.feed.searchPosts",
        Reply({"error": "InternalServerError"}, 502),
        Reply(load("search_posts_page2.json")),
    )
    sleeps = Sleeps()
    batch = await make(pds, sleeps=sleeps).fetch(Cursor())
    assert len(batch.posts) == 1 and len(sleeps.waits) == 1


async def test_check_logs_in_and_asks_for_the_session() -> None:
    pds = FakePds()
    pds.add("com.atproto.server.getSession", Reply({"did": SCHOOL, "handle": "x"}))
    connector = make(pds)
    await connector.check()
    assert [r.url.path for r in pds.requests] == [
        "/xrpc/com.atproto.server.createSession",
        "/xrpc/com.atproto.server.getSession",
    ]
    await connector.aclose()


# --- own-account sources ----------------------------------------------------------------------


def own_pds(thread: Any = None) -> FakePds:
    pds = FakePds()
    pds.add(
        "app.bsky.feed.getAuthorFeed",
        Reply(load("author_feed.json")),
        Reply(load("author_feed_page2.json")),
    )
    pds.add("app.bsky.feed.getPostThread", Reply(thread or load("post_thread.json")))
    return pds


def single_post_thread(uri: str) -> dict[str, Any]:
    body: dict[str, Any] = load("post_thread.json")
    body["thread"]["post"]["uri"] = uri
    body["thread"]["replies"] = []
    return body


async def test_first_own_poll_reads_the_feed_then_each_watched_thread() -> None:
    pds = own_pds()
    pds.add(
        "app.bsky.feed.getPostThread",
        Reply(load("post_thread.json")),
        Reply(single_post_thread(OLDER)),
        replace=True,
    )
    batches, cursor = await poll(make(pds, SourceKind.OWN), Cursor())
    ids = [[p.external_id for p in b.posts] for b in batches]
    assert ids == [[ROOT], [OLDER], [ROOT, REPLY1, REPLY2], [OLDER]]  # the repost is skipped
    threads = [r.url.params["uri"] for r in pds.calls("app.bsky.feed.getPostThread")]
    assert threads == [ROOT, OLDER]  # newest thread first
    assert pds.calls("app.bsky.feed.getAuthorFeed")[1].url.params["cursor"] == (
        "2026-10-04T09:00:00.000Z"
    )
    state = read_state(cursor)
    assert state["watched"][ROOT] == [ROOT, REPLY1, REPLY2]
    assert all(b.gone == () for b in batches)


async def test_thread_replies_are_mapped_with_parents() -> None:
    pds = own_pds()
    pds.add("app.bsky.feed.getAuthorFeed", Reply({"feed": []}), replace=True)
    connector = make(pds, SourceKind.OWN)
    state = {"phase": "threads", "threads": [ROOT], "thread": 0}
    batch = await connector.fetch(Cursor(value=json.dumps(state)))
    root, reply1, reply2 = batch.posts
    assert root.parent_id is None and root.thread_id == ROOT
    assert reply1.parent_id == ROOT and reply1.thread_id == ROOT
    assert reply2.parent_id == REPLY1 and reply2.text == ""
    assert reply2.permalink == (
        "https://bsky.app/profile/did:plc:replier2account00000000000/post/3m2cccccccc2k"
    )
    assert [(m.type, m.url) for m in reply2.media] == [
        ("link", "https://www.example-council.gov.uk/parking")
    ]
    assert all(p.source_kind is SourceKind.OWN for p in batch.posts) and batch.exhausted


async def test_second_own_poll_stops_at_the_watermark_and_sees_edits_and_deletions() -> None:
    pds = own_pds()
    pds.add(
        "app.bsky.feed.getPostThread",
        Reply(load("post_thread.json")),
        Reply(single_post_thread(OLDER)),
        replace=True,
    )
    connector = make(pds, SourceKind.OWN)
    _, cursor = await poll(connector, Cursor())
    changed = load("post_thread.json")
    reply1 = changed["thread"]["replies"][0]
    reply1["post"]["record"]["text"] = "Will there be parking on site? (edited)"
    reply1["replies"] = []  # reply 2 was deleted
    pds.add("app.bsky.feed.getAuthorFeed", Reply(load("author_feed.json")), replace=True)
    pds.add(
        "app.bsky.feed.getPostThread",
        Reply(changed),
        Reply(load("error_post_not_found.json"), 400),  # the older post was deleted
        replace=True,
    )
    batches, cursor = await poll(connector, cursor)
    assert [p.external_id for p in batches[0].posts] == [ROOT, REPLY1]  # feed had nothing new
    assert batches[0].posts[1].text == "Will there be parking on site? (edited)"
    assert batches[0].gone == (REPLY2,)
    assert batches[1].gone == (OLDER,) and batches[1].exhausted
    assert read_state(cursor)["threads"] == [ROOT]


async def test_an_own_poll_with_no_posts_is_one_empty_page() -> None:
    pds = FakePds()
    pds.add("app.bsky.feed.getAuthorFeed", Reply({"feed": []}))
    batch = await make(pds, SourceKind.OWN).fetch(Cursor())
    assert batch.posts == () and batch.exhausted
    assert pds.calls("app.bsky.feed.getAuthorFeed")[0].url.params["actor"] == (
        "exampleacademy.bsky.social"
    )


# --- moderation -------------------------------------------------------------------------------


def target(uri: str, thread: str | None = None) -> ModerationTarget:
    return ModerationTarget(platform="bluesky", external_id=uri, thread_id=thread or uri)


async def test_report_uses_the_cid_from_the_fetched_post() -> None:
    pds = FakePds()
    pds.add("app.bsky.feed.searchPosts", Reply(load("search_posts.json")))
    pds.add("com.atproto.moderation.createReport", Reply(load("create_report_response.json")))
    connector = make(pds, report_reason_type="com.atproto.moderation.defs#reasonRude")
    await connector.fetch(Cursor())
    result = await connector.moderate(Capability.REPORT, target(MENTION))
    assert result.supported and result.done and "123456789" in result.detail
    (call,) = pds.calls("com.atproto.moderation.createReport")
    expected = load("create_report_request.json")
    sent = json.loads(call.content)
    assert sent["subject"] == expected["subject"] and sent["reasonType"] == expected["reasonType"]
    assert call.headers["atproto-proxy"] == "did:plc:ar7c4by46qjdydhdevvrndac#atproto_labeler"


async def test_report_looks_the_cid_up_when_not_cached() -> None:
    pds = FakePds()
    pds.add("app.bsky.feed.getPosts", Reply(load("get_posts.json")))
    pds.add("com.atproto.moderation.createReport", Reply(load("create_report_response.json")))
    result = await make(pds).moderate(Capability.REPORT, target(MENTION))
    assert result.done
    assert pds.calls("app.bsky.feed.getPosts")[0].url.params["uris"] == MENTION
    sent = json.loads(pds.calls("com.atproto.moderation.createReport")[0].content)
    assert sent["subject"]["cid"] == load("get_posts.json")["posts"][0]["cid"]
    assert sent["reasonType"] == "com.atproto.moderation.defs#reasonOther"


async def test_report_of_a_vanished_post_is_not_supported() -> None:
    pds = FakePds()
    pds.add("app.bsky.feed.getPosts", Reply({"posts": []}))
    result = await make(pds).moderate(Capability.REPORT, target(MENTION))
    assert not result.supported and not result.done and "bsky.app" in result.detail


@pytest.mark.parametrize(
    ("status", "error", "raised"),
    [(400, "InvalidRequest", ConnectorUnavailable), (403, "Forbidden", AuthFailed)],
)
async def test_a_refused_report_raises(status: int, error: str, raised: type[Exception]) -> None:
    pds = FakePds()
    pds.add("app.bsky.feed.getPosts", Reply(load("get_posts.json")))
    pds.add(
        "com.atproto.moderation.createReport",
        Reply({"error": error, "message": "refused"}, status),
    )
    with pytest.raises(raised):
        await make(pds).moderate(Capability.REPORT, target(MENTION))


async def test_hide_adds_the_reply_to_the_threadgate_keeping_its_rules() -> None:
    pds = FakePds()
    pds.add("com.atproto.repo.getRecord", Reply(load("get_record_threadgate.json")))
    pds.add("com.atproto.repo.putRecord", Reply(load("put_record_response.json")))
    result = await make(pds, SourceKind.OWN).moderate(Capability.HIDE, target(REPLY1, ROOT))
    assert result.supported and result.done
    get = pds.calls("com.atproto.repo.getRecord")[0].url.params
    assert (get["repo"], get["collection"], get["rkey"]) == (
        SCHOOL,
        "app.bsky.feed.threadgate",
        "3m2aaaaaaaa2k",
    )
    put = json.loads(pds.calls("com.atproto.repo.putRecord")[0].content)
    assert put["swapRecord"] == load("get_record_threadgate.json")["cid"]
    assert put["record"]["hiddenReplies"] == [REPLY1]
    assert put["record"]["allow"] == [{"$type": "app.bsky.feed.threadgate#mentionRule"}]
    assert put["record"]["post"] == ROOT and put["rkey"] == "3m2aaaaaaaa2k"


async def test_hide_without_a_threadgate_creates_one_that_still_lets_anyone_reply() -> None:
    pds = FakePds()
    pds.add("com.atproto.repo.getRecord", Reply(load("error_record_not_found.json"), 400))
    pds.add("com.atproto.repo.putRecord", Reply(load("put_record_response.json")))
    result = await make(pds, SourceKind.OWN).moderate(Capability.HIDE, target(REPLY1, ROOT))
    assert result.done
    put = json.loads(pds.calls("com.atproto.repo.putRecord")[0].content)
    assert "swapRecord" not in put and "allow" not in put["record"]
    assert put["record"]["$type"] == "app.bsky.feed.threadgate"
    assert put["record"]["createdAt"] == "2026-10-06T12:00:00.000000Z"


async def test_unhide_removes_the_reply() -> None:
    gate = load("get_record_threadgate.json")
    gate["value"]["hiddenReplies"] = [REPLY2, REPLY1]
    pds = FakePds()
    pds.add("com.atproto.repo.getRecord", Reply(gate))
    pds.add("com.atproto.repo.putRecord", Reply(load("put_record_response.json")))
    await make(pds, SourceKind.OWN).moderate(Capability.UNHIDE, target(REPLY1, ROOT))
    put = json.loads(pds.calls("com.atproto.repo.putRecord")[0].content)
    assert put["record"]["hiddenReplies"] == [REPLY2]


async def test_hide_is_refused_by_the_platform() -> None:
    pds = FakePds()
    pds.add("com.atproto.repo.getRecord", Reply(load("get_record_threadgate.json")))
    pds.add("com.atproto.repo.putRecord", Reply({"error": "InvalidSwap", "message": "x"}, 400))
    with pytest.raises(ConnectorUnavailable, match="InvalidSwap"):
        await make(pds, SourceKind.OWN).moderate(Capability.HIDE, target(REPLY1, ROOT))


async def test_a_full_threadgate_cannot_hide_more() -> None:
    gate = load("get_record_threadgate.json")
    gate["value"]["hiddenReplies"] = [f"at://did:plc:x/app.bsky.feed.post/{n}" for n in range(50)]
    pds = FakePds()
    pds.add("com.atproto.repo.getRecord", Reply(gate))
    result = await make(pds, SourceKind.OWN).moderate(Capability.HIDE, target(REPLY1, ROOT))
    assert not result.supported and "50" in result.detail
    assert pds.calls("com.atproto.repo.putRecord") == []


@pytest.mark.parametrize(
    ("capability", "post"),
    [
        (Capability.HIDE, target(REPLY1, "at://did:plc:someoneelse/app.bsky.feed.post/3m2")),
        (Capability.HIDE, target(ROOT)),
        (Capability.DELETE, target(REPLY1, ROOT)),
    ],
)
async def test_what_bluesky_cannot_do_is_not_supported(
    capability: Capability, post: ModerationTarget
) -> None:
    pds = FakePds()
    result = await make(pds).moderate(capability, post)
    assert not result.supported and not result.done and result.detail
    assert capability is not Capability.DELETE or "Report" in result.detail


# --- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "secrets", "terms", "key"),
    [
        ({"handle": ""}, {"app_password": "x"}, ("a",), "options.handle:"),
        ({"handle": "a.bsky.social"}, {}, ("a",), "credentials.app_password: required (give"),
        ({"handle": "a.bsky.social"}, {"app_password": "x"}, (), "search_terms:"),
        ({"handle": "a", "page_size": 500}, {"app_password": "x"}, ("a",), "options.page_size:"),
        ({"handle": "a", "api_base": ""}, {"app_password": "x"}, ("a",), "options.api_base:"),
        (
            {"handle": "a", "thread_depth": 0},
            {"app_password": "x"},
            ("a",),
            "options.thread_depth:",
        ),
    ],
)
def test_from_context_names_the_bad_key(
    options: dict[str, Any], secrets: dict[str, str], terms: tuple[str, ...], key: str
) -> None:
    context = SourceContext(
        source_name="bluesky",
        kind=SourceKind.MENTION,
        search_terms=terms,
        options=options,
        secrets=secrets,
    )
    with pytest.raises(ValueError) as caught:
        BlueskyConnector.from_context(context)
    assert str(caught.value).startswith(key)


def test_the_handle_defaults_to_the_source_account() -> None:
    context = SourceContext(
        source_name="bluesky",
        kind=SourceKind.OWN,
        account="exampleacademy.bsky.social",
        secrets={"app_password": "x"},
    )
    assert "app_password" not in repr(BlueskyConnector.from_context(context).__dict__)
