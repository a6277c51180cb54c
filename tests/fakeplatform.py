"""A fake Facebook Graph API on loopback, with state, for end-to-end tests.

It serves the documented shapes (``tests/fixtures/facebook``): a Page's feed, each post's
comments (``filter=stream`` shape: every comment with its ``parent``), hide/unhide via
``POST /{comment-id}`` and ``DELETE /{comment-id}``. Tests add, edit and remove comments
between polls and read back which moderation calls arrived.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

OAUTH_ERROR = {
    "error": {
        "message": "Error validating access token: Session has expired.",
        "type": "OAuthException",
        "code": 190,
        "error_subcode": 463,
        "fbtrace_id": "AbCdEfGhIjK",
    }
}


def graph_time(when: datetime) -> str:
    """Graph API time format: 2026-10-05T14:03:11+0000."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


@dataclass
class FakeGraph:
    """State and routes of the fake Graph API."""

    page_id: str = "104857600000001"
    page_name: str = "Oakfield Primary School"
    token: str = "page-token"
    version: str = "v25.0"
    posts: dict[str, dict[str, Any]] = field(default_factory=dict)
    comments: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    base_url: str = ""

    # -- state the tests drive --------------------------------------------------------

    def add_post(self, post_id: str, message: str, when: datetime) -> None:
        full = f"{self.page_id}_{post_id}"
        self.posts[full] = {
            "id": full,
            "message": message,
            "created_time": graph_time(when),
            "permalink_url": f"https://www.facebook.com/{self.page_id}/posts/{post_id}",
            "from": {"name": self.page_name, "id": self.page_id},
        }

    def add_comment(
        self,
        post_id: str,
        comment_id: str,
        message: str,
        author: str,
        when: datetime,
        parent: str | None = None,
    ) -> str:
        post = f"{self.page_id}_{post_id}"
        full = f"{post_id}_{comment_id}"
        comment: dict[str, Any] = {
            "id": full,
            "message": message,
            "created_time": graph_time(when),
            "from": {"name": author, "id": str(abs(hash(author)) % 10**16)},
            "is_hidden": False,
            "can_hide": True,
            "can_remove": True,
            "permalink_url": f"https://www.facebook.com/{self.page_id}/posts/{post_id}?comment_id={comment_id}",
            "_post": post,
        }
        if parent:
            comment["parent"] = {
                "id": parent,
                "message": self.comments[parent]["message"],
                "created_time": self.comments[parent]["created_time"],
            }
        self.comments[full] = comment
        return full

    def edit(self, comment_id: str, message: str) -> None:
        self.comments[comment_id]["message"] = message

    def remove(self, comment_id: str) -> None:
        del self.comments[comment_id]

    replies: list[tuple[str, str]] = field(default_factory=list)  # (object replied to, message)

    def moderation(self) -> list[tuple[str, str, dict[str, str]]]:
        """The hide/unhide/delete calls received."""
        return [c for c in self.calls if c[0] in ("POST", "DELETE")]

    # -- server --------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{version}/{object_id}", self._object)
        app.router.add_get("/{version}/{object_id}/{edge}", self._edge)
        app.router.add_post("/{version}/{object_id}/comments", self._reply)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        site = web.SockSite(self._runner, sock)
        await site.start()
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _params(self, request: web.Request) -> dict[str, str]:
        params = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            params.update({k: str(v) for k, v in (await request.post()).items()})
        return params

    def _authorised(self, request: web.Request, params: dict[str, str]) -> bool:
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return self.token in (params.get("access_token"), bearer)

    async def _object(self, request: web.Request) -> web.Response:
        params = await self._params(request)
        object_id = request.match_info["object_id"]
        self.calls.append(
            (request.method, object_id, {k: v for k, v in params.items() if k != "access_token"})
        )
        if not self._authorised(request, params):
            return web.json_response(OAUTH_ERROR, status=400)
        if request.method == "GET":
            if object_id in (self.page_id, "me"):
                return web.json_response({"id": self.page_id, "name": self.page_name})
            found = self.posts.get(object_id) or self.comments.get(object_id)
            return web.json_response(
                _public(found) if found else _missing(object_id), status=200 if found else 400
            )
        if object_id not in self.comments:
            return web.json_response(_missing(object_id), status=400)
        if request.method == "DELETE":
            del self.comments[object_id]
        else:
            hidden = params.get("is_hidden", "").lower() == "true"
            self.comments[object_id]["is_hidden"] = hidden
        return web.json_response({"success": True})

    async def _reply(self, request: web.Request) -> web.Response:
        params = await self._params(request)
        object_id = request.match_info["object_id"]
        self.calls.append(
            ("REPLY", object_id, {k: v for k, v in params.items() if k != "access_token"})
        )
        if not self._authorised(request, params):
            return web.json_response(OAUTH_ERROR, status=400)
        self.replies.append((object_id, params.get("message", "")))
        return web.json_response({"id": f"{object_id}_reply{len(self.replies)}"})

    async def _edge(self, request: web.Request) -> web.Response:
        params = await self._params(request)
        object_id, edge = request.match_info["object_id"], request.match_info["edge"]
        self.calls.append(
            ("GET", f"{object_id}/{edge}", {k: v for k, v in params.items() if k != "access_token"})
        )
        if not self._authorised(request, params):
            return web.json_response(OAUTH_ERROR, status=400)
        if edge == "feed" and object_id == self.page_id:
            data = sorted(self.posts.values(), key=lambda p: p["created_time"], reverse=True)
        elif edge == "comments":
            data = [_public(c) for c in self.comments.values() if c["_post"] == object_id]
            data.sort(key=lambda c: c["created_time"])
        else:
            data = []
        return web.json_response(
            {"data": data, "paging": {"cursors": {"before": "b", "after": "a"}}}
        )


def _public(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if not k.startswith("_")}


def _missing(object_id: str) -> dict[str, Any]:
    return {
        "error": {
            "message": f"Unsupported get request. Object with ID '{object_id}' does not exist",
            "type": "GraphMethodException",
            "code": 100,
            "error_subcode": 33,
        }
    }
