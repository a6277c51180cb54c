"""The Instagram connector against recorded payloads (the Graph API engine is shared with
Facebook and tested in depth there; this file covers what differs)."""

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
from connectors.instagram import InstagramConnector
from tests.cannedgraph import FakeGraph, gone, poll, posts

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "instagram"
FB_FIXTURES = FIXTURES.parent / "facebook"
USER = "17841400000000001"
MEDIA = "17895695668004550"
NEWER = "17895695668004551"
C1, C2, REPLY = "17870913679156914", "17873440459141021", "17881770991003328"
TOKEN = "EAAGm0PX4ZCpsBAExampleSecretPageToken123"
EMPTY: dict[str, Any] = {"data": []}


def fixture(name: str, where: Path = FIXTURES) -> Any:
    return json.loads((where / name).read_text(encoding="utf-8"))


@pytest.fixture
def graph() -> FakeGraph:
    return FakeGraph()


def connector(
    graph: FakeGraph, kind: SourceKind = SourceKind.OWN, **options: Any
) -> InstagramConnector:
    async def no_wait(seconds: float) -> None:
        return None

    context = SourceContext(
        source_name="ig",
        kind=kind,
        options={"ig_user_id": USER, **options},
        secrets={"access_token": TOKEN},
        transport=httpx.MockTransport(graph.handler),
        sleep=no_wait,
    )
    return InstagramConnector.from_context(context)


def first_poll_routes(graph: FakeGraph) -> None:
    graph.add(f"GET {USER}/media", fixture("user_media.json"))
    graph.add(f"GET {MEDIA}/comments", fixture("media_comments_replies.json"))


async def test_first_poll_reads_media_comments_and_replies(graph: FakeGraph) -> None:
    first_poll_routes(graph)
    batches, _ = await poll(connector(graph), Cursor())
    found = posts(batches)
    assert list(found) == [MEDIA, C1, REPLY, C2] and batches[-1].exhausted
    media, reply, comment = found[MEDIA], found[REPLY], found[C2]
    assert media.text == "Our new library is open! #ExampleAcademy"
    assert media.created_at == datetime(2026, 10, 4, 12, 0, tzinfo=UTC)
    assert (media.author_handle, media.permalink) == (
        "exampleacademy",
        "https://www.instagram.com/p/DAbCdEfGhIj/",
    )
    assert (reply.parent_id, reply.thread_id) == (C1, MEDIA)
    assert (comment.parent_id, comment.author_handle, comment.author_id) == (
        MEDIA,
        "someone_else",
        "17841400000000099",
    )
    assert comment.permalink == media.permalink  # comments have no permalink of their own
    assert comment.raw == fixture("media_comments_replies.json")["data"][1]
    fields = graph.requests[1].url.params["fields"]
    assert "replies.limit(50){" in fields and "parent_id" in fields


async def test_the_fixture_without_replies_maps_too(graph: FakeGraph) -> None:
    graph.add(f"GET {USER}/media", fixture("user_media.json"))
    graph.add(f"GET {MEDIA}/comments", fixture("media_comments.json"))
    batches, _ = await poll(connector(graph), Cursor())
    assert list(posts(batches)) == [MEDIA, C1, C2]


async def test_paged_poll_and_carousel_media_reference(graph: FakeGraph) -> None:
    first_poll_routes(graph)
    _, cursor = await poll(connector(graph, watch_threads=1), Cursor())
    graph.add(f"GET {USER}/media", fixture("user_media_newer.json"))
    graph.routes[f"GET {USER}/media"].pop(0)
    graph.add(f"GET {USER}/media?after=QVFIUk5ldzE", fixture("user_media.json"))
    graph.add(f"GET {NEWER}/comments", EMPTY)
    batches, _ = await poll(connector(graph, watch_threads=1), cursor)
    assert list(posts(batches))[:2] == [NEWER, MEDIA]
    assert posts(batches)[NEWER].media == (
        Media(
            url="https://scontent.cdninstagram.com/v/t51.29350-15/example_carousel_n.jpg",
            type="carousel_album",
        ),
    )


async def test_edits_and_deletions_between_polls(graph: FakeGraph) -> None:
    first_poll_routes(graph)
    conn = connector(graph)
    _, cursor = await poll(conn, Cursor())
    graph.routes[f"GET {MEDIA}/comments"] = [(200, fixture("media_comments_later.json"), {})]
    batches, _ = await poll(conn, cursor)
    assert posts(batches)[C1].text == "This is awesome! Well done everyone."
    assert gone(batches) == [C2]


async def test_truncated_replies_mark_nothing_gone(graph: FakeGraph) -> None:
    first_poll_routes(graph)
    conn = connector(graph)
    _, cursor = await poll(conn, Cursor())
    truncated = fixture("media_comments_replies_truncated.json")
    graph.routes[f"GET {MEDIA}/comments"] = [(200, truncated, {})]
    batches, cursor = await poll(conn, cursor)
    assert gone(batches) == []
    graph.routes[f"GET {MEDIA}/comments"] = [(200, fixture("media_comments_later.json"), {})]
    batches, _ = await poll(conn, cursor)
    assert gone(batches) == [C2]  # still remembered, so noticed on the next complete read


