"""The shared HTTP layer: transient retries, status mapping, Retry-After, no tokens in errors."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from connectors.base import (
    AuthFailed,
    ConnectorError,
    ConnectorUnavailable,
    Cursor,
    PayloadInvalid,
    RateLimited,
)
from connectors.http import HttpClient, HttpOptions, Response, retry_after_seconds, retry_transient
from connectors.state import prune_threads, read_state, track_thread, write_state


def client(handler, **kwargs) -> tuple[HttpClient, list[float]]:  # type: ignore[no-untyped-def]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    http = HttpClient(
        HttpOptions(base_url="https://api.test", retries=2),
        transport=httpx.MockTransport(handler),
        sleep=sleep,
        **kwargs,
    )
    return http, waits


async def test_transient_failures_are_retried_with_growing_waits() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectTimeout("slow", request=request)
        if len(calls) == 2:
            return httpx.Response(503)
        return httpx.Response(200, json={"ok": True})

    http, waits = client(handler)
    response = await http.get("/thing", params={"access_token": "SECRET"})
    assert response.body == {"ok": True} and len(calls) == 3
    assert len(waits) == 2 and waits[1] > waits[0] * 1.2


async def test_retries_run_out_into_connector_unavailable_without_the_query() -> None:
    http, waits = client(lambda request: httpx.Response(502))
    with pytest.raises(ConnectorUnavailable) as info:
        await http.get("/v25.0/123/feed", params={"access_token": "SECRET"})
    assert "SECRET" not in str(info.value) and "/v25.0/123/feed" in str(info.value)
    assert len(waits) == 2


@pytest.mark.parametrize(
    "status, headers, error, wait",
    [
        (401, {}, AuthFailed, None),
        (429, {"Retry-After": "120"}, RateLimited, 120.0),
        (429, {}, RateLimited, 60.0),
        (404, {}, ConnectorUnavailable, None),
    ],
)
async def test_statuses_map_to_our_errors(
    status: int, headers: dict[str, str], error: type[ConnectorError], wait: float | None
) -> None:
    http, waits = client(lambda request: httpx.Response(status, headers=headers, json={}))
    with pytest.raises(error) as info:
        await http.get("/x")
    assert waits == []  # never retried: these are not transient
    if wait is not None:
        assert isinstance(info.value, RateLimited) and info.value.retry_after == wait


async def test_a_platform_mapper_sees_successful_responses_too() -> None:
    def mapper(response: Response) -> ConnectorError | None:
        usage = int(response.headers.get("x-usage", "0"))
        return RateLimited(300, "usage at 97%") if usage >= 95 else None

    http, _ = client(
        lambda request: httpx.Response(200, headers={"x-usage": "97"}, json={}), error_mapper=mapper
    )
    with pytest.raises(RateLimited):
        await http.get("/x")


async def test_a_body_that_is_not_json_is_kept_for_quarantine() -> None:
    http, _ = client(lambda request: httpx.Response(200, text="<html>oops</html>"))
    with pytest.raises(PayloadInvalid) as info:
        await http.get("/x")
    assert info.value.payload == "<html>oops</html>"


async def test_bytes_can_be_fetched_without_parsing() -> None:
    http, _ = client(lambda request: httpx.Response(200, text="<rss/>"))
    response = await http.request("GET", "/feed", parse_json=False)
    assert response.body is None and response.text == "<rss/>"


def test_retry_after_takes_seconds_or_an_http_date() -> None:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("30") == 30.0
    assert retry_after_seconds("Sat, 21 Nov 2026 12:02:00 GMT", now=now) == 120.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_cursor_state_round_trips_and_survives_garbage() -> None:
    assert read_state(write_state({"since": "1", "watch": {}})) == {"since": "1", "watch": {}}
    assert read_state(Cursor(value="not json")) == {} and read_state(Cursor()) == {}


def test_threads_report_what_vanished() -> None:
    watched: dict[str, list[str]] = {}
    assert track_thread(watched, "p1", ["a", "b", "c"]) == []
    assert track_thread(watched, "p1", ["a", "c", "d"]) == ["b"]
    assert prune_threads({"p1": ["a"], "p2": ["b"]}, ["p2"]) == {"p2": ["b"]}


async def test_retry_transient_retries_only_what_it_is_told_is_transient() -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError
        return "ok"

    options = HttpOptions(base_url="https://x.test", retries=3)
    transient = lambda err: isinstance(err, TimeoutError)  # noqa: E731
    assert (
        await retry_transient(flaky, is_transient=transient, options=options, sleep=sleep) == "ok"
    )
    assert len(waits) == 2

    async def refused() -> str:
        raise ValueError("not transient")

    with pytest.raises(ValueError):
        await retry_transient(refused, is_transient=transient, options=options, sleep=sleep)
    assert len(waits) == 2
