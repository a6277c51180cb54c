"""Readiness and metrics: ``GET /readyz`` and ``GET /metrics``, for systemd, a load balancer
and Prometheus.

Neither needs a sign-in, and neither shows content: ``/readyz`` names its checks and the
configured sources, ``/metrics`` holds counts labelled with source names and fixed words.
Both should still be reachable only from the monitoring host (bind address or proxy rule;
see deploy/README.md).

``/readyz`` is 200 when all three checks pass, 503 otherwise:

- ``database``: the store answers within ``[web] health_timeout``;
- ``scheduler``: inside ``vigil run`` the daemon's ``SchedulerProbe`` says it is running
  (``"scheduler": "in_process"``); under ``vigil web`` alone no scheduler runs here, so it is
  judged from the database: some enabled source was polled within ``[web] ready_window``
  (``"scheduler": "database"``);
- ``sources``: no enabled source is stuck. A source is stuck when its last poll is older than
  max(3 × its interval, 10 min), counted from the scheduler's start if that is later, or when
  an expired token paused it (that needs a person). A source paused until a known time (a rate
  limit, a backoff) is reported as paused, not stuck; one never polled, with no scheduler start
  to count from, as waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from monitor.config import Settings, SourceSettings
from monitor.logging import get_logger
from monitor.metrics import Exporter, Metrics
from monitor.poller import AUTH_PAUSE
from monitor.store import SourceState
from monitor.store.gauges import GaugeCounts, gauge_counts

if TYPE_CHECKING:
    from monitor.web.app import WebContext

__all__ = [
    "Check",
    "CheckStatus",
    "Readiness",
    "SchedulerMode",
    "SchedulerView",
    "SourceStatus",
    "health_routes",
    "judge_source",
    "stuck_after",
]

log = get_logger(__name__)
MIN_STUCK = timedelta(minutes=10)
STUCK_INTERVALS = 3  # a source is stuck after missing this many polls (and at least MIN_STUCK)


class SchedulerView(Protocol):
    """What ``/readyz`` asks of an in-process scheduler (``monitor.scheduler.SchedulerProbe``)."""

    def running_since(self) -> datetime | None:
        """When it started, or None when it is not running."""
        ...


class Check(StrEnum):
    """The readiness checks, in the order they run."""

    DATABASE = "database"
    SCHEDULER = "scheduler"
    SOURCES = "sources"


class CheckStatus(StrEnum):
    """A check's result; ``unknown`` when the database did not answer, so it could not run."""

    OK = "ok"
    FAILING = "failing"
    UNKNOWN = "unknown"


class SchedulerMode(StrEnum):
    """How the scheduler check was judged."""

    IN_PROCESS = "in_process"
    DATABASE = "database"


class SourceStatus(StrEnum):
    """One enabled source, as ``/readyz`` sees it."""

    OK = "ok"
    PAUSED = "paused"
    STUCK = "stuck"
    WAITING = "waiting"


@dataclass(frozen=True, kw_only=True)
class Readiness:
    """The result of the three checks; ``error`` (a type name) is for the log, not the body."""

    checks: Mapping[Check, CheckStatus]
    scheduler: SchedulerMode
    sources: Mapping[str, SourceStatus] = field(default_factory=dict)
    error: str | None = None

    @property
    def ready(self) -> bool:
        """True when every check passed."""
        return all(status is CheckStatus.OK for status in self.checks.values())

    @property
    def failing(self) -> list[str]:
        """The checks that did not pass (failing or unknown)."""
        return [
            check.value for check, status in self.checks.items() if status is not CheckStatus.OK
        ]

    def body(self) -> dict[str, Any]:
        """The JSON body: check names and source names only."""
        named = {
            status.value: sorted(name for name, s in self.sources.items() if s is status)
            for status in (SourceStatus.STUCK, SourceStatus.PAUSED, SourceStatus.WAITING)
        }
        return {
            "status": "ready" if self.ready else "not_ready",
            "checks": {check.value: status.value for check, status in self.checks.items()},
            "failing": self.failing,
            "scheduler": self.scheduler.value,
            "sources": named,
        }


def stuck_after(interval: float) -> timedelta:
    """How long a source may go without a poll before it counts as stuck."""
    return max(timedelta(seconds=STUCK_INTERVALS * interval), MIN_STUCK)


def judge_source(
    state: SourceState | None, interval: float, now: datetime, since: datetime | None
) -> SourceStatus:
    """One source's status; ``since`` is when the in-process scheduler started, if known."""
    if state is not None and state.pause_reason == AUTH_PAUSE:
        return SourceStatus.STUCK  # new credentials are needed: only a person can fix it
    if state is not None and state.paused_until is not None and state.paused_until > now:
        return SourceStatus.PAUSED
    last = state.last_poll_at if state is not None else None
    reference = max((t for t in (last, since) if t is not None), default=None)
    if reference is None:
        return SourceStatus.WAITING
    return SourceStatus.STUCK if now - reference > stuck_after(interval) else SourceStatus.OK


