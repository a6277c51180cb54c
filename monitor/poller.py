"""The ingest stage: poll one source, page until exhausted or out of budget, store each page.

Failure is handled the same way for every source (STYLE rule 2): log once when a source starts
failing and once when it recovers; ``RateLimited`` pauses it until the platform's time;
``AuthFailed`` pauses it until a human fixes the credentials (and alerts them once);
anything else backs off by ``RetryPolicy``. Nothing raised by a source ever escapes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from structlog.contextvars import bound_contextvars

from connectors.base import (
    AuthFailed,
    Connector,
    ConnectorError,
    Cursor,
    PayloadInvalid,
    RateLimited,
)
from monitor.logging import get_logger
from monitor.metrics import Metrics
from monitor.retry import RetryPolicy
from monitor.store import IngestCounts, SourceState, Store

__all__ = ["PollOutcome", "PollResult", "Poller"]

log = get_logger(__name__)
AUTH_PAUSE = "auth_failed"
RATE_PAUSE = "rate_limited"
BACKOFF_PAUSE = "backing_off"
MAX_PAGES_PER_POLL = 1000  # a bound even for a connector that never says it is exhausted
AlertFn = Callable[..., Awaitable[None]]


class PollOutcome(StrEnum):
    """How one poll ended."""

    OK = "ok"
    PAUSED = "paused"
    FAILED = "failed"


@dataclass(frozen=True, kw_only=True)
class PollResult:
    """Outcome of one poll, for logs and the demo summary."""

    outcome: PollOutcome
    pages: int = 0
    new: int = 0
    edited: int = 0
    gone: int = 0
    rejected: int = 0


def is_paused(state: SourceState, now: datetime) -> bool:
    """Paused by an auth failure (until resumed) or by a rate limit / backoff (until a time)."""
    if state.pause_reason == AUTH_PAUSE:
        return True
    return state.paused_until is not None and state.paused_until > now


@dataclass(kw_only=True)
class Poller:
    """Polls one configured source through its connector into the store."""

    store: Store
    connector: Connector
    source_id: int
    budget: int
    retry: RetryPolicy
    clock: Callable[[], datetime]
    alert_admin: AlertFn
    timeout: float = 300.0
    metrics: Metrics | None = None  # set by the daemon; counts polls, errors and pauses

    async def poll(self) -> PollResult:
        """One poll; never raises for anything the source does."""
        state = await self.store.source_state(self.source_id)
        with bound_contextvars(source=state.name):
            if is_paused(state, self.clock()):
                log.debug("poll_skipped_paused", reason=state.pause_reason)
                self._count(state, PollOutcome.PAUSED)
                return PollResult(outcome=PollOutcome.PAUSED)
            try:
                async with asyncio.timeout(self.timeout):
                    result = await self._pages(state)
            except Exception as err:  # uniform handler: no error from a source stops the daemon
                return await self._failed(state, err)
            if state.failing_since is not None:
                log.info("source_recovered", failing_since=state.failing_since.isoformat())
            log.info(
                "poll_finished",
                pages=result.pages,
                new=result.new,
                edited=result.edited,
                gone=result.gone,
                rejected=result.rejected,
            )
            self._count(state, PollOutcome.OK)
            return result

    def _count(self, state: SourceState, outcome: PollOutcome) -> None:
        if self.metrics is not None:
            self.metrics.polled(state.name, outcome.value)

    def _count_failure(self, state: SourceState, err: BaseException, reason: str | None) -> None:
        if self.metrics is None:
            return
        self.metrics.polled(state.name, PollOutcome.FAILED.value)
        self.metrics.poll_failed(state.name, err)
        if reason == RATE_PAUSE:
            self.metrics.rate_limit_paused(state.name)

    async def _pages(self, state: SourceState) -> PollResult:
        cursor, seen = Cursor(value=state.cursor), 0
        pages = new = edited = gone = rejected = 0
        while True:
            batch = await self.connector.fetch(cursor)
            for reject in batch.rejects:
                await self.store.quarantine(
                    self.source_id, reject.error, reject.payload, self.clock()
                )
            counts: IngestCounts = await self.store.record_batch(
                self.source_id,
                batch.posts,
                gone=batch.gone,
                cursor=batch.cursor.value,
                now=self.clock(),
            )
            stuck = batch.cursor == cursor and not (batch.posts or batch.rejects or batch.gone)
            pages, cursor = pages + 1, batch.cursor
            new, edited, gone = new + counts.new, edited + counts.edited, gone + counts.gone
            rejected += len(batch.rejects)
            seen += len(batch.posts) + len(batch.rejects) + len(batch.gone)
            # An empty page may still move the cursor on (an empty thread, say); a page that
            # neither brings anything nor moves the cursor would loop for ever, so it ends the poll.
            if batch.exhausted or seen >= self.budget or stuck or pages >= MAX_PAGES_PER_POLL:
                return PollResult(
                    outcome=PollOutcome.OK,
                    pages=pages,
                    new=new,
                    edited=edited,
                    gone=gone,
                    rejected=rejected,
                )

    async def _failed(self, state: SourceState, err: BaseException) -> PollResult:
        now = self.clock()
        reason, until = self._pause_for(state, err, now)
        self._count_failure(state, err, reason)
        if isinstance(err, PayloadInvalid):
            await self.store.quarantine(self.source_id, str(err), err.payload, now)
        await self.store.record_poll_failure(
            self.source_id, _describe(err), now=now, paused_until=until, pause_reason=reason
        )
        if state.failing_since is None or reason == AUTH_PAUSE:
            log.warning(
                "source_failing",
                error=type(err).__name__,
                pause=reason,
                until=until.isoformat() if until else None,
                exc_info=not isinstance(err, ConnectorError | TimeoutError | OSError),
            )
        if reason == AUTH_PAUSE and state.auth_alerted_at is None:
            await self._alert_auth(state, err)
        return PollResult(outcome=PollOutcome.FAILED)

    def _pause_for(
        self, state: SourceState, err: BaseException, now: datetime
    ) -> tuple[str | None, datetime | None]:
        if isinstance(err, AuthFailed):
            return AUTH_PAUSE, None
        if isinstance(err, RateLimited):
            return RATE_PAUSE, now + timedelta(seconds=max(err.retry_after, 1.0))
        delay = self.retry.next_delay(state.consecutive_failures + 1, err)
        if delay is None:  # out of quick retries: keep polling on the normal interval
            return None, None
        return BACKOFF_PAUSE, now + timedelta(seconds=delay)

    async def _alert_auth(self, state: SourceState, err: BaseException) -> None:
        await self.alert_admin(
            key=f"auth-{state.id}-{state.failing_since or self.clock():%Y%m%d%H%M}",
            subject=f"Source {state.name} needs new credentials",
            body=(
                f"The {state.platform} source '{state.name}' was refused by the platform "
                f"({_describe(err)}).\nIt is paused; other sources carry on.\n"
                "Renew the token, then run `vigil sources resume "
                f"{state.name}`.\n"
            ),
        )
        await self.store.mark_auth_alerted(self.source_id, self.clock())


def _describe(err: BaseException) -> str:
    """An error message safe to store and log: connectors never put secrets in messages."""
    return f"{type(err).__name__}: {err}"[:500]
