"""The Facebook Pages connector (and the shared Graph API helpers) against recorded payloads."""

from __future__ import annotations

import json
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
    Media,
    ModerationTarget,
    PayloadInvalid,
    RateLimited,
    SourceContext,
    SourceKind,
)
from connectors.facebook import FacebookConnector
from connectors.graph import scrub, usage_wait
from tests.cannedgraph import FakeGraph, gone, poll, posts

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "facebook"
PAGE = "104857600000001"
POST1 = f"{PAGE}_122100000000000001"
POST2 = f"{PAGE}_122100000000000002"
POST3 = f"{PAGE}_122100000000000003"
POST4 = f"{PAGE}_122100000000000004"
C1, C2 = "122100000000000001_987654321000001", "122100000000000001_987654321000002"
TOKEN = "EAAGm0PX4ZCpsBAExampleSecretPageToken123"
EMPTY: dict[str, Any] = {"data": []}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture
def graph() -> FakeGraph:
    return FakeGraph()


@pytest.fixture
def sleeps() -> list[float]:
    return []


def connector(
    graph: FakeGraph,
    sleeps: list[float] | None = None,
    kind: SourceKind = SourceKind.OWN,
    **options: Any,
) -> FacebookConnector:
    async def record(seconds: float) -> None:
        (sleeps if sleeps is not None else []).append(seconds)

    context = SourceContext(
        source_name="fb",
        kind=kind,
        options={"page_id": PAGE, "watch_threads": 2, **options},
        secrets={"access_token": TOKEN},
        transport=httpx.MockTransport(graph.handler),
        sleep=record,
    )
    return FacebookConnector.from_context(context)


def first_poll_routes(graph: FakeGraph) -> None:
    graph.add(f"GET {PAGE}/feed", fixture("page_feed.json"))
    graph.add(f"GET {POST1}/comments", fixture("post_comments.json"))
    graph.add(f"GET {POST2}/comments", EMPTY)


# --- polling --------------------------------------------------------------------------


async def test_first_poll_reads_the_feed_and_every_comment(graph: FakeGraph) -> None:
    first_poll_routes(graph)
    batches, _ = await poll(connector(graph), Cursor())
    found = posts(batches)
    assert list(found) == [POST1, POST2, C1, C2]
    assert batches[-1].exhausted
    post, reply = found[POST1], found[C2]
    assert post.text == "Well done to Year 6 on a fantastic sports day!"
    assert post.created_at == datetime(2026, 10, 5, 14, 3, 11, tzinfo=UTC)
    assert (post.thread_id, post.parent_id, post.source_kind) == (POST1, None, SourceKind.OWN)
    assert (post.author_id, post.author_name, post.account) == (PAGE, "Example Academy", PAGE)
    assert post.permalink == "https://www.facebook.com/104857600000001/posts/122100000000000001"
    assert (reply.parent_id, reply.thread_id, reply.author_name) == (C1, POST1, "Someone Else")
    assert found[C1].parent_id == POST1
    assert reply.raw == fixture("post_comments.json")["data"][1]
    # a first poll reads one page of the feed, never the whole history
    assert graph.paths() == [f"GET {PAGE}/feed", f"GET {POST1}/comments", f"GET {POST2}/comments"]


async def test_requests_carry_fields_filters_and_the_token_only_in_a_header(
    graph: FakeGraph,
) -> None:
    first_poll_routes(graph)
    await poll(connector(graph), Cursor())
    feed, comments = graph.requests[0], graph.requests[1]
    assert feed.url.params["limit"] == "2"
    assert "permalink_url" in feed.url.params["fields"]
    assert comments.url.params["filter"] == "stream"
    assert comments.url.params["order"] == "chronological"
    assert "parent" in comments.url.params["fields"]
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in graph.requests)
    assert all(TOKEN not in str(r.url) for r in graph.requests)


async def test_graph_version_and_api_base_are_options(graph: FakeGraph) -> None:
    graph.add(f"GET {PAGE}", fixture("page.json"))
    conn = connector(graph, graph_version="v26.0", api_base="http://127.0.0.1:9/")
    with pytest.raises(ConnectorUnavailable):  # FakeGraph only answers v25.0 paths
        await conn.check()
    assert str(graph.requests[0].url).startswith("http://127.0.0.1:9/v26.0/104857600000001?")