async def test_deleted_media_is_gone_with_its_comments(graph: FakeGraph) -> None:
    first_poll_routes(graph)
    conn = connector(graph)
    _, cursor = await poll(conn, Cursor())
    graph.routes[f"GET {USER}/media"] = [(200, EMPTY, {})]
    missing = fixture("error_object_missing_100.json", FB_FIXTURES)
    graph.routes[f"GET {MEDIA}/comments"] = [(400, missing, {})]
    batches, _ = await poll(conn, cursor)
    assert gone(batches) == [MEDIA, C1, REPLY, C2]


async def test_empty_media_list(graph: FakeGraph) -> None:
    graph.add(f"GET {USER}/media", {"data": [], "paging": {"cursors": {}}})
    batch = await connector(graph).fetch(Cursor())
    assert batch.posts == () and batch.exhausted


async def test_rate_limit_80002_waits_for_the_buc_estimate(graph: FakeGraph) -> None:
    usage = [{"type": "instagram", "call_count": 100, "estimated_time_to_regain_access": 7}]
    headers = {"X-Business-Use-Case-Usage": json.dumps({USER: usage})}
    graph.add(f"GET {USER}/media", fixture("error_rate_limit_80002.json"), 400, headers)
    with pytest.raises(RateLimited) as caught:
        await connector(graph).fetch(Cursor())
    assert caught.value.retry_after == 7 * 60


async def test_expired_token_is_auth_failed(graph: FakeGraph) -> None:
    body = fixture("error_generic_oauth_190.json", FB_FIXTURES)
    graph.add(f"GET {USER}/media", body, status=400)
    with pytest.raises(AuthFailed):
        await connector(graph).fetch(Cursor())


async def test_malformed_payloads(graph: FakeGraph) -> None:
    graph.add(f"GET {USER}/media", {"media": []})
    with pytest.raises(PayloadInvalid):
        await connector(graph).fetch(Cursor())
    comments = fixture("media_comments_replies.json")
    comments["data"][0]["replies"]["data"].append({"id": "1789", "text": "no timestamp"})
    graph.routes.clear()
    first_poll_routes(graph)
    graph.routes[f"GET {MEDIA}/comments"] = [(200, comments, {})]
    batches, _ = await poll(connector(graph), Cursor())
    assert list(posts(batches)) == [MEDIA, C1, REPLY, C2]
    assert [json.loads(r.payload)["id"] for b in batches for r in b.rejects] == ["1789"]


async def test_mentions_read_tags_once(graph: FakeGraph) -> None:
    graph.add(f"GET {USER}/tags", fixture("user_tags.json"))
    conn = connector(graph, kind=SourceKind.MENTION)
    first, cursor = await poll(conn, Cursor())
    (post,) = first[0].posts
    assert (post.source_kind, post.author_handle) == (SourceKind.MENTION, "local_news_uk")
    assert post.text == "Great to visit @exampleacademy today"
    again, _ = await poll(conn, cursor)
    assert posts(again) == {}
    assert graph.paths() == [f"GET {USER}/tags", f"GET {USER}/tags"]


async def test_mentioned_comment_and_media_by_webhook_id(graph: FakeGraph) -> None:
    conn = connector(graph, kind=SourceKind.MENTION)
    graph.add(f"GET {USER}", fixture("mentioned_comment.json"))
    comment = await conn.mentioned_comment("17894227972186120")
    assert comment.text == "@exampleacademy why is nothing being done?"
    assert (
        "mentioned_comment.comment_id(17894227972186120)" in graph.requests[0].url.params["fields"]
    )
    graph.routes.clear()
    graph.add(f"GET {USER}", fixture("mentioned_media.json"))
    media = await conn.mentioned_media("17918195224117851")
    assert media.media[0].type == "video" and str(media.permalink).endswith("/reel/DAqRsTuVwXy/")
    with pytest.raises(ValueError):
        await conn.mentioned_comment("1) {access_token}")
    graph.routes.clear()
    graph.add(f"GET {USER}", fixture("user.json"))
    with pytest.raises(PayloadInvalid):
        await conn.mentioned_media("17918195224117851")


COMMENT = ModerationTarget(platform="instagram", external_id=C2, parent_id=MEDIA, thread_id=MEDIA)


@pytest.mark.parametrize(
    ("capability", "hide"), [(Capability.HIDE, "true"), (Capability.UNHIDE, "false")]
)
async def test_hide_and_unhide(graph: FakeGraph, capability: Capability, hide: str) -> None:
    graph.add(f"POST {C2}", fixture("comment_hide_success.json"))
    result = await connector(graph).moderate(capability, COMMENT)
    assert result.done and parse_qs(graph.requests[0].content.decode()) == {"hide": [hide]}


