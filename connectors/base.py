"""Normalised posts and the connector protocol.

Exception tree::

    ConnectorError                 base; never raised itself
    ├── ConnectorUnavailable       transient: timeout, 5xx, connection reset (retry later)
    ├── AuthFailed                 token expired or revoked: pause the source, tell a human
    ├── RateLimited                the platform asked us to wait ``retry_after`` seconds
    ├── NotSupported               this platform cannot make that moderation call
    └── PayloadInvalid             a payload we could not parse: quarantine it, never drop it

This module imports nothing of ours (see DESIGN.md, "Packages").
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Protocol, runtime_checkable

__all__ = [
    "AuthFailed",
    "Batch",
    "Capability",
    "Connector",
    "ConnectorError",
    "ConnectorUnavailable",
    "Cursor",
    "Media",
    "ModerationResult",
    "ModerationTarget",
    "NotSupported",
    "PayloadInvalid",
    "Post",
    "RateLimited",
    "Reject",
    "SourceContext",
    "SourceKind",
    "require_utc",
]


class SourceKind(StrEnum):
    """Whether a post was read from the school's own account or found as a public mention."""

    OWN = "own"
    MENTION = "mention"


class Capability(StrEnum):
    """Moderation calls a connector can make on a platform."""

    HIDE = "hide"
    UNHIDE = "unhide"
    DELETE = "delete"
    REPORT = "report"
    REPLY = "reply"  # post a public reply (e.g. explaining a removal) under the same thread


def require_utc(value: datetime, what: str = "datetime") -> datetime:
    """Return ``value`` in UTC; reject naive datetimes rather than guess their zone."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


@dataclass(frozen=True, kw_only=True)
class Media:
    """A media attachment, by reference only: connectors never download media."""

    url: str
    type: str  # "image", "video", "link", ...


@dataclass(frozen=True, kw_only=True)
class Post:
    """One post, comment or reply, normalised across platforms."""

    platform: str
    external_id: str
    text: str
    created_at: datetime
    source_kind: SourceKind
    parent_id: str | None = None
    thread_id: str | None = None
    author_id: str | None = None
    author_handle: str | None = None
    author_name: str | None = None
    media: tuple[Media, ...] = ()
    permalink: str | None = None
    updated_at: datetime | None = None
    account: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.platform or not self.external_id:
            raise ValueError("a post needs a platform and an external id")
        object.__setattr__(self, "created_at", require_utc(self.created_at, "created_at"))
        if self.updated_at is not None:
            object.__setattr__(self, "updated_at", require_utc(self.updated_at, "updated_at"))

    def raw_json(self) -> str:
        """The raw platform payload as canonical JSON (sorted keys), for storage and hashing."""
        return json.dumps(self.raw, sort_keys=True, ensure_ascii=False, default=str)


@dataclass(frozen=True, kw_only=True)
class Cursor:
    """Opaque position in a source's stream; ``value`` is whatever the connector needs."""

    value: str | None = None


@dataclass(frozen=True, kw_only=True)
class Reject:
    """One payload in a page that could not be parsed: quarantined, never silently dropped."""

    error: str
    payload: str


@dataclass(frozen=True, kw_only=True)
class Batch:
    """One page from ``fetch``: posts, ids seen to be gone, rejects, and the cursor to save."""

    posts: tuple[Post, ...]
    cursor: Cursor
    gone: tuple[str, ...] = ()  # external ids on this platform that have disappeared
    rejects: tuple[Reject, ...] = ()
    exhausted: bool = True  # False when there is more to fetch after this page


@dataclass(frozen=True, kw_only=True)
class ModerationResult:
    """Outcome of a moderation call; ``supported=False`` means "not possible here"."""

    supported: bool
    done: bool
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class ModerationTarget:
    """The post a moderation call acts on."""

    platform: str
    external_id: str
    parent_id: str | None = None
    thread_id: str | None = None
    account: str | None = None
    text: str | None = None  # the message, for REPLY


class ConnectorError(Exception):
    """A connector failed."""


class ConnectorUnavailable(ConnectorError):
    """The platform could not be reached or answered with a transient error."""


class AuthFailed(ConnectorError):
    """The platform rejected our credentials (expired or revoked token)."""


class RateLimited(ConnectorError):
    """The platform asked us to slow down."""

    def __init__(self, retry_after: float, message: str = "") -> None:
        super().__init__(message or f"rate limited; retry after {retry_after:.0f}s")
        self.retry_after = retry_after


class PayloadInvalid(ConnectorError):
    """A platform payload could not be parsed."""

    def __init__(self, message: str, payload: str) -> None:
        super().__init__(message)
        self.payload = payload


@dataclass(frozen=True, kw_only=True)
class SourceContext:
    """Everything a connector is built from: one configured source, with its secrets revealed."""

    source_name: str
    kind: SourceKind
    account: str = ""
    search_terms: tuple[str, ...] = ()
    max_items_per_poll: int = 500
    options: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # For tests and the fake platform server: an httpx transport (or, for X, an aiohttp
    # session) to use instead of the network, and a sleep that does not wait.
    transport: Any = None
    sleep: Callable[[float], Awaitable[None]] | None = None

    def __repr__(self) -> str:  # never show secrets
        return f"SourceContext(source_name={self.source_name!r}, kind={self.kind.value!r})"


class NotSupported(ConnectorError):
    """This platform (or this connector) cannot make that moderation call."""


@runtime_checkable
class Connector(Protocol):
    """A platform source: fetch what is new since ``cursor``; declare what moderation it can do."""

    name: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]]

    @classmethod
    def from_context(cls, context: SourceContext) -> Connector:
        """Build the connector for one source; raise ValueError naming a bad option."""
        ...

    async def fetch(self, cursor: Cursor) -> Batch:
        """Return posts newer than ``cursor`` and the cursor to resume from."""
        ...

    async def moderate(self, capability: Capability, post: ModerationTarget) -> ModerationResult:
        """Hide, unhide, delete or report one post; unsupported calls return supported=False."""
        ...

    async def check(self) -> None:
        """Make one cheap authenticated call; raise a ConnectorError if it fails."""
        ...

    async def aclose(self) -> None:
        """Release network resources."""
        ...