async def test_app_secret_adds_appsecret_proof(graph: FakeGraph) -> None:
    graph.add(f"GET {PAGE}", fixture("page.json"))
    context = SourceContext(
        source_name="fb",
        kind=SourceKind.OWN,
        options={"page_id": PAGE},
        secrets={"access_token": TOKEN, "app_secret": "s3cret"},
        transport=httpx.MockTransport(graph.handler),
    )
    await FacebookConnector.from_context(context).check()
    proof = graph.requests[0].url.params["appsecret_proof"]
    assert len(proof) == 64 and "s3cret" not in proof


async def test_paged_poll_follows_the_after_cursor_while_posts_are_new(graph: FakeGraph) -> None:
    first_poll_routes(graph)
    _, cursor = await poll(connector(graph), Cursor())
    graph.routes.clear()
    graph.add(f"GET {PAGE}/feed", fixture("page_feed_newer.json"))
    graph.add(f"GET {PAGE}/feed?after=QVFIUm5ld2VyX2FmdGVy", fixture("page_feed.json"))
    for post in (POST1, POST2, POST3, POST4):
        graph.add(f"GET {post}/comments", EMPTY)
    batches, _ = await poll(connector(graph), cursor)
    assert list(posts(batches))[:4] == [POST4, POST3, POST1, POST2]
    assert [r.url.params.get("after") for r in graph.requests[-6:-4]] == [
        None,
        "QVFIUm5ld2VyX2FmdGVy",
    ]
    # page 2 reached posts older than the last poll's newest: no page 3
    assert "QVFIUjVpUWxRZAzh0T3lGVkdY" not in str([r.url for r in graph.requests])
    photo = posts(batches)[POST4]
    assert photo.text == ""
    assert photo.media == (
        Media(url="https://scontent.xx.fbcdn.net/v/t39.30808-6/example_n.jpg", type="image"),
    )
    assert photo.updated_at == datetime(2026, 10, 7, 9, 12, tzinfo=UTC)


async def test_comment_pages_are_followed_and_replies_keep_their_parent(graph: FakeGraph) -> None:
    graph.add(f"GET {PAGE}/feed", fixture("page_feed.json"))
    graph.add(f"GET {POST1}/comments", EMPTY)
    graph.add(f"GET {POST2}/comments", fixture("post_comments_page1.json"))
    graph.add(
        f"GET {POST2}/comments?after=WTI5dGJXVnVkRjlqZAFhKemIzSTZAQ",
        fixture("post_comments_page2.json"),
    )
    batches, _ = await poll(connector(graph), Cursor())
    reply = posts(batches)["122100000000000002_987654321000102"]
    assert reply.parent_id == "122100000000000002_987654321000101"
    assert reply.media[0].type == "sticker"
    assert len(batches) == 3 and batches[-1].exhausted


async def test_incremental_own_poll_rereads_watched_threads_only(graph: FakeGraph) -> None:
    first_poll_routes(graph)
    conn = connector(graph)
    _, cursor = await poll(conn, Cursor())
    sent = len(graph.requests)
    batches, _ = await poll(conn, cursor)
    assert graph.paths()[sent:] == graph.paths()[:sent]  # one feed page + the 2 threads
    assert set(posts(batches)) == {POST1, POST2, C1, C2} and gone(batches) == []


async def test_empty_feed_is_an_empty_exhausted_batch(graph: FakeGraph) -> None:
    graph.add(f"GET {PAGE}/feed", fixture("paging_cursor_example.json"))
    batch = await connector(graph).fetch(Cursor())
    assert batch.posts == () and batch.gone == () and batch.exhausted


async def test_a_thread_with_no_comments_does_not_end_the_poll_early(graph: FakeGraph) -> None:
    graph.add(f"GET {PAGE}/feed", fixture("page_feed.json"))
    graph.add(f"GET {POST1}/comments", EMPTY)
    graph.add(f"GET {POST2}/comments", fixture("post_comments_page2.json"))
    batches, _ = await poll(connector(graph), Cursor())
    assert "122100000000000002_987654321000102" in posts(batches)


