"""The shared HTTP layer for connectors: one httpx.AsyncClient per connector with explicit
timeouts, transient retries with backoff, and HTTP failures mapped to our connector errors.

Platform modules call ``HttpClient.request`` and never loop, sleep or log failures themselves
(STYLE rule 1). A platform passes an ``ErrorMapper`` for its own error shapes (Graph API codes
in a 400 body, YouTube's quota 403); it sees every response, so it can also raise on a 200
whose usage headers say "slow down". URLs in error messages never carry the query string,
where some platforms put access tokens.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from connectors.base import (
    AuthFailed,
    ConnectorError,
    ConnectorUnavailable,
    PayloadInvalid,
    RateLimited,
)

__all__ = [
    "ErrorMapper",
    "HttpClient",
    "HttpOptions",
    "Response",
    "backoff_delay",
    "retry_after_seconds",
    "retry_transient",
]

T = TypeVar("T")
ErrorMapper = Callable[["Response"], ConnectorError | None]
Sleep = Callable[[float], Awaitable[None]]
DEFAULT_RATE_LIMIT_WAIT = 60.0
MAX_PAYLOAD_KEPT = 200_000  # characters of an unparseable body kept for quarantine


@dataclass(frozen=True, kw_only=True)
class HttpOptions:
    """How a connector talks HTTP; every wait has a limit."""

    base_url: str
    timeout: float = 30.0
    retries: int = 3  # transient failures (timeouts, resets, 5xx) retried within one call
    backoff_base: float = 0.5
    backoff_cap: float = 8.0
    user_agent: str = "Vigil/0.1 (school safeguarding monitor)"


@dataclass(frozen=True, kw_only=True)
class Response:
    """A finished response: status, headers, the parsed JSON (or None) and the raw text."""

    status: int
    headers: httpx.Headers
    body: Any
    text: str
    path: str

    @property
    def ok(self) -> bool:
        """A 2xx or 304."""
        return 200 <= self.status < 300 or self.status == 304


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Parse a Retry-After value: delta seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


class HttpClient:
    """A connector's HTTP client (pass ``transport`` in tests: ``httpx.MockTransport``)."""

    def __init__(
        self,
        options: HttpOptions,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        error_mapper: ErrorMapper | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        self.options = options
        self._mapper = error_mapper
        self._sleep = sleep or asyncio.sleep
        self._client = httpx.AsyncClient(
            base_url=options.base_url,
            timeout=httpx.Timeout(options.timeout),
            headers={"User-Agent": options.user_agent, **(headers or {})},
            transport=transport,
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def get(self, url: str, **kwargs: Any) -> Response:
        """GET ``url`` (relative to the base URL) and parse JSON."""
        return await self.request("GET", url, **kwargs)

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        parse_json: bool = True,
    ) -> Response:
        """One call with transient retries; raises AuthFailed, RateLimited, ConnectorUnavailable
        or PayloadInvalid, or whatever the platform's error mapper says."""
        attempt = 0
        while True:
            try:
                raw = await self._client.request(
                    method, url, params=params, json=json_body, data=data, headers=headers
                )
            except (httpx.TimeoutException, httpx.TransportError) as err:
                failure: ConnectorError = ConnectorUnavailable(
                    f"{method} {_path(url)}: {type(err).__name__}"
                )
            else:
                response = _response(raw, parse_json)
                if response.status < 500:
                    return self._checked(response, method)
                failure = ConnectorUnavailable(f"{method} {response.path}: HTTP {response.status}")
            attempt += 1
            if attempt > self.options.retries:
                raise failure
            await self._sleep(self._backoff(attempt))

    def _backoff(self, attempt: int) -> float:
        return backoff_delay(attempt, self.options.backoff_base, self.options.backoff_cap)

    def _checked(self, response: Response, method: str) -> Response:
        if self._mapper is not None:
            mapped = self._mapper(response)
            if mapped is not None:
                raise mapped
        if response.ok:
            if isinstance(response.body, _Unparsed):
                raise PayloadInvalid(
                    f"{method} {response.path}: not JSON ({response.body.error})",
                    response.text[:MAX_PAYLOAD_KEPT],
                )
            return response
        raise default_error(response, method)


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with ±20 % jitter for the ``attempt``-th retry (1, 2, ...)."""
    return min(base * 2.0 ** (attempt - 1), cap) * random.uniform(0.8, 1.2)


async def retry_transient(
    call: Callable[[], Awaitable[T]],
    *,
    is_transient: Callable[[BaseException], bool],
    options: HttpOptions,
    sleep: Sleep | None = None,
) -> T:
    """Run ``call``, retrying what ``is_transient`` says is transient, as ``HttpClient`` does.

    For clients that are not ours (tweepy's aiohttp client); everything else is raised at once.
    """
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as err:
            if not is_transient(err) or attempt >= options.retries:
                raise
            attempt += 1
            await (sleep or asyncio.sleep)(
                backoff_delay(attempt, options.backoff_base, options.backoff_cap)
            )


def default_error(response: Response, method: str = "GET") -> ConnectorError:
    """The usual meaning of an HTTP failure status."""
    where = f"{method} {response.path}: HTTP {response.status}"
    if response.status == 401:
        return AuthFailed(f"{where}: credentials rejected")
    if response.status == 429:
        wait = retry_after_seconds(response.headers.get("retry-after"))
        return RateLimited(wait if wait is not None else DEFAULT_RATE_LIMIT_WAIT, where)
    return ConnectorUnavailable(where)


@dataclass(frozen=True)
class _Unparsed:
    error: str


def _response(raw: httpx.Response, parse_json: bool) -> Response:
    text = raw.text
    body: Any = None
    if parse_json and text.strip():
        try:
            body = json.loads(text)
        except json.JSONDecodeError as err:
            body = _Unparsed(err.msg)
    return Response(
        status=raw.status_code, headers=raw.headers, body=body, text=text, path=raw.request.url.path
    )


def _path(url: str) -> str:
    return httpx.URL(url).path or url.split("?", 1)[0]
