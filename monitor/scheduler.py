"""One APScheduler interval job per source: jitter, ``max_instances=1``, ``coalesce``.

Each job is the poller's uniform failure handler, wrapped in a per-source lock so that on
PostgreSQL only one process polls a source at a time. After a poll, ``on_polled`` wakes the
pipeline worker so new items are classified at once rather than on the next tick.
``SchedulerProbe`` tells the web app's ``/readyz`` whether this process's scheduler runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import STATE_RUNNING
from apscheduler.triggers.interval import IntervalTrigger

from monitor.config import SourceSettings
from monitor.logging import get_logger
from monitor.metrics import LOCKED, Metrics
from monitor.poller import Poller
from monitor.store import Store

__all__ = ["SchedulerProbe", "build_scheduler"]

log = get_logger(__name__)


def build_scheduler(
    store: Store,
    jobs: Mapping[str, tuple[SourceSettings, Poller]],
    *,
    on_polled: Callable[[], None],
    now: datetime,
    inflight: set[asyncio.Task[object]] | None = None,
    metrics: Metrics | None = None,
) -> AsyncIOScheduler:
    """A scheduler with one job per source, the first run of each due at ``now``."""
    scheduler = AsyncIOScheduler(timezone="UTC")
    for name, (source, poller) in jobs.items():
        scheduler.add_job(
            _job(
                store,
                poller,
                on_polled,
                inflight if inflight is not None else set(),
                _count_locked(metrics, name),
            ),
            trigger=IntervalTrigger(seconds=source.interval, jitter=source.jitter, timezone="UTC"),
            id=f"poll:{name}",
            name=f"poll:{name}",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=int(source.interval),
            next_run_time=now,
        )
    return scheduler


def _count_locked(metrics: Metrics | None, name: str) -> Callable[[], None]:
    def count() -> None:
        if metrics is not None:
            metrics.polled(name, LOCKED)

    return count


def _job(
    store: Store,
    poller: Poller,
    on_polled: Callable[[], None],
    inflight: set[asyncio.Task[object]],
    on_locked: Callable[[], None],
) -> Callable[[], object]:
    async def poll_source() -> None:
        task = asyncio.current_task()
        if task is not None:  # the daemon waits for these at shutdown, within its grace period
            inflight.add(task)
        try:
            async with store.source_lock(poller.source_id) as held:
                if not held:
                    log.debug("poll_skipped_locked", source_id=poller.source_id)
                    on_locked()
                    return
                await poller.poll()
            on_polled()
        finally:
            if task is not None:
                inflight.discard(task)

    return poll_source


@dataclass(kw_only=True)
class SchedulerProbe:
    """Whether this process's scheduler is running, for ``/readyz`` inside ``vigil run``."""

    scheduler: AsyncIOScheduler
    stop: asyncio.Event
    started_at: datetime

    def running_since(self) -> datetime | None:
        """When the scheduler started, or None once it is stopping or stopped (or not started)."""
        if self.stop.is_set() or self.scheduler.state != STATE_RUNNING:
            return None
        return self.started_at