async def test_an_edited_comment_keeps_its_id_with_new_text(graph: FakeGraph) -> None:
    first_poll_routes(graph)
    conn = connector(graph)
    _, cursor = await poll(conn, Cursor())
    graph.add(f"GET {POST1}/comments", fixture("post_comments_later.json"))
    graph.routes[f"GET {POST1}/comments"].pop(0)
    batches, _ = await poll(conn, cursor)
    assert posts(batches)[C1].text.endswith("Lovely photos too.")


async def test_a_deleted_comment_is_reported_gone(graph: FakeGraph) -> None:
    first_poll_routes(graph)
    conn = connector(graph)
    _, cursor = await poll(conn, Cursor())
    graph.routes[f"GET {POST1}/comments"] = [(200, fixture("post_comments_later.json"), {})]
    batches, _ = await poll(conn, cursor)
    assert gone(batches) == [C2]


async def test_a_deleted_post_and_its_comments_are_reported_gone(graph: FakeGraph) -> None:
    first_poll_routes(graph)
    conn = connector(graph)
    _, cursor = await poll(conn, Cursor())
    feed = fixture("page_feed.json")
    feed["data"] = feed["data"][1:]
    graph.routes[f"GET {PAGE}/feed"] = [(200, feed, {})]
    graph.routes[f"GET {POST1}/comments"] = [(400, fixture("error_object_missing_100.json"), {})]
    batches, cursor = await poll(conn, cursor)
    assert gone(batches) == [POST1, C1, C2]
    state = json.loads(cursor.value or "{}")
    assert POST1 not in state["threads"] and POST1 not in state["watched"]


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "wait"),
    [
        ("error_rate_limit_4.json", 403, 3600.0),
        ("error_rate_limit_17.json", 403, 3600.0),
        ("error_rate_limit_32.json", 400, 900.0),
        ("error_rate_limit_613.json", 400, 900.0),
        ("error_rate_limit_80001.json", 400, 900.0),
    ],
)
async def test_rate_limit_codes_raise_rate_limited(
    graph: FakeGraph, name: str, status: int, wait: float
) -> None:
    graph.add(f"GET {PAGE}/feed", fixture(name), status=status)
    with pytest.raises(RateLimited) as caught:
        await connector(graph).fetch(Cursor())
    assert caught.value.retry_after == wait


async def test_rate_limit_waits_for_the_buc_estimate(graph: FakeGraph) -> None:
    graph.add(
        f"GET {PAGE}/feed",
        fixture("error_rate_limit_80001.json"),
        status=400,
        headers=fixture("rate_limit_headers.json"),
    )
    with pytest.raises(RateLimited) as caught:
        await connector(graph).fetch(Cursor())
    assert caught.value.retry_after == 19 * 60
    assert "80001" in str(caught.value)


async def test_usage_near_the_limit_on_a_200_slows_us_down(graph: FakeGraph) -> None:
    graph.add(f"GET {PAGE}/feed", fixture("page_feed.json"), headers=rate_headers(96, 0))
    with pytest.raises(RateLimited) as caught:
        await connector(graph).fetch(Cursor())
    assert caught.value.retry_after == 300.0


@pytest.mark.parametrize(
    ("app", "buc", "minutes", "wait"),
    [(28, 20, 0, None), (95, 20, 0, 300.0), (28, 99, 0, 300.0), (28, 20, 19, 1140.0)],
)
def test_usage_wait_reads_both_headers(
    app: int, buc: int, minutes: int, wait: float | None
) -> None:
    assert usage_wait(httpx.Headers(rate_headers(app, minutes, buc))) == wait


def test_usage_wait_ignores_missing_or_garbled_headers() -> None:
    assert usage_wait(httpx.Headers({})) is None
    assert (
        usage_wait(httpx.Headers({"X-App-Usage": "{oops", "X-Business-Use-Case-Usage": "[]"}))
        is None
    )
    assert usage_wait(httpx.Headers({"X-App-Usage": "[1]"})) is None