async def test_delete_and_refusal(graph: FakeGraph) -> None:
    graph.add(f"DELETE {C2}", {"success": True})
    assert (await connector(graph).moderate(Capability.DELETE, COMMENT)).done
    graph.routes.clear()
    graph.add(f"DELETE {C2}", fixture("error_unknown_1.json", FB_FIXTURES), status=400)
    with pytest.raises(ConnectorUnavailable):
        await connector(graph).moderate(Capability.DELETE, COMMENT)


async def test_report_and_media_are_not_supported(graph: FakeGraph) -> None:
    conn = connector(graph)
    report = await conn.moderate(Capability.REPORT, COMMENT)
    assert not report.supported and "help.instagram.com" in report.detail
    media = ModerationTarget(platform="instagram", external_id=MEDIA, thread_id=MEDIA)
    assert not (await conn.moderate(Capability.DELETE, media)).supported
    assert graph.requests == []


async def test_check_and_options(graph: FakeGraph) -> None:
    graph.add(f"GET {USER}", fixture("user.json"))
    await connector(graph).check()
    assert graph.requests[0].url.params["fields"] == "id,username"
    bare = SourceContext(source_name="ig", kind=SourceKind.OWN, secrets={"access_token": "t"})
    with pytest.raises(ValueError, match=r"options\.ig_user_id"):
        InstagramConnector.from_context(bare)
    with pytest.raises(ValueError, match=r"credentials\.access_token"):
        InstagramConnector.from_context(
            SourceContext(source_name="ig", kind=SourceKind.OWN, account=USER)
        )


async def test_incremental_poll_from_the_saved_cursor_sends_nothing_old(graph: FakeGraph) -> None:
    first_poll_routes(graph)
    conn = connector(graph)
    first, cursor = await poll(conn, Cursor())
    assert MEDIA in posts(first)
    # A fresh connector (a restarted daemon) resumes from the cursor alone.
    batches, _ = await poll(connector(graph), cursor)
    again = posts(batches)
    # Watched threads are re-read (that is how edits are seen) but nothing is new or changed,
    # so the store records no new item and no new version; nothing is reported gone.
    assert set(again) <= set(posts(first))
    assert all(again[i].text == posts(first)[i].text for i in again)
    assert not gone(batches)


async def test_a_server_error_then_success_is_retried_in_the_call(graph: FakeGraph) -> None:
    graph.add(f"GET {USER}/media", {"error": {"message": "busy"}}, status=503)
    graph.add(f"GET {USER}/media", fixture("user_media.json"))
    graph.add(f"GET {MEDIA}/comments", fixture("media_comments_replies.json"))
    batches, _ = await poll(connector(graph), Cursor())
    assert MEDIA in posts(batches)
    assert graph.paths().count(f"GET {USER}/media") == 2


# --- the public reply after a removal (Capability.REPLY) ------------------------------------

REPLY_TEXT = "We have removed a comment from this conversation because it was spam."


@pytest.mark.parametrize(
    ("removed", "parent", "edge"),
    [
        # a top-level comment: a new comment on the media
        (C1, MEDIA, "comments"),
        # a reply: a reply to its top-level comment (Instagram refuses replies to hidden ones)
        (REPLY, C1, "replies"),
    ],
)
async def test_reply_posts_on_the_media_or_under_the_top_level_comment(
    graph: FakeGraph, removed: str, parent: str, edge: str
) -> None:
    graph.add(f"GET {parent}/{edge}", EMPTY)
    graph.add(f"POST {parent}/{edge}", {"id": "17899999999999999"})
    target = ModerationTarget(
        platform="instagram",
        external_id=removed,
        parent_id=parent,
        thread_id=MEDIA,
        text=REPLY_TEXT,
    )
    conn = connector(graph)
    result = await conn.moderate(Capability.REPLY, target)
    assert result.done and "17899999999999999" in result.detail
    assert graph.paths() == [f"GET {parent}/{edge}", f"POST {parent}/{edge}"]
    assert graph.requests[0].url.params["fields"] == "id,text"
    assert parse_qs(graph.requests[1].content.decode()) == {"message": [REPLY_TEXT]}
    assert Capability.REPLY in conn.capabilities


async def test_an_instagram_reply_is_posted_once_and_within_the_length_limit(
    graph: FakeGraph,
) -> None:
    graph.add(f"GET {C1}/replies", {"data": [{"id": "1789", "text": REPLY_TEXT}]})
    target = ModerationTarget(
        platform="instagram", external_id=REPLY, parent_id=C1, thread_id=MEDIA, text=REPLY_TEXT
    )
    conn = connector(graph)
    result = await conn.moderate(Capability.REPLY, target)
    assert result.done and "1789" in result.detail and graph.paths() == [f"GET {C1}/replies"]
    too_long = ModerationTarget(
        platform="instagram", external_id=REPLY, parent_id=C1, thread_id=MEDIA, text="x" * 2201
    )
    with pytest.raises(ValueError, match="2200"):
        await conn.moderate(Capability.REPLY, too_long)
