"""A canned Graph API for the Facebook and Instagram connector tests (httpx.MockTransport),
and the paging helpers both use."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from connectors.base import Batch, Cursor


class Fetches(Protocol):
    async def fetch(self, cursor: Cursor) -> Batch: ...


@dataclass
class FakeGraph:
    """Serves canned Graph responses by "METHOD path[?after=cursor]"; records each request."""

    routes: dict[str, list[tuple[int, Any, dict[str, str]]]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def add(
        self,
        key: str,
        body: Any,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Queue a reply; the last one queued for a key repeats."""
        self.routes.setdefault(key, []).append((status, body, dict(headers or {})))

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/v25.0/")
        after = request.url.params.get("after")
        key = f"{request.method} {path}" + (f"?after={after}" if after else "")
        replies = self.routes.get(key)
        if not replies:
            return httpx.Response(404, json={"error": {"message": key, "code": 803}})
        status, body, headers = replies.pop(0) if len(replies) > 1 else replies[0]
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.path.removeprefix('/v25.0/')}" for r in self.requests]


async def poll(conn: Fetches, cursor: Cursor) -> tuple[list[Batch], Cursor]:
    """Page like monitor.poller does: until exhausted or an empty page."""
    batches: list[Batch] = []
    while True:
        batch = await conn.fetch(cursor)
        batches.append(batch)
        cursor = batch.cursor
        if batch.exhausted or not (batch.posts or batch.rejects or batch.gone):
            return batches, cursor


def posts(batches: list[Batch]) -> dict[str, Any]:
    return {p.external_id: p for b in batches for p in b.posts}


def gone(batches: list[Batch]) -> list[str]:
    return [g for b in batches for g in b.gone]