def rate_headers(app: int, minutes: int, buc: int = 20) -> dict[str, str]:
    usage = {"type": "pages", "call_count": buc, "total_cputime": 1, "total_time": 1}
    return {
        "X-App-Usage": json.dumps({"call_count": app, "total_time": 1, "total_cputime": 1}),
        "X-Business-Use-Case-Usage": json.dumps(
            {PAGE: [usage | {"estimated_time_to_regain_access": minutes}]}
        ),
    }


async def test_expired_token_is_auth_failed_without_the_token(graph: FakeGraph) -> None:
    body = fixture("error_generic_oauth_190.json")
    body["error"]["message"] = f"Malformed access token {TOKEN}"
    graph.add(f"GET {PAGE}/feed", body, status=400)
    with pytest.raises(AuthFailed) as caught:
        await connector(graph).fetch(Cursor())
    assert TOKEN not in str(caught.value) and "190/460" in str(caught.value)


def test_scrub_removes_secrets_and_token_like_strings() -> None:
    text = scrub(f"bad {TOKEN} and EAAB{'x' * 30} here", [TOKEN])
    assert text == "bad [redacted] and [redacted] here"


async def test_5xx_is_retried_then_succeeds(graph: FakeGraph, sleeps: list[float]) -> None:
    graph.add(f"GET {PAGE}/feed", {"error": {"message": "down", "code": 2}}, status=503)
    graph.add(f"GET {PAGE}/feed", fixture("paging_cursor_example.json"))
    batch = await connector(graph, sleeps).fetch(Cursor())
    assert batch.exhausted and len(sleeps) == 1 and len(graph.requests) == 2


async def test_other_graph_errors_are_unavailable(graph: FakeGraph) -> None:
    graph.add(f"GET {PAGE}/feed", fixture("error_unknown_1.json"), status=500)
    with pytest.raises(ConnectorUnavailable):
        await connector(graph).fetch(Cursor())
    graph.routes.clear()
    graph.add(f"GET {PAGE}/feed", fixture("error_unknown_1.json"), status=400)
    with pytest.raises(ConnectorUnavailable, match="Graph error 1/99: An unknown error"):
        await connector(graph).fetch(Cursor())


@pytest.mark.parametrize("body", [{"foo": 1}, [1, 2], "<html>oops</html>", {"data": {"id": 1}}])
async def test_a_response_of_the_wrong_shape_is_payload_invalid(
    graph: FakeGraph, body: Any
) -> None:
    graph.add(f"GET {PAGE}/feed", body)
    with pytest.raises(PayloadInvalid):
        await connector(graph).fetch(Cursor())


async def test_one_bad_item_is_rejected_and_the_rest_kept(graph: FakeGraph) -> None:
    feed = fixture("page_feed.json")
    feed["data"].insert(1, {"id": "104857600000001_9", "message": "no time"})
    feed["data"].append("not an object")
    graph.add(f"GET {PAGE}/feed", feed)
    batch = await connector(graph, watch_threads=4).fetch(Cursor())
    assert [p.external_id for p in batch.posts] == [POST1, POST2]
    assert len(batch.rejects) == 2 and "created_time" in batch.rejects[0].error
    assert json.loads(batch.rejects[0].payload)["id"] == "104857600000001_9"


async def test_an_unreadable_cursor_is_a_first_poll(graph: FakeGraph) -> None:
    first_poll_routes(graph)
    for value in ("not json", '{"run": [1]}', '{"mark": "x"}'):
        batch = await connector(graph).fetch(Cursor(value=value))
        assert [p.external_id for p in batch.posts] == [POST1, POST2]


# --- mentions -------------------------------------------------------------------------------


async def test_mentions_read_tagged_posts_and_never_resend_old_ones(graph: FakeGraph) -> None:
    graph.add(f"GET {PAGE}/tagged", fixture("page_tagged.json"))
    conn = connector(graph, kind=SourceKind.MENTION)
    first, cursor = await poll(conn, Cursor())
    assert [p.source_kind for p in first[0].posts] == [SourceKind.MENTION] * 2
    assert first[0].posts[0].author_name == "A Parent" and first[0].exhausted
    again, _ = await poll(conn, cursor)
    assert posts(again) == {}
    assert graph.requests[0].url.params["limit"] == "25"


# --- moderation, check, options ---------------------------------------------------------------