def judge_sources(
    sources: Sequence[SourceSettings],
    states: Sequence[SourceState],
    now: datetime,
    since: datetime | None,
) -> dict[str, SourceStatus]:
    """Every enabled configured source's status, by name."""
    by_name = {state.name: state for state in states}
    return {s.name: judge_source(by_name.get(s.name), s.interval, now, since) for s in sources}


def scheduler_window(settings: Settings, sources: Sequence[SourceSettings]) -> timedelta:
    """How recent the newest poll must be for ``vigil web`` alone to believe a scheduler runs."""
    if settings.web.ready_window > 0:
        return timedelta(seconds=settings.web.ready_window)
    return stuck_after(min(s.interval for s in sources))


def scheduler_from_database(
    settings: Settings,
    sources: Sequence[SourceSettings],
    states: Sequence[SourceState],
    now: datetime,
) -> CheckStatus:
    """Some enabled source was polled recently (vacuously true with no enabled source)."""
    if not sources:
        return CheckStatus.OK
    names = {s.name for s in sources}
    polls = [s.last_poll_at for s in states if s.name in names and s.last_poll_at is not None]
    if polls and now - max(polls) <= scheduler_window(settings, sources):
        return CheckStatus.OK
    return CheckStatus.FAILING


def _status(ok: bool) -> CheckStatus:
    return CheckStatus.OK if ok else CheckStatus.FAILING


@dataclass(kw_only=True)
class Health:
    """The two views' shared state: the exporter and what was last logged."""

    exporter: Exporter
    scheduler: SchedulerView | None
    _last_ready: bool | None = None  # None: the first probe logs either way
    _last_database: bool = True  # only a scrape that cannot read the database is news

    async def readiness(self, context: WebContext) -> Readiness:
        """Run the three checks."""
        settings, now = context.settings, context.clock()
        probe = self.scheduler
        mode = SchedulerMode.DATABASE if probe is None else SchedulerMode.IN_PROCESS
        since = None if probe is None else probe.running_since()
        sources = [s for s in settings.sources if s.enabled]
        try:
            async with asyncio.timeout(settings.web.health_timeout):
                states = await _source_states(context)
        except Exception as err:  # whatever the database did, this process is not ready
            checks = {
                Check.DATABASE: CheckStatus.FAILING,
                Check.SCHEDULER: self._in_process(since),
                Check.SOURCES: CheckStatus.UNKNOWN,
            }
            return Readiness(checks=checks, scheduler=mode, error=type(err).__name__)
        judged = judge_sources(sources, states, now, since)
        checks = {
            Check.DATABASE: CheckStatus.OK,
            Check.SCHEDULER: scheduler_from_database(settings, sources, states, now)
            if probe is None
            else self._in_process(since),
            Check.SOURCES: _status(SourceStatus.STUCK not in judged.values()),
        }
        return Readiness(checks=checks, scheduler=mode, sources=judged)

    def _in_process(self, since: datetime | None) -> CheckStatus:
        """The in-process scheduler's check; unknown without one (it needs the database)."""
        return CheckStatus.UNKNOWN if self.scheduler is None else _status(since is not None)

    async def gauges(self, context: WebContext) -> GaugeCounts | None:
        """The store gauges, or None (logged once) when the database does not answer."""
        try:
            async with asyncio.timeout(context.settings.web.health_timeout):
                counts = await gauge_counts(context.require_store(), await context.school_id())
        except Exception as err:  # a scrape still answers, with vigil_database_up 0
            self._note_database(False, type(err).__name__)
            return None
        self._note_database(True, None)
        return counts

    def note_readiness(self, result: Readiness) -> None:
        """Log when readiness changes, not on every probe."""
        if result.ready == self._last_ready:
            return
        self._last_ready = result.ready
        (log.info if result.ready else log.warning)(
            "readiness_changed",
            ready=result.ready,
            failing=result.failing,
            error=result.error,
            scheduler=result.scheduler.value,
        )

    def _note_database(self, up: bool, error: str | None) -> None:
        if up == self._last_database:
            return
        self._last_database = up
        if up:
            log.info("metrics_database_up")
        else:
            log.warning("metrics_database_down", error=error)


async def _source_states(context: WebContext) -> list[SourceState]:
    store = context.require_store()
    return await store.list_sources(await context.school_id())


def health_routes(
    *, metrics: Metrics | None = None, scheduler: SchedulerView | None = None
) -> list[Route]:
    """``/readyz`` and ``/metrics``; ``metrics`` and ``scheduler`` are the daemon's, if any."""
    health = Health(exporter=Exporter(metrics), scheduler=scheduler)

    async def readyz(request: Request) -> Response:
        result = await health.readiness(request.app.state.vigil)
        health.note_readiness(result)
        return JSONResponse(result.body(), status_code=200 if result.ready else 503)

    async def metrics_view(request: Request) -> Response:
        counts = await health.gauges(request.app.state.vigil)
        return Response(health.exporter.render(counts), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_view, methods=["GET"]),
    ]
