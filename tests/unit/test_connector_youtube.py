"""YouTubeConnector on recorded YouTube Data API v3 payloads, served by httpx.MockTransport."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
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
from connectors.state import read_state, write_state
from connectors.youtube import YouTubeConnector, comment_to_post, pacific_reset

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "youtube"
NOW = datetime(2026, 10, 6, 12, 0, tzinfo=UTC)  # 05:00 in California (PDT)
CHANNEL = "UCexampleAcademy0000000"
T1, T2, T3 = (
    "UgyThreadOne0000000000AaABAg",
    "UgyThreadTwo0000000000AaABAg",
    "UgyThreadThree00000000AaABAg",
)
SECONDS_TO_PACIFIC_MIDNIGHT = 19 * 3600.0


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


class FakeYouTube:
    """Serves queued responses per path and records every request."""

    def __init__(self) -> None:
        self.queue: dict[str, list[httpx.Response]] = {}
        self.requests: list[httpx.Request] = []

    def add(self, path: str, name: str | None = None, *, status: int = 200, body: str = "") -> None:
        text = json.dumps(load(name)) if name else body
        headers = {"Content-Type": "application/json"} if text else {}
        response = httpx.Response(status, text=text, headers=headers)
        self.queue.setdefault(path, []).append(response)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/youtube/v3")
        if not self.queue.get(path):
            raise AssertionError(f"unexpected request {request.method} {path}")
        return self.queue[path].pop(0)

    def params(self, path: str) -> list[dict[str, str]]:
        return [dict(r.url.params) for r in self.requests if r.url.path.endswith(path)]


@pytest.fixture
def api() -> FakeYouTube:
    return FakeYouTube()


@pytest.fixture
async def make(api: FakeYouTube) -> AsyncIterator[Callable[..., YouTubeConnector]]:
    made: list[YouTubeConnector] = []
    sleeps: list[float] = []

    async def sleep(delay: float) -> None:
        sleeps.append(delay)

    def build(
        kind: SourceKind = SourceKind.OWN,
        *,
        options: dict[str, Any] | None = None,
        secrets: dict[str, str] | None = None,
        now: datetime = NOW,
    ) -> YouTubeConnector:
        context = SourceContext(
            source_name="yt",
            kind=kind,
            search_terms=("Example Academy", "EA School"),
            options={"channel_id": CHANNEL, **(options or {})},
            secrets=secrets if secrets is not None else {"api_key": "secret-key"},
            clock=lambda: now,
            transport=httpx.MockTransport(api.handler),
            sleep=sleep,
        )
        made.append(YouTubeConnector.from_context(context))
        return made[-1]

    build.sleeps = sleeps  # type: ignore[attr-defined]
    yield build
    for connector in made:
        await connector.aclose()


async def poll(connector: YouTubeConnector, cursor: Cursor) -> list[Batch]:
    batches = [await connector.fetch(cursor)]
    while not batches[-1].exhausted:
        batches.append(await connector.fetch(batches[-1].cursor))
        assert len(batches) < 20
    return batches


def serve_first_poll(api: FakeYouTube) -> None:
    api.add("/commentThreads", "comment_threads_page1.json")
    api.add("/commentThreads", "comment_threads_page2.json")
    api.add("/comments", "comments_list_page1.json")
    api.add("/comments", "comments_list_page2.json")


# ---- fetch ---------------------------------------------------------------------------------


async def test_first_poll_pages_threads_then_fetches_all_replies_of_busy_threads(
    make: Callable[..., YouTubeConnector], api: FakeYouTube
) -> None:
    serve_first_poll(api)
    batches = await poll(make(), Cursor())

    assert len(batches) == 4
    posts = [p for b in batches for p in b.posts]
    tops = [p for p in posts if p.parent_id == "dQw4w9WgXcQ"]
    assert [p.external_id for p in tops] == [T1, T2, T3]
    replies_t1 = {p.external_id for p in posts if p.thread_id == T1 and p.external_id != T1}
    assert len(replies_t1) == 7  # 5 carried by the thread, all 7 from comments.list
    first = tops[0]
    assert first.platform == "youtube" and first.source_kind == SourceKind.OWN
    assert first.text == "Lovely concert, thank you all" and first.author_handle == "@aparent"
    assert first.author_id == "UCaparent000000000000000"
    assert first.permalink == f"https://www.youtube.com/watch?v=dQw4w9WgXcQ&lc={T1}"
    assert first.created_at == datetime(2026, 10, 5, 17, tzinfo=UTC) and first.updated_at is None
    assert first.account == CHANNEL
    threads = api.params("/commentThreads")
    assert threads[0]["allThreadsRelatedToChannelId"] == CHANNEL
    assert threads[0]["order"] == "time" and threads[0]["part"] == "snippet,replies"
    assert "pageToken" not in threads[0] and threads[1]["pageToken"].startswith("QURTSl9")
    comments = api.params("/comments")
    assert [c["parentId"] for c in comments] == [T1, T1]
    assert comments[1]["pageToken"] == "R2V0UmVwbGllc1BhZ2VUd28="
    state = read_state(batches[-1].cursor)
    assert state["mark"] == "2026-10-05T17:00:00+00:00" and "step" not in state
    assert state["quota"] == {"day": "2026-10-06", "used": 4}
    assert set(state["watch"]) == {T1, T2}
    assert not any(b.gone for b in batches)


async def test_edited_comment_and_deleted_thread_and_reply(
    make: Callable[..., YouTubeConnector], api: FakeYouTube
) -> None:
    connector = make()
    serve_first_poll(api)
    first = await poll(connector, Cursor())
    api.add("/commentThreads", "comment_threads_edited.json")
    api.add("/comments", "comments_list_after_delete.json")

    second = await poll(connector, first[-1].cursor)

    edited = second[0].posts[0]
    assert edited.external_id == T1
    assert edited.text == "Lovely concert, thank you all (edited: and the staff!)"
    assert edited.updated_at == datetime(2026, 10, 5, 19, 30, tzinfo=UTC)
    gone = [g for b in second for g in b.gone]
    assert gone == [T2, f"{T1}.C00000000002"]
    assert read_state(second[-1].cursor)["quota"]["used"] == 6


async def test_incremental_poll_stops_at_the_last_seen_thread(
    make: Callable[..., YouTubeConnector], api: FakeYouTube
) -> None:
    state = {"mark": "2026-10-05T17:00:00+00:00", "watch": {}, "seen": {}}
    api.add("/commentThreads", "comment_threads_list.json")  # has a nextPageToken
    batches = await poll(make(), write_state(state))
    assert len(batches) == 1 and len(api.requests) == 1  # the old thread ends the read


async def test_empty_page(make: Callable[..., YouTubeConnector], api: FakeYouTube) -> None:
    api.add("/commentThreads", body='{"kind": "youtube#commentThreadListResponse", "items": []}')
    batch = await make().fetch(Cursor())
    assert batch.posts == () and batch.exhausted and batch.gone == ()


async def test_mention_search_finds_videos_since_the_last_mark(
    make: Callable[..., YouTubeConnector], api: FakeYouTube
) -> None:
    connector = make(SourceKind.MENTION, options={"channel_id": ""})
    api.add("/search", "search_list.json")
    api.add("/search", body='{"kind": "youtube#searchListResponse", "items": []}')

    first = await poll(connector, Cursor())
    second = await poll(connector, first[-1].cursor)

    video = first[0].posts[0]
    assert video.external_id == "a1B2c3D4e5F" and video.source_kind == SourceKind.MENTION
    assert video.text.startswith("Example Academy parents protest\n\nParents gathered")
    assert video.permalink == "https://www.youtube.com/watch?v=a1B2c3D4e5F"
    assert video.media[0].url.endswith("hqdefault.jpg")
    searches = api.params("/search")
    assert searches[0]["q"] == '"Example Academy"|"EA School"'
    assert (
        searches[0]["type"] == "video" and searches[0]["publishedAfter"] == "2026-09-29T12:00:00Z"
    )
    assert searches[1]["publishedAfter"] == "2026-10-05T15:00:00Z"
    assert second[0].posts == ()
    assert read_state(second[-1].cursor)["quota"]["used"] == 200  # 100 units a search


async def test_search_reads_more_pages_only_when_asked(
    make: Callable[..., YouTubeConnector], api: FakeYouTube
) -> None:
    api.add("/search", "search_list.json")
    api.add("/search", body='{"items": []}')
    batches = await poll(make(SourceKind.MENTION, options={"search_pages": 2}), Cursor())
    assert len(batches) == 2 and api.params("/search")[1]["pageToken"] == "CAUQAA"


# ---- quota and errors ----------------------------------------------------------------------


def test_pacific_reset() -> None:
    day, wait = pacific_reset(NOW)
    assert day.isoformat() == "2026-10-06" and wait == SECONDS_TO_PACIFIC_MIDNIGHT


async def test_a_call_over_the_local_quota_is_rate_limited_until_the_reset(
    make: Callable[..., YouTubeConnector], api: FakeYouTube
) -> None:
    cursor = write_state({"quota": {"day": "2026-10-06", "used": 9_950}})
    with pytest.raises(RateLimited) as caught:
        await make(SourceKind.MENTION).fetch(cursor)
    assert caught.value.retry_after == SECONDS_TO_PACIFIC_MIDNIGHT
    assert api.requests == []


async def test_quota_count_restarts_on_a_new_pacific_day(
    make: Callable[..., YouTubeConnector], api: FakeYouTube
) -> None:
    api.add("/commentThreads", "comment_threads_page2.json")
    cursor = write_state({"quota": {"day": "2026-10-05", "used": 10_000}})
    batch = await make().fetch(cursor)
    assert read_state(batch.cursor)["quota"] == {"day": "2026-10-06", "used": 1}


async def test_quota_exceeded_403_is_rate_limited_until_the_reset(
    make: Callable[..., YouTubeConnector], api: FakeYouTube
) -> None:
    api.add("/commentThreads", "error_quota_exceeded.json", status=403)
    with pytest.raises(RateLimited) as caught:
        await make().fetch(Cursor())
    assert caught.value.retry_after == SECONDS_TO_PACIFIC_MIDNIGHT


@pytest.mark.parametrize(
    ("name", "status"), [("error_401_auth.json", 401), ("error_key_invalid.json", 400)]
)
async def test_revoked_token_or_bad_key_is_auth_failed_without_the_secret(
    make: Callable[..., YouTubeConnector], api: FakeYouTube, name: str, status: int
) -> None:
    api.add("/commentThreads", name, status=status)
    with pytest.raises(AuthFailed) as caught:
        await make().fetch(Cursor())
    assert "secret-key" not in str(caught.value)


async def test_server_error_is_retried_by_the_http_client(
    make: Callable[..., YouTubeConnector], api: FakeYouTube
) -> None:
    connector = make()
    api.add("/commentThreads", status=503, body="unavailable")
    api.add("/commentThreads", "comment_threads_page2.json")
    batch = await connector.fetch(Cursor())
    assert [p.external_id for p in batch.posts] == [T3]
    assert len(make.sleeps) == 1  # type: ignore[attr-defined]


async def test_server_errors_that_persist_are_unavailable(
    make: Callable[..., YouTubeConnector], api: FakeYouTube
) -> None:
    for _ in range(4):
        api.add("/commentThreads", status=500, body="oops")
    with pytest.raises(ConnectorUnavailable, match="HTTP 500"):
        await make().fetch(Cursor())


@pytest.mark.parametrize("body", ['{"items": {"id": 1}}', "[]", "<html>"])
async def test_response_of_the_wrong_shape_is_payload_invalid(
    make: Callable[..., YouTubeConnector], api: FakeYouTube, body: str
) -> None:
    api.add("/commentThreads", body=body)
    with pytest.raises(PayloadInvalid) as caught:
        await make().fetch(Cursor())
    assert caught.value.payload == body


async def test_one_bad_thread_is_rejected_and_the_rest_kept(
    make: Callable[..., YouTubeConnector], api: FakeYouTube
) -> None:
    page = load("comment_threads_page1.json")
    del page["items"][0]["snippet"]["topLevelComment"]["snippet"]["publishedAt"]
    api.add("/commentThreads", body=json.dumps(page))
    batch = await make().fetch(Cursor())
    assert {p.thread_id for p in batch.posts} == {T2}
    assert len(batch.rejects) == 1 and T1 in batch.rejects[0].payload


# ---- moderation ----------------------------------------------------------------------------

OAUTH = {"oauth_token": "owner-token"}
TARGET = ModerationTarget(platform="youtube", external_id=f"{T1}.C00000000002", thread_id=T1)


@pytest.mark.parametrize(
    ("capability", "status"),
    [
        (Capability.HIDE, "heldForReview"),
        (Capability.UNHIDE, "published"),
        (Capability.DELETE, "rejected"),
    ],
)
async def test_moderation_sets_the_comment_status(
    make: Callable[..., YouTubeConnector], api: FakeYouTube, capability: Capability, status: str
) -> None:
    api.add("/comments/setModerationStatus", status=204)
    result = await make(secrets=OAUTH).moderate(capability, TARGET)
    assert result.supported and result.done
    request = api.requests[0]
    assert request.method == "POST"
    assert dict(request.url.params) == {"id": TARGET.external_id, "moderationStatus": status}
    assert request.headers["Authorization"] == "Bearer owner-token"


async def test_delete_can_ban_the_author(
    make: Callable[..., YouTubeConnector], api: FakeYouTube
) -> None:
    api.add("/comments/setModerationStatus", status=204)
    connector = make(options={"ban_author_on_delete": True}, secrets=OAUTH)
    await connector.moderate(Capability.DELETE, TARGET)
    assert api.requests[0].url.params["banAuthor"] == "true"


async def test_moderation_spends_quota_at_the_next_fetch(
    make: Callable[..., YouTubeConnector], api: FakeYouTube
) -> None:
    connector = make(secrets=OAUTH)
    api.add("/comments/setModerationStatus", status=204)
    api.add("/commentThreads", "comment_threads_page2.json")
    await connector.moderate(Capability.HIDE, TARGET)
    batch = await connector.fetch(Cursor())
    assert read_state(batch.cursor)["quota"]["used"] == 51


async def test_moderation_refused_for_lack_of_permission_raises(
    make: Callable[..., YouTubeConnector], api: FakeYouTube
) -> None:
    api.add("/comments/setModerationStatus", "error_forbidden.json", status=403)
    with pytest.raises(AuthFailed):
        await make(secrets=OAUTH).moderate(Capability.HIDE, TARGET)


@pytest.mark.parametrize(
    ("name", "status"),
    [("error_comment_not_found.json", 404), ("error_ban_without_reject.json", 400)],
)
async def test_moderation_errors(
    make: Callable[..., YouTubeConnector], api: FakeYouTube, name: str, status: int
) -> None:
    api.add("/comments/setModerationStatus", name, status=status)
    connector = make(secrets=OAUTH)
    if name == "error_comment_not_found.json":
        result = await connector.moderate(Capability.DELETE, TARGET)
        assert not result.supported and "commentNotFound" in result.detail
    else:  # a request we should never build: not retried as "not supported"
        with pytest.raises(ConnectorUnavailable, match="HTTP 400"):
            await connector.moderate(Capability.DELETE, TARGET)


async def test_report_and_moderation_without_oauth_are_not_supported(
    make: Callable[..., YouTubeConnector], api: FakeYouTube
) -> None:
    report = await make(secrets=OAUTH).moderate(Capability.REPORT, TARGET)
    assert not report.supported and "Report" in report.detail
    no_token = await make().moderate(Capability.HIDE, TARGET)
    assert not no_token.supported and "oauth_token" in no_token.detail
    assert api.requests == []


# ---- configuration and check ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "options", "secrets", "key"),
    [
        (SourceKind.OWN, {}, {}, "credentials.api_key"),
        (SourceKind.OWN, {"channel_id": ""}, None, "options.channel_id"),
        (SourceKind.OWN, {"api_base": "ftp://x"}, None, "options.api_base"),
        (SourceKind.OWN, {"daily_quota": 0}, None, "options.daily_quota"),
        (SourceKind.OWN, {"page_size": 101}, None, "options.page_size"),
        (SourceKind.OWN, {"watch_threads": 51}, None, "options.watch_threads"),
        (SourceKind.OWN, {"ban_author_on_delete": "yes"}, None, "options.ban_author_on_delete"),
        (SourceKind.MENTION, {"search_pages": 9}, None, "options.search_pages"),
    ],
)
def test_from_context_names_the_bad_key(
    kind: SourceKind, options: dict[str, Any], secrets: dict[str, str] | None, key: str
) -> None:
    context = SourceContext(
        source_name="yt",
        kind=kind,
        search_terms=("Example Academy",),
        options={"channel_id": CHANNEL, **options},
        secrets={"api_key": "k"} if secrets is None else secrets,
    )
    with pytest.raises(ValueError, match=re.escape(key)):
        YouTubeConnector.from_context(context)


def test_mention_source_needs_search_terms() -> None:
    context = SourceContext(source_name="yt", kind=SourceKind.MENTION, secrets={"api_key": "k"})
    with pytest.raises(ValueError, match="search_terms"):
        YouTubeConnector.from_context(context)


async def test_check_reads_the_channel_and_the_owner_token(
    make: Callable[..., YouTubeConnector], api: FakeYouTube
) -> None:
    api.add("/channels", "channels_list.json")
    api.add("/channels", "channels_list.json")
    await make(secrets={"api_key": "secret-key", "oauth_token": "owner-token"}).check()
    assert api.params("/channels") == [
        {"part": "id", "id": CHANNEL, "key": "secret-key"},
        {"part": "id", "mine": "true"},
    ]


async def test_check_with_a_revoked_token_raises(
    make: Callable[..., YouTubeConnector], api: FakeYouTube
) -> None:
    api.add("/channels", "error_401_auth.json", status=401)
    with pytest.raises(AuthFailed):
        await make(secrets=OAUTH).check()


def test_reply_without_text_original_uses_text_display() -> None:
    reply = load("comments_list_page1.json")["items"][0]
    del reply["snippet"]["textOriginal"]
    post = comment_to_post(reply, kind=SourceKind.OWN, account=None)
    assert post.text == "Reply 0 to the concert" and post.parent_id == T1
    assert post.created_at == datetime(2026, 10, 5, 18, tzinfo=UTC) + timedelta(0)