COMMENT = ModerationTarget(platform="facebook", external_id=C2, parent_id=C1, thread_id=POST1)


@pytest.mark.parametrize(
    ("capability", "method", "hidden"),
    [(Capability.HIDE, "POST", "true"), (Capability.UNHIDE, "POST", "false")],
)
async def test_hide_and_unhide_post_is_hidden(
    graph: FakeGraph, capability: Capability, method: str, hidden: str
) -> None:
    graph.add(f"POST {C2}", fixture("comment_hide_success.json"))
    result = await connector(graph).moderate(capability, COMMENT)
    assert result.supported and result.done
    assert parse_qs(graph.requests[0].content.decode()) == {"is_hidden": [hidden]}


async def test_delete_sends_delete(graph: FakeGraph) -> None:
    graph.add(f"DELETE {C2}", fixture("comment_delete_success.json"))
    result = await connector(graph).moderate(Capability.DELETE, COMMENT)
    assert result.done and graph.paths() == [f"DELETE {C2}"]


async def test_a_refused_moderation_call_raises(graph: FakeGraph) -> None:
    graph.add(f"POST {C2}", fixture("error_permission_200.json"), status=403)
    with pytest.raises(AuthFailed):
        await connector(graph).moderate(Capability.HIDE, COMMENT)
    graph.routes.clear()
    graph.add(f"DELETE {C2}", {"success": False})
    with pytest.raises(ConnectorUnavailable):
        await connector(graph).moderate(Capability.DELETE, COMMENT)


async def test_a_successful_moderation_call_is_not_undone_by_usage_headers(
    graph: FakeGraph,
) -> None:
    graph.add(f"POST {C2}", {"success": True}, headers=rate_headers(99, 5))
    assert (await connector(graph).moderate(Capability.HIDE, COMMENT)).done


async def test_report_and_posts_are_not_supported(graph: FakeGraph) -> None:
    conn = connector(graph)
    report = await conn.moderate(Capability.REPORT, COMMENT)
    assert not report.supported and "facebook.com/help/reportlinks" in report.detail
    post = ModerationTarget(platform="facebook", external_id=POST1, thread_id=POST1)
    hide = await conn.moderate(Capability.HIDE, post)
    assert not hide.supported and "Only comments" in hide.detail
    odd = ModerationTarget(platform="facebook", external_id="../me", parent_id=POST1)
    assert not (await conn.moderate(Capability.DELETE, odd)).supported
    assert graph.requests == [] and Capability.REPORT not in conn.capabilities


async def test_check_reads_the_page(graph: FakeGraph) -> None:
    graph.add(f"GET {PAGE}", fixture("page.json"))
    await connector(graph).check()
    assert graph.requests[0].url.params["fields"] == "id,name"
    graph.routes.clear()
    graph.add(f"GET {PAGE}", fixture("error_generic_oauth_190.json"), status=400)
    with pytest.raises(AuthFailed):
        await connector(graph).check()


@pytest.mark.parametrize(
    ("options", "secrets", "key"),
    [
        ({"page_id": "1"}, {}, "credentials.access_token"),
        ({"page_id": ""}, {"access_token": "t"}, "options.page_id"),
        ({"page_id": "1", "graph_version": "25"}, {"access_token": "t"}, "options.graph_version"),
        ({"page_id": "1", "api_base": "ftp://x"}, {"access_token": "t"}, "options.api_base"),
        ({"page_id": "1", "watch_threads": 0}, {"access_token": "t"}, "options.watch_threads"),
        ({"page_id": "1", "page_size": 101}, {"access_token": "t"}, "options.page_size"),
        ({"page_id": ["1"]}, {"access_token": "t"}, "options.page_id"),
    ],
)
def test_from_context_names_the_bad_key(
    options: dict[str, Any], secrets: dict[str, str], key: str
) -> None:
    context = SourceContext(source_name="fb", kind=SourceKind.OWN, options=options, secrets=secrets)
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        FacebookConnector.from_context(context)


