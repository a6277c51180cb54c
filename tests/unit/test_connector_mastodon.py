"""The Mastodon connector against recorded payloads served by httpx.MockTransport."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
from connectors.mastodon import MastodonConnector, html_to_text, status_to_post
from connectors.state import read_state

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mastodon"
NOW = datetime(2026, 10, 5, 17, 5, tzinfo=UTC)
TOKEN = "s3cr3t-app-token"
Handler = Callable[[httpx.Request], httpx.Response]


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


class Platform:
    """Routes by path to queued responses (the last one repeats) and records requests."""

    def __init__(self, routes: dict[str, list[httpx.Response] | Handler]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self.routes.get(request.url.path)
        if route is None:
            return reply({"error": "Record not found"}, 404)
        if callable(route):
            return route(request)
        return route.pop(0) if len(route) > 1 else route[0]

    def params(self, path: str) -> list[dict[str, str]]:
        return [dict(r.url.params) for r in self.requests if r.url.path == path]


def statuses(n: int, start: int, template: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """``n`` statuses in the documented shape, newest first, ids ``start`` downwards."""
    base = template or load("tag_timeline.json")[0]
    out = []
    for i in range(n):
        item = copy.deepcopy(base)
        item["id"] = str(start - i)
        item["url"] = f"https://mastodon.social/@someone/{start - i}"
        out.append(item)
    return out


def make(
    platform: Platform,
    *,
    kind: SourceKind = SourceKind.MENTION,
    sleeps: list[float] | None = None,
    **options: Any,
) -> MastodonConnector:
    async def sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    defaults: dict[str, Any] = {"instance": "https://mastodon.social"}
    if kind is SourceKind.OWN:
        defaults["account_id"] = "109000000000000042"
    context = SourceContext(
        source_name="mastodon-test",
        kind=kind,
        search_terms=("Example Academy",),
        options={**defaults, **options},
        secrets={"access_token": TOKEN},
        clock=lambda: NOW,
        transport=httpx.MockTransport(platform),
        sleep=sleep,
    )
    return MastodonConnector.from_context(context)


TAG = "/api/v1/timelines/tag/ExampleAcademy"
SEARCH = "/api/v2/search"
OWN = "/api/v1/accounts/109000000000000042/statuses"
CONTEXT = "/api/v1/statuses/{}/context"
ROOT_NEW, ROOT_OLD = "113280000000000200", "113280000000000100"


async def drain(connector: MastodonConnector, cursor: Cursor) -> tuple[list[Any], Cursor, int]:
    """Fetch pages until exhausted, as the poller does; returns batches, cursor, page count."""
    batches = []
    for _ in range(50):
        batch = await connector.fetch(cursor)
        batches.append(batch)
        cursor = batch.cursor
        if batch.exhausted:
            return batches, cursor, len(batches)
    raise AssertionError("never exhausted")


# -- mentions ---------------------------------------------------------------------------


async def test_first_poll_reads_hashtag_timeline_and_search() -> None:
    platform = Platform(
        {TAG: [reply(load("tag_timeline.json"))], SEARCH: [reply(load("search_v2.json"))]}
    )
    connector = make(platform)
    first = await connector.fetch(Cursor())
    assert not first.exhausted and len(first.posts) == 1
    post = first.posts[0]
    assert post.platform == "mastodon" and post.external_id == "113275000000000001"
    assert post.text == "Proud of the #ExampleAcademy choir"
    assert post.permalink == "https://mastodon.social/@someone/113275000000000001"
    assert post.author_id == "109000000000000001" and post.author_handle == "someone"
    assert post.created_at == datetime(2026, 10, 5, 16, 45, tzinfo=UTC)
    assert post.source_kind is SourceKind.MENTION and post.raw["id"] == "113275000000000001"
    second = await connector.fetch(first.cursor)
    assert second.exhausted and [p.external_id for p in second.posts] == ["113275000000000001"]
    search = platform.params(SEARCH)[0]
    assert search["q"] == "Example Academy" and search["type"] == "statuses"
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in platform.requests)
    await connector.aclose()


async def test_incremental_poll_asks_only_for_newer_statuses() -> None:
    platform = Platform(
        {
            TAG: [reply(load("tag_timeline.json")), reply([])],
            SEARCH: [
                reply(load("search_v2.json")),
                reply({"accounts": [], "statuses": [], "hashtags": []}),
            ],
        }
    )
    connector = make(platform)
    _, cursor, _ = await drain(connector, Cursor())
    batches, cursor, pages = await drain(connector, cursor)
    assert pages == 1 and batches[0].posts == () and batches[0].exhausted
    assert platform.params(TAG)[-1]["since_id"] == "113275000000000001"
    assert platform.params(SEARCH)[-1]["min_id"] == "113275000000000001"
    assert "max_id" not in platform.params(TAG)[-1]


async def test_empty_first_poll_is_exhausted_with_no_posts() -> None:
    platform = Platform({TAG: [reply([])]})
    batch = await make(platform, search=False).fetch(Cursor())
    assert batch.posts == () and batch.exhausted and read_state(batch.cursor)["at"] == 0


async def test_paging_follows_link_next_down_to_the_saved_since_id() -> None:
    link = load("rate_limit_headers.json")["Link"].replace("113275000000000001", "{}")
    pages = [
        reply(statuses(2, 500), headers={"Link": link.format(499, 500)}),
        reply(statuses(2, 498), headers={"Link": link.format(497, 498)}),
        reply(statuses(1, 496)),
    ]
    platform = Platform({TAG: [reply(statuses(1, 400)), *pages]})
    connector = make(platform, search=False, page_size=2)
    _, cursor, _ = await drain(connector, Cursor())  # first poll: since = 400
    batches, cursor, count = await drain(connector, cursor)
    assert count == 3
    assert [p.external_id for b in batches for p in b.posts] == ["500", "499", "498", "497", "496"]
    sent = platform.params(TAG)[1:]
    assert [s.get("max_id") for s in sent] == [None, "499", "497"]
    assert all(s["since_id"] == "400" for s in sent)
    assert read_state(cursor)["streams"]["tag:ExampleAcademy"] == {"since": "500"}


async def test_first_poll_reads_only_first_poll_pages_back() -> None:
    platform = Platform(
        {TAG: [reply(statuses(2, 900)), reply(statuses(2, 898)), reply(statuses(2, 896))]}
    )
    connector = make(platform, search=False, page_size=2, first_poll_pages=2)
    _, cursor, count = await drain(connector, Cursor())
    assert count == 2 and len(platform.requests) == 2
    assert platform.params(TAG)[1]["max_id"] == "899"  # no Link header: the oldest id seen
    assert read_state(cursor)["streams"]["tag:ExampleAcademy"] == {"since": "900"}


# -- own account -------------------------------------------------------------------------


def own_platform(**contexts: list[httpx.Response]) -> Platform:
    routes: dict[str, list[httpx.Response] | Handler] = {
        OWN: [reply(load("account_statuses.json")), reply([])]
    }
    routes[CONTEXT.format(ROOT_NEW)] = contexts.get("new", [reply(load("status_context.json"))])
    routes[CONTEXT.format(ROOT_OLD)] = contexts.get(
        "old", [reply({"ancestors": [], "descendants": []})]
    )
    return Platform(routes)


async def test_own_first_poll_reads_statuses_then_every_reply_in_their_threads() -> None:
    platform = own_platform()
    connector = make(platform, kind=SourceKind.OWN)
    batches, cursor, count = await drain(connector, Cursor())
    posts = [p for b in batches for p in b.posts]
    assert [p.external_id for p in posts] == [
        ROOT_NEW,
        ROOT_OLD,
        "113280000000000210",
        "113280000000000220",
    ]
    root, _, first, nested = posts
    assert (
        root.thread_id == ROOT_NEW
        and root.text == "Sports day is on Friday! Please bring water & sun cream."
    )
    assert first.parent_id == ROOT_NEW and first.thread_id == ROOT_NEW
    assert nested.parent_id == "113280000000000210" and nested.thread_id == ROOT_NEW
    assert (
        first.text == "weather\n\n@exampleacademy Will it be cancelled if it rains? <asking for Y7>"
    )
    assert first.media[0].type == "image" and first.media[0].url.endswith(
        "original/57859aede991da25.jpeg"
    )
    assert first.permalink == "https://example.social/@parent_of_two/113280000000000210"
    assert (
        first.author_handle == "parent_of_two@example.social"
        and first.account == "109000000000000042"
    )
    assert posts[1].text == "Welcome back to the autumn term.\nGates open at 8:15."
    assert platform.params(OWN)[0]["exclude_reblogs"] == "true"
    assert count == 3  # statuses, the replied thread, then the empty older thread
    assert read_state(cursor)["watched"][ROOT_NEW] == ["113280000000000210", "113280000000000220"]


async def test_own_later_poll_sees_edits_and_deletions_in_watched_threads() -> None:
    platform = own_platform(
        new=[reply(load("status_context.json")), reply(load("status_context_edited.json"))]
    )
    connector = make(platform, kind=SourceKind.OWN)
    _, cursor, _ = await drain(connector, Cursor())
    batches, cursor, _ = await drain(connector, cursor)
    assert platform.params(OWN)[-1]["since_id"] == ROOT_NEW
    posts = [p for b in batches for p in b.posts]
    assert [p.external_id for p in posts] == ["113280000000000210"]  # roots are not re-sent
    assert "found the letter" in posts[0].text
    assert posts[0].updated_at == datetime(2026, 10, 6, 9, 5, tzinfo=UTC)
    assert [g for b in batches for g in b.gone] == ["113280000000000220"]


async def test_own_thread_whose_root_was_deleted_is_gone_with_its_replies() -> None:
    platform = own_platform(
        new=[reply(load("status_context.json")), reply({"error": "Record not found"}, 404)]
    )
    connector = make(platform, kind=SourceKind.OWN)
    _, cursor, _ = await drain(connector, Cursor())
    batches, cursor, _ = await drain(connector, cursor)
    assert [g for b in batches for g in b.gone] == [
        ROOT_NEW,
        "113280000000000210",
        "113280000000000220",
    ]
    assert read_state(cursor)["threads"] == [ROOT_OLD]


# -- errors ------------------------------------------------------------------------------


async def test_429_waits_until_the_iso_reset_time() -> None:
    headers = {k: v for k, v in load("rate_limit_headers.json").items() if k != "Link"}
    platform = Platform({TAG: [reply(load("error_rate_limited.json"), 429, headers)]})
    with pytest.raises(RateLimited) as caught:
        await make(platform, search=False).fetch(Cursor())
    assert caught.value.retry_after == 300.0  # 17:10:00 reset, clock at 17:05:00


async def test_429_without_headers_waits_the_five_minute_window() -> None:
    platform = Platform({TAG: [reply(load("error_rate_limited.json"), 429)]})
    with pytest.raises(RateLimited) as caught:
        await make(platform, search=False).fetch(Cursor())
    assert caught.value.retry_after == 300.0


async def test_revoked_token_is_auth_failed_without_the_token() -> None:
    platform = Platform({TAG: [reply({"error": "The access token was revoked"}, 401)]})
    with pytest.raises(AuthFailed) as caught:
        await make(platform, search=False).fetch(Cursor())
    assert "revoked" in str(caught.value) and TOKEN not in str(caught.value)


async def test_server_error_is_retried_by_the_http_client() -> None:
    sleeps: list[float] = []
    platform = Platform({TAG: [reply({"error": "oops"}, 503), reply(load("tag_timeline.json"))]})
    batch = await make(platform, search=False, sleeps=sleeps).fetch(Cursor())
    assert len(batch.posts) == 1 and len(sleeps) == 1


async def test_persistent_server_error_is_unavailable() -> None:
    platform = Platform({TAG: [reply({"error": "oops"}, 502)]})
    with pytest.raises(ConnectorUnavailable):
        await make(platform, search=False, sleeps=[]).fetch(Cursor())


async def test_a_response_that_is_not_a_list_is_payload_invalid() -> None:
    platform = Platform({TAG: [reply({"statuses": []})]})
    with pytest.raises(PayloadInvalid) as caught:
        await make(platform, search=False).fetch(Cursor())
    assert '"statuses"' in caught.value.payload


async def test_one_malformed_status_is_rejected_and_the_rest_kept() -> None:
    items = statuses(3, 300)
    del items[1]["created_at"]
    items[2]["media_attachments"] = ["not an object"]
    platform = Platform({TAG: [reply(items)]})
    batch = await make(platform, search=False).fetch(Cursor())
    assert [p.external_id for p in batch.posts] == ["300"]
    assert len(batch.rejects) == 2 and '"299"' in batch.rejects[0].payload
    assert read_state(batch.cursor)["streams"]["tag:ExampleAcademy"] == {"since": "300"}


# -- moderation --------------------------------------------------------------------------


TARGET = ModerationTarget(platform="mastodon", external_id="113275000000000001")
STATUS = "/api/v1/statuses/113275000000000001"


async def test_report_files_a_report_with_the_authors_account() -> None:
    platform = Platform(
        {
            STATUS: [reply(load("search_v2.json")["statuses"][0])],
            "/api/v1/reports": [reply(load("report_create_response.json"))],
        }
    )
    result = await make(platform).moderate(Capability.REPORT, TARGET)
    assert result.supported and result.done and "48914" in result.detail
    post = platform.requests[-1]
    assert post.method == "POST"
    assert json.loads(post.content) == {
        "account_id": "109000000000000001",
        "status_ids": ["113275000000000001"],
        "comment": json.loads(post.content)["comment"],
        "category": "other",
        "forward": False,
    }


async def test_violation_reports_carry_rule_ids() -> None:
    platform = Platform(
        {
            STATUS: [reply(load("search_v2.json")["statuses"][0])],
            "/api/v1/reports": [reply(load("report_create_response.json"))],
        }
    )
    connector = make(platform, report_category="violation", report_rule_ids=["3"])
    await connector.moderate(Capability.REPORT, TARGET)
    body = json.loads(platform.requests[-1].content)
    assert body["category"] == "violation" and body["rule_ids"] == ["3"]


async def test_refused_report_raises() -> None:
    platform = Platform(
        {
            STATUS: [reply(load("search_v2.json")["statuses"][0])],
            "/api/v1/reports": [
                reply({"error": "This action is outside the authorized scopes"}, 403)
            ],
        }
    )
    with pytest.raises(AuthFailed):
        await make(platform).moderate(Capability.REPORT, TARGET)
    platform = Platform(
        {
            STATUS: [reply(load("search_v2.json")["statuses"][0])],
            "/api/v1/reports": [reply({"error": "Validation failed"}, 422)],
        }
    )
    with pytest.raises(ConnectorUnavailable):
        await make(platform).moderate(Capability.REPORT, TARGET)


async def test_report_of_a_status_that_no_longer_exists_goes_to_a_human() -> None:
    result = await make(Platform({})).moderate(Capability.REPORT, TARGET)
    assert not result.supported and "no longer exists" in result.detail


@pytest.mark.parametrize("capability", [Capability.HIDE, Capability.UNHIDE, Capability.DELETE])
async def test_hide_and_delete_are_not_supported(capability: Capability) -> None:
    platform = Platform({})
    result = await make(platform).moderate(capability, TARGET)
    assert not result.supported and not result.done and "Report" in result.detail
    assert platform.requests == []


# -- setup and check ---------------------------------------------------------------------


async def test_check_calls_verify_credentials() -> None:
    platform = Platform(
        {"/api/v1/accounts/verify_credentials": [reply(load("verify_credentials.json"))]}
    )
    await make(platform).check()
    assert [r.url.path for r in platform.requests] == ["/api/v1/accounts/verify_credentials"]


async def test_check_with_a_bad_token_is_auth_failed() -> None:
    platform = Platform(
        {
            "/api/v1/accounts/verify_credentials": [
                reply({"error": "The access token is invalid"}, 401)
            ]
        }
    )
    with pytest.raises(AuthFailed):
        await make(platform).check()


def context(
    kind: SourceKind = SourceKind.MENTION, secrets: dict[str, str] | None = None, **options: Any
) -> SourceContext:
    return SourceContext(
        source_name="m",
        kind=kind,
        search_terms=("Example Academy",),
        options=options,
        secrets={"access_token": TOKEN} if secrets is None else secrets,
    )


@pytest.mark.parametrize(
    ("ctx", "key"),
    [
        (context(), "options.instance"),
        (context(instance="mastodon.social"), "options.instance"),
        (context(instance="http://mastodon.social"), "options.instance"),
        (context(instance="https://mastodon.social", api_base="ftp://x"), "options.api_base"),
        (context(secrets={}, instance="https://mastodon.social"), "credentials.access_token"),
        (context(SourceKind.OWN, instance="https://mastodon.social"), "options.account_id"),
        (
            context(SourceKind.OWN, instance="https://mastodon.social", account_id="@school"),
            "options.account_id",
        ),
        (context(instance="https://mastodon.social", page_size=80), "options.page_size"),
        (context(instance="https://mastodon.social", hashtags="school"), "options.hashtags"),
        (
            context(instance="https://mastodon.social", hashtags=[], search=False),
            "options.hashtags",
        ),
        (context(instance="https://mastodon.social", search="yes"), "options.search"),
        (
            context(instance="https://mastodon.social", report_category="abuse"),
            "options.report_category",
        ),
        (
            context(instance="https://mastodon.social", report_category="violation"),
            "options.report_rule_ids",
        ),
        (context(instance="https://mastodon.social", watch_threads=51), "options.watch_threads"),
    ],
)
def test_from_context_names_the_bad_key(ctx: SourceContext, key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        MastodonConnector.from_context(ctx)


def test_loopback_http_is_allowed_for_the_fake_server() -> None:
    ctx = context(instance="https://mastodon.social", api_base="http://127.0.0.1:8080")
    MastodonConnector.from_context(ctx)


def test_default_hashtags_drop_spaces_and_punctuation() -> None:
    ctx = context(instance="https://mastodon.social", search=False)
    ctx = SourceContext(
        **{**ctx.__dict__, "search_terms": ("St. Mary's C of E", "#Example Academy")}
    )
    connector = MastodonConnector.from_context(ctx)
    assert [s.key for s in connector._s.streams] == ["tag:StMarysCofE", "tag:ExampleAcademy"]


# -- mapping -----------------------------------------------------------------------------


def test_html_is_reduced_to_text_and_entities_decoded_once() -> None:
    markup = (
        "<p>a &amp;lt;b&amp;gt; &lt;script&gt;x</p><script>alert(1)</script>"
        "<p>two<br>lines &#39;q&#x27;</p>"
    )
    assert html_to_text(markup) == "a &lt;b&gt; <script>x\n\ntwo\nlines 'q'"


def test_boosts_map_to_the_boosted_status_and_edits_set_updated_at() -> None:
    original = load("tag_timeline.json")[0] | {
        "edited_at": "2026-10-05T16:50:00.000Z",
        "spoiler_text": "cw",
    }
    boost = original | {"id": "999", "content": "", "reblog": original}
    post = status_to_post(boost, SourceKind.MENTION)
    assert post.external_id == "113275000000000001" and post.text.startswith("cw\n\nProud")
    assert post.updated_at == datetime(2026, 10, 5, 16, 50, tzinfo=UTC) and post.raw["id"] == "999"
