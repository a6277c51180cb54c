"""XConnector on recorded X API v2 payloads.

tweepy's AsyncClient talks aiohttp with a hard-coded https://api.twitter.com, so these tests
patch aiohttp with ``aioresponses`` (regex URLs, fixtures served as application/json); nothing
reaches the network.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses

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
from connectors.state import read_state
from connectors.x import XConnector, snowflake_time, tweet_to_post

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "x"
NOW = datetime(2026, 10, 6, 12, 0, tzinfo=UTC)
SCHOOL = "1111111111"
ROOT_A, ROOT_B, ROOT_C = "2106670659793846273", "2106308271928246273", "2105583496197046273"
REPLY_1, REPLY_2, REPLY_2_EDIT = "2106685759288246274", "2106700858782646275", "2106705891947446276"
API = r"https://api\.twitter\.com/2"
TIMELINE = re.compile(rf"^{API}/users/{SCHOOL}/tweets(\?.*)?$")
MENTIONS = re.compile(rf"^{API}/users/{SCHOOL}/mentions(\?.*)?$")
SEARCH = re.compile(rf"^{API}/tweets/search/recent\?.*$")
OAUTH1 = {
    "consumer_key": "ck",
    "consumer_secret": "cs",
    "access_token": "at",
    "access_token_secret": "ats",
}


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def context(
    kind: SourceKind = SourceKind.OWN,
    *,
    options: dict[str, Any] | None = None,
    secrets: dict[str, str] | None = None,
    now: datetime = NOW,
) -> SourceContext:
    return SourceContext(
        source_name="x-test",
        kind=kind,
        account="ExampleAcademy",
        search_terms=("Example Academy", "EA School"),
        options={"user_id": SCHOOL, **(options or {})},
        secrets={"bearer_token": "app-bearer", **(secrets or {})},
        clock=lambda: now,
        sleep=WAITS.append_async,
    )


class _Waits(list[float]):
    """Records the backoff waits instead of sleeping."""

    async def append_async(self, seconds: float) -> None:
        self.append(seconds)


WAITS = _Waits()


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., XConnector]]:
    made: list[XConnector] = []

    def build(*args: Any, **kwargs: Any) -> XConnector:
        made.append(XConnector.from_context(context(*args, **kwargs)))
        return made[-1]

    yield build
    for connector in made:
        await connector.aclose()


@pytest.fixture
def api() -> Any:
    with aioresponses() as mocked:
        yield mocked


def serve(
    api: Any,
    url: re.Pattern[str],
    name: str | None = None,
    *,
    status: int = 200,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: str | None = None,
) -> None:
    text = body if body is not None else json.dumps(load(name)) if name else ""
    api.add(url, method, status=status, body=text, headers=headers, content_type="application/json")


def conversation(root: str) -> re.Pattern[str]:
    return re.compile(rf"^{API}/tweets/search/recent\?.*conversation_id(:|%3A){root}.*$")


def calls(api: Any, pattern: re.Pattern[str]) -> list[dict[str, Any]]:
    """The query parameters of each request made to ``pattern``, in order."""
    found: list[dict[str, Any]] = []
    for (_method, url), requests in api.requests.items():
        if pattern.match(str(url)):
            found.extend(dict(r.kwargs.get("params") or {}) for r in requests)
    return found


async def poll(connector: XConnector, cursor: Cursor) -> list[Batch]:
    """Fetch pages until the connector says it is exhausted, as the poller does."""
    batches = [await connector.fetch(cursor)]
    while not batches[-1].exhausted:
        batches.append(await connector.fetch(batches[-1].cursor))
        assert len(batches) < 20
    return batches


def serve_first_poll(api: Any, conversation_a: str = "conversation_search.json") -> None:
    serve(api, TIMELINE, "users_tweets.json")
    serve(api, TIMELINE, "users_tweets_page2.json")
    serve(api, MENTIONS, "users_mentions.json")
    serve(api, MENTIONS, "users_mentions_empty.json")
    serve(api, conversation(ROOT_A), conversation_a)
    serve(api, conversation(ROOT_B), "users_mentions_empty.json")
    serve(api, conversation(ROOT_C), "users_mentions_empty.json")


# ---- fetch ---------------------------------------------------------------------------------


async def test_first_poll_reads_timeline_mentions_and_watched_conversations(
    make: Callable[..., XConnector], api: Any
) -> None:
    serve_first_poll(api)
    batches = await poll(make(), Cursor())

    assert len(batches) == 7  # 2 timeline pages, 2 mention pages, 3 conversations
    ids = [p.external_id for b in batches for p in b.posts]
    assert ids[:3] == [ROOT_A, ROOT_B, ROOT_C]
    assert set(ids[3:5]) == {"1975000000000000002", "1975000000000000001"}
    assert set(ids[5:]) == {REPLY_1, REPLY_2}
    first = batches[0].posts[0]
    assert first.platform == "x" and first.source_kind == SourceKind.OWN
    assert first.author_handle == "ExampleAcademy" and first.account == "ExampleAcademy"
    assert first.permalink == f"https://x.com/ExampleAcademy/status/{ROOT_A}"
    assert first.created_at == datetime(2026, 10, 4, 9, tzinfo=UTC)
    photo = batches[0].posts[1].media[0]
    assert (photo.type, photo.url) == ("image", "https://pbs.twimg.com/media/ExampleHarvest.jpg")
    reply = next(p for b in batches for p in b.posts if p.external_id == REPLY_1)
    assert (reply.parent_id, reply.thread_id, reply.author_handle) == (ROOT_A, ROOT_A, "aparent")
    timeline = calls(api, TIMELINE)
    assert "since_id" not in timeline[0] and timeline[0]["start_time"] == "2026-09-29T12:00:00Z"
    assert timeline[1]["pagination_token"] == "7140dibdnow9c7btw4b4glh5tzpn1zrkqj9jcc7w6ofkv"
    assert timeline[0]["start_time"] == timeline[1]["start_time"]  # same question on every page
    assert (
        timeline[0]["exclude"] == "retweets"
        and "attachments.media_keys" in timeline[0]["expansions"]
    )
    state = read_state(batches[-1].cursor)
    assert state["since"] == {"timeline": ROOT_A, "mentions": "1975000000000000002"}
    assert "step" not in state and not any(b.gone for b in batches)


async def test_incremental_poll_asks_only_for_newer_posts(
    make: Callable[..., XConnector], api: Any
) -> None:
    connector = make()
    serve_first_poll(api)
    first = await poll(connector, Cursor())
    serve(api, TIMELINE, "users_mentions_empty.json")
    serve(api, MENTIONS, "users_mentions_empty.json")
    for root in (ROOT_A, ROOT_B, ROOT_C):
        serve(api, conversation(root), "users_mentions_empty.json")

    second = await poll(connector, first[-1].cursor)

    timeline, mentions = calls(api, TIMELINE), calls(api, MENTIONS)
    assert timeline[-1]["since_id"] == ROOT_A and "start_time" not in timeline[-1]
    assert mentions[-1]["since_id"] == "1975000000000000002"
    assert [p for b in second for p in b.posts] == []  # empty pages
    assert read_state(second[-1].cursor)["since"] == read_state(first[-1].cursor)["since"]


async def test_edited_reply_is_a_new_version_and_deleted_reply_is_gone(
    make: Callable[..., XConnector], api: Any
) -> None:
    connector = make()
    serve_first_poll(api)
    first = await poll(connector, Cursor())
    serve(api, TIMELINE, "users_mentions_empty.json")
    serve(api, MENTIONS, "users_mentions_empty.json")
    serve(api, conversation(ROOT_A), "conversation_search_edited.json")
    for root in (ROOT_B, ROOT_C):
        serve(api, conversation(root), "users_mentions_empty.json")

    second = await poll(connector, first[-1].cursor)

    edited = next(p for b in second for p in b.posts)
    assert edited.external_id == REPLY_2  # the first id of the edit history
    assert edited.text == "Great photos!"
    assert edited.created_at == snowflake_time(REPLY_2)
    assert edited.updated_at == datetime(2026, 10, 4, 11, 20, tzinfo=UTC)
    assert edited.permalink == f"https://x.com/anotherparent/status/{REPLY_2_EDIT}"
    assert [g for b in second for g in b.gone] == [REPLY_1]
    conversations = calls(api, conversation(ROOT_A))
    assert all("since_id" not in c for c in conversations)  # watched threads are re-read whole


async def test_old_conversations_leave_the_watch_list_without_marking_replies_gone(
    make: Callable[..., XConnector], api: Any
) -> None:
    serve_first_poll(api)
    first = await poll(make(), Cursor())
    later = make(now=NOW + timedelta(days=7))
    serve(api, TIMELINE, "users_mentions_empty.json")
    serve(api, MENTIONS, "users_mentions_empty.json")

    second = await poll(later, first[-1].cursor)

    assert [g for b in second for g in b.gone] == []
    state = read_state(second[-1].cursor)
    assert state["watch"] == {} and state["seen"] == {}


async def test_watch_conversations_zero_skips_the_conversation_reads(
    make: Callable[..., XConnector], api: Any
) -> None:
    serve(api, TIMELINE, "users_tweets_page2.json")
    serve(api, MENTIONS, "users_mentions_empty.json")
    batches = await poll(make(options={"watch_conversations": 0}), Cursor())
    assert len(batches) == 3 and batches[-1].posts == ()
    assert calls(api, SEARCH) == []


async def test_mention_source_searches_the_quoted_terms_without_retweets(
    make: Callable[..., XConnector], api: Any
) -> None:
    newest = "1975000000000000010"
    now = snowflake_time(newest) + timedelta(days=1)
    connector = make(SourceKind.MENTION, now=now)
    serve(api, SEARCH, "search_recent.json")
    serve(api, SEARCH, "users_mentions_empty.json")

    first = await poll(connector, Cursor())
    second = await poll(connector, first[-1].cursor)

    post = first[0].posts[0]
    assert post.source_kind == SourceKind.MENTION and post.author_handle == "localreporter"
    query = calls(api, SEARCH)
    expected = '("Example Academy" OR "EA School") -is:retweet -from:ExampleAcademy'
    assert query[0]["query"] == expected and "since_id" not in query[0]
    assert query[1]["since_id"] == newest
    assert second[0].posts == () and second[0].exhausted


async def test_stale_search_since_id_falls_back_to_a_start_time(
    make: Callable[..., XConnector], api: Any
) -> None:
    connector = make(SourceKind.MENTION)  # NOW is a year after the fixture's snowflake ids
    serve(api, SEARCH, "users_mentions_empty.json")
    cursor = Cursor(value=json.dumps({"since": {"search": "1975000000000000010"}}))
    await connector.fetch(cursor)
    params = calls(api, SEARCH)[0]
    assert "since_id" not in params and params["start_time"] == "2026-09-29T13:00:00Z"


# ---- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["error_429_problem.json", "error_429_docs_example.json"])
async def test_rate_limit_waits_until_the_reset_header(
    make: Callable[..., XConnector], api: Any, name: str
) -> None:
    reset = str(int(NOW.timestamp()) + 300)
    serve(
        api,
        TIMELINE,
        name,
        status=429,
        headers={**load("rate_limit_headers.json"), "x-rate-limit-reset": reset},
    )
    with pytest.raises(RateLimited) as caught:
        await make().fetch(Cursor())
    assert caught.value.retry_after == 301.0


async def test_rate_limit_without_reset_header_uses_the_default_wait(
    make: Callable[..., XConnector], api: Any
) -> None:
    serve(api, TIMELINE, "error_429_problem.json", status=429)
    with pytest.raises(RateLimited) as caught:
        await make().fetch(Cursor())
    assert caught.value.retry_after == 60.0


async def test_revoked_token_is_auth_failed_without_the_token(
    make: Callable[..., XConnector], api: Any
) -> None:
    serve(api, TIMELINE, "error_401_problem.json", status=401)
    with pytest.raises(AuthFailed) as caught:
        await make().fetch(Cursor())
    assert "app-bearer" not in str(caught.value) and "?" not in str(caught.value)


async def test_forbidden_read_is_auth_failed(make: Callable[..., XConnector], api: Any) -> None:
    serve(api, TIMELINE, "error_403_hide_not_permitted.json", status=403)
    with pytest.raises(AuthFailed):
        await make().fetch(Cursor())


async def test_a_server_error_is_retried_within_the_call(
    make: Callable[..., XConnector], api: Any
) -> None:
    WAITS.clear()
    serve(api, TIMELINE, "error_503_problem.json", status=503)
    serve(api, TIMELINE, "users_tweets_page2.json")
    batch = await make().fetch(Cursor())
    assert [p.external_id for p in batch.posts] == [ROOT_C] and len(WAITS) == 1


async def test_server_errors_past_the_retries_are_unavailable_and_the_cursor_stays(
    make: Callable[..., XConnector], api: Any
) -> None:
    WAITS.clear()
    connector = make()
    for _ in range(4):  # the first try and three retries
        serve(api, TIMELINE, "error_503_problem.json", status=503)
    serve(api, TIMELINE, "users_tweets_page2.json")
    with pytest.raises(ConnectorUnavailable, match="HTTP 503"):
        await connector.fetch(Cursor())
    assert len(WAITS) == 3
    batch = await connector.fetch(Cursor())
    assert [p.external_id for p in batch.posts] == [ROOT_C]


async def test_error_page_that_is_not_json_still_maps_by_status(
    make: Callable[..., XConnector], api: Any
) -> None:
    api.add(TIMELINE, "GET", status=401, body="<html>nope</html>", content_type="text/html")
    with pytest.raises(AuthFailed):
        await make().fetch(Cursor())


async def test_connection_error_is_unavailable(make: Callable[..., XConnector], api: Any) -> None:
    api.add(TIMELINE, "GET", exception=aiohttp.ClientConnectionError("reset"))
    with pytest.raises(ConnectorUnavailable, match="ClientConnectionError"):
        await make().fetch(Cursor())


@pytest.mark.parametrize("body", ['{"data": {"id": "1"}}', "[]", "not json"])
async def test_response_of_the_wrong_shape_is_payload_invalid(
    make: Callable[..., XConnector], api: Any, body: str
) -> None:
    serve(api, TIMELINE, body=body)
    with pytest.raises(PayloadInvalid) as caught:
        await make().fetch(Cursor())
    assert caught.value.payload == body


async def test_one_bad_item_is_rejected_and_the_rest_of_the_page_kept(
    make: Callable[..., XConnector], api: Any
) -> None:
    page = load("users_tweets.json")
    page["data"][1]["id"] = "not-a-number"
    serve(api, TIMELINE, body=json.dumps(page))
    batch = await make().fetch(Cursor())
    assert [p.external_id for p in batch.posts] == [ROOT_A]
    assert len(batch.rejects) == 1 and "not-a-number" in batch.rejects[0].payload


async def test_partial_errors_in_a_200_become_rejects(
    make: Callable[..., XConnector], api: Any
) -> None:
    serve(api, TIMELINE, "partial_error_in_200.json")
    batch = await make().fetch(Cursor())
    assert [p.external_id for p in batch.posts] == ["1975000000000000001"]
    assert batch.posts[0].permalink == "https://x.com/i/web/status/1975000000000000001"
    assert "Not Found Error" in batch.rejects[0].error
    assert json.loads(batch.rejects[0].payload)["resource_id"] == "1975000000000000099"


# ---- moderation ----------------------------------------------------------------------------

LOOKUP = re.compile(rf"^{API}/tweets\?.*$")
HIDDEN = re.compile(rf"^{API}/tweets/{REPLY_2_EDIT}/hidden$")
TARGET = ModerationTarget(platform="x", external_id=REPLY_2, thread_id=ROOT_A, parent_id=ROOT_A)


async def test_hide_reply_in_own_conversation_hides_the_newest_version(
    make: Callable[..., XConnector], api: Any
) -> None:
    serve(api, LOOKUP, "tweets_lookup.json")
    serve(api, HIDDEN, "hide_reply_response.json", method="PUT")
    result = await make(secrets=OAUTH1).moderate(Capability.HIDE, TARGET)
    assert result.supported and result.done
    put = api.requests[("PUT", next(u for m, u in api.requests if m == "PUT"))][0]
    assert put.kwargs["json"] == {"hidden": True}
    assert put.kwargs["headers"]["Authorization"].startswith("OAuth ")
    assert calls(api, LOOKUP)[0]["ids"] == f"{REPLY_2},{ROOT_A}"


async def test_unhide_with_an_oauth2_user_token(make: Callable[..., XConnector], api: Any) -> None:
    serve(api, LOOKUP, "tweets_lookup.json")
    serve(api, HIDDEN, body='{"data": {"hidden": false}}', method="PUT")
    result = await make(secrets={"user_access_token": "user-token"}).moderate(
        Capability.UNHIDE, TARGET
    )
    assert result.supported and result.done
    put = api.requests[("PUT", next(u for m, u in api.requests if m == "PUT"))][0]
    assert put.kwargs["headers"]["Authorization"] == "Bearer user-token"
    assert put.kwargs["json"] == {"hidden": False}


async def test_hide_refused_as_not_permitted_is_not_supported(
    make: Callable[..., XConnector], api: Any
) -> None:
    serve(api, LOOKUP, "tweets_lookup.json")
    serve(api, HIDDEN, "error_403_hide_not_permitted.json", status=403, method="PUT")
    result = await make(secrets=OAUTH1).moderate(Capability.HIDE, TARGET)
    assert not result.supported and not result.done and "help.x.com" in result.detail


async def test_hide_with_a_revoked_user_token_raises(
    make: Callable[..., XConnector], api: Any
) -> None:
    serve(api, LOOKUP, "tweets_lookup.json")
    serve(api, HIDDEN, "error_401_problem.json", status=401, method="PUT")
    with pytest.raises(AuthFailed):
        await make(secrets=OAUTH1).moderate(Capability.HIDE, TARGET)


async def test_hide_outside_the_schools_conversations_is_not_supported(
    make: Callable[..., XConnector], api: Any
) -> None:
    lookup = load("tweets_lookup.json")
    lookup["data"][1]["author_id"] = "999"
    serve(api, LOOKUP, body=json.dumps(lookup))
    result = await make(secrets=OAUTH1).moderate(Capability.HIDE, TARGET)
    assert not result.supported and "conversations the school started" in result.detail
    assert not any(m == "PUT" for m, _ in api.requests)


async def test_hide_of_a_deleted_post_is_not_supported(
    make: Callable[..., XConnector], api: Any
) -> None:
    serve(api, LOOKUP, "users_mentions_empty.json")
    result = await make(secrets=OAUTH1).moderate(Capability.HIDE, TARGET)
    assert not result.supported and "no longer returns" in result.detail


@pytest.mark.parametrize("capability", [Capability.DELETE, Capability.REPORT])
async def test_delete_and_report_are_not_supported(
    make: Callable[..., XConnector], capability: Capability
) -> None:
    result = await make(secrets=OAUTH1).moderate(capability, TARGET)
    assert not result.supported and not result.done
    assert f"https://x.com/i/web/status/{REPLY_2}" in result.detail


async def test_hide_without_user_credentials_is_not_supported(
    make: Callable[..., XConnector],
) -> None:
    result = await make().moderate(Capability.HIDE, TARGET)
    assert not result.supported and "user_access_token" in result.detail


# ---- configuration and check ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "options", "secrets", "key"),
    [
        (SourceKind.OWN, {}, {"bearer_token": ""}, "credentials.bearer_token"),
        (SourceKind.OWN, {"user_id": ""}, {}, "options.user_id"),
        (SourceKind.OWN, {"user_id": "@ExampleAcademy"}, {}, "options.user_id"),
        (SourceKind.OWN, {"api_base": "http://127.0.0.1:9000"}, {}, "options.api_base"),
        (SourceKind.OWN, {"page_size": 500}, {}, "options.page_size"),
        (SourceKind.OWN, {"watch_conversations": 51}, {}, "options.watch_conversations"),
        (SourceKind.OWN, {"backfill_days": 0}, {}, "options.backfill_days"),
        (SourceKind.OWN, {}, {"consumer_key": "ck"}, "credentials.consumer_secret"),
    ],
)
def test_from_context_names_the_bad_key(
    kind: SourceKind, options: dict[str, Any], secrets: dict[str, str], key: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(key)):
        XConnector.from_context(context(kind, options=options, secrets=secrets))


def test_mention_source_needs_search_terms() -> None:
    bare = SourceContext(
        source_name="x", kind=SourceKind.MENTION, secrets={"bearer_token": "t"}, search_terms=(" ",)
    )
    with pytest.raises(ValueError, match="search_terms"):
        XConnector.from_context(bare)


def test_real_api_bases_are_accepted() -> None:
    for base in ("https://api.twitter.com", "https://api.x.com/2"):
        assert XConnector.from_context(context(options={"api_base": base})).name == "x"


async def test_check_looks_up_the_account_with_each_token(
    make: Callable[..., XConnector], api: Any
) -> None:
    serve(api, re.compile(rf"^{API}/users/{SCHOOL}(\?.*)?$"), "user_lookup.json")
    serve(api, re.compile(rf"^{API}/users/me(\?.*)?$"), "user_lookup.json")
    await make(secrets={"user_access_token": "user-token"}).check()
    assert len(api.requests) == 2


async def test_check_with_a_revoked_token_raises(make: Callable[..., XConnector], api: Any) -> None:
    serve(api, re.compile(rf"^{API}/users/{SCHOOL}(\?.*)?$"), "error_401_problem.json", status=401)
    with pytest.raises(AuthFailed):
        await make().check()


async def test_a_session_from_the_context_is_used_and_left_open(api: Any) -> None:
    session = aiohttp.ClientSession()
    connector = XConnector.from_context(
        SourceContext(
            source_name="x",
            kind=SourceKind.OWN,
            options={"user_id": SCHOOL},
            secrets={"bearer_token": "t"},
            transport=session,
        )
    )
    serve(api, TIMELINE, "users_tweets_page2.json")
    await connector.fetch(Cursor())
    await connector.aclose()
    assert connector.reader.session is session and not session.closed
    await session.close()


def test_mapping_rejects_a_tweet_without_an_id() -> None:
    with pytest.raises(KeyError):
        tweet_to_post({"text": "x"}, users={}, media={}, kind=SourceKind.OWN, account=None)