async def test_page_id_falls_back_to_the_account(graph: FakeGraph) -> None:
    context = SourceContext(
        source_name="fb", kind=SourceKind.OWN, account=PAGE, secrets={"access_token": TOKEN}
    )
    conn = FacebookConnector.from_context(context)
    assert conn.listing_path() == f"{PAGE}/feed" and TOKEN not in repr(conn.settings)
    await conn.aclose()


# --- the public reply after a removal (Capability.REPLY) ------------------------------------

REPLY_TEXT = "We have removed a comment from this conversation because it was spam."


def replying(target: ModerationTarget, text: str | None = REPLY_TEXT) -> ModerationTarget:
    return ModerationTarget(
        platform=target.platform,
        external_id=target.external_id,
        parent_id=target.parent_id,
        thread_id=target.thread_id,
        text=text,
    )


@pytest.mark.parametrize(
    ("target", "parent"),
    [
        # a top-level comment: the reply is a new comment on the post
        (
            ModerationTarget(platform="facebook", external_id=C1, parent_id=POST1, thread_id=POST1),
            POST1,
        ),
        # a reply to a comment: the reply goes under that comment, never under the hidden one
        (COMMENT, C1),
    ],
)
async def test_reply_posts_under_the_removed_comments_parent(
    graph: FakeGraph, target: ModerationTarget, parent: str
) -> None:
    graph.add(f"GET {parent}/comments", EMPTY)
    graph.add(f"POST {parent}/comments", {"id": f"{parent}_555"})
    conn = connector(graph)
    result = await conn.moderate(Capability.REPLY, replying(target))
    assert result.supported and result.done and f"{parent}_555" in result.detail
    assert graph.paths() == [f"GET {parent}/comments", f"POST {parent}/comments"]
    read, post = graph.requests
    assert read.url.params["order"] == "reverse_chronological"
    assert read.url.params["fields"] == "id,message"
    assert parse_qs(post.content.decode()) == {"message": [REPLY_TEXT]}
    assert "message" not in post.url.params and TOKEN not in str(post.url)
    assert Capability.REPLY in conn.capabilities


async def test_a_reply_already_in_the_thread_is_not_posted_again(graph: FakeGraph) -> None:
    posted = {"id": f"{C1}_9", "message": REPLY_TEXT.replace(" ", "  ", 2)}
    graph.add(f"GET {C1}/comments", {"data": [{"id": "x", "message": "other"}, posted]})
    result = await connector(graph).moderate(Capability.REPLY, replying(COMMENT))
    assert result.done and f"{C1}_9" in result.detail
    assert graph.paths() == [f"GET {C1}/comments"]


async def test_a_failed_reply_post_is_not_retried_within_the_call(
    graph: FakeGraph, sleeps: list[float]
) -> None:
    # A 5xx after Meta stored the comment would otherwise post it twice; the executor's retry
    # reads the thread first.
    graph.add(f"GET {C1}/comments", EMPTY)
    graph.add(f"POST {C1}/comments", {"error": {"message": "busy"}}, status=503)
    with pytest.raises(ConnectorUnavailable):
        await connector(graph, sleeps).moderate(Capability.REPLY, replying(COMMENT))
    assert graph.paths().count(f"POST {C1}/comments") == 1 and sleeps == []


async def test_a_reply_answer_without_an_id_is_unavailable(graph: FakeGraph) -> None:
    graph.add(f"GET {C1}/comments", EMPTY)
    graph.add(f"POST {C1}/comments", {"success": True})
    with pytest.raises(ConnectorUnavailable, match="no id"):
        await connector(graph).moderate(Capability.REPLY, replying(COMMENT))


async def test_a_reply_needs_a_comment_and_a_message(graph: FakeGraph) -> None:
    conn = connector(graph)
    post = ModerationTarget(platform="facebook", external_id=POST1, thread_id=POST1, text="hi")
    result = await conn.moderate(Capability.REPLY, post)
    assert not result.supported and "only a comment" in result.detail
    odd = ModerationTarget(platform="facebook", external_id=C2, parent_id="../me", text="hi")
    assert not (await conn.moderate(Capability.REPLY, odd)).supported
    for text in (None, "   ", "x" * 8001):
        with pytest.raises(ValueError, match=r"target\.text"):
            await conn.moderate(Capability.REPLY, replying(COMMENT, text))
    assert graph.requests == []
