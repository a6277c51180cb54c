"""The daemon: opens the store, starts the scheduler and the supervised workers, drains on stop.

Shutdown is an Event (STYLE rule 7): SIGTERM/SIGINT only set ``stop``. In-flight polls and
the current pipeline batch get ``shutdown_grace`` seconds; anything cut off is still a row in
its durable state and is resumed on the next start. systemd is told READY, STATUS, WATCHDOG
and STOPPING when ``NOTIFY_SOCKET`` is set.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from datetime import datetime

from monitor.app import App, SchemaOutOfDate, build_app, purge_expired, utcnow
from monitor.config import Settings
from monitor.logging import get_logger
from monitor.metrics import Metrics
from monitor.retry import RetryPolicy
from monitor.scheduler import SchedulerProbe, build_scheduler
from monitor.sdnotify import Notifier
from monitor.store import UNREACHABLE
from monitor.supervisor import Supervisor, wait_for_stop

__all__ = ["Daemon", "DatabaseUnreachable", "SchemaOutOfDate"]

STARTUP_RETRY = RetryPolicy(base=1.0, factor=2.0, cap=15.0, max_attempts=6, retry_on=(Exception,))


class DatabaseUnreachable(Exception):
    """The database could not be reached at start-up, even after retrying."""


log = get_logger(__name__)


class Daemon:
    """Wires the app to the scheduler, the supervisor and systemd."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
        notifier: Notifier | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.notifier = notifier or Notifier()
        self.sleep = sleep
        self.stop = asyncio.Event()
        self.wake = asyncio.Event()
        self.metrics = Metrics()  # this process's counters, served on /metrics
        self.probe: SchedulerProbe | None = None  # set once the scheduler is built

    async def run(self, *, once: bool = False) -> int:
        """Run until stopped (or, with ``once``, poll every source once and drain); exit status."""
        app = await self._open()
        try:
            if app.store.sqlite:  # one process per SQLite file: a running action is an orphan
                await app.store.release_leases(self.clock())
            if once:
                results = await app.run_once()
                log.info("run_once_finished", sources=len(results))
                return 0
            return await self._serve(app)
        finally:
            await app.close()

    async def _open(self) -> App:
        """Build the app, waiting out a database that is briefly unreachable (a reboot, say).

        Raises DatabaseUnreachable once ``STARTUP_RETRY`` gives up; systemd restarts us.
        """
        attempts = 0
        while True:
            try:
                return await build_app(self.settings, clock=self.clock)
            except UNREACHABLE as err:
                attempts += 1
                delay = STARTUP_RETRY.next_delay(attempts, err)
                if delay is None:
                    raise DatabaseUnreachable(f"{type(err).__name__}: {err}") from err
                log.warning(
                    "database_unreachable",
                    attempts=attempts,
                    retry_in=round(delay, 1),
                    error=type(err).__name__,
                )
                await self.sleep(delay)

    def request_stop(self) -> None:
        """Ask the daemon to drain and exit (the signal handler calls only this)."""
        self.stop.set()

    async def _serve(self, app: App) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        inflight: set[asyncio.Task[object]] = set()
        scheduler = build_scheduler(
            app.store,
            {n: (app.settings.source(n), p) for n, p in app.pollers.items()},
            on_polled=self.wake.set,
            now=self.clock(),
            inflight=inflight,
            metrics=self.metrics,
        )
        self._count_into(app)
        self.probe = SchedulerProbe(scheduler=scheduler, stop=self.stop, started_at=self.clock())
        supervisor = Supervisor(
            stop=self.stop, policy=RetryPolicy(base=1.0, cap=60.0, max_attempts=None)
        )
        supervisor.add("pipeline", lambda: self._pipeline_loop(app))
        supervisor.add("heartbeat", lambda: self._heartbeat(app))
        supervisor.add("retention", lambda: self._retention(app))
        supervisor.add("follow_up", lambda: self._follow_up(app))
        if self.settings.web.serve:
            supervisor.add("web", lambda: self._web(app))
        scheduler.start()
        self.notifier.ready()
        log.info("daemon_ready", sources=len(app.pollers))
        runner = asyncio.create_task(supervisor.run(), name="supervisor")
        await self.stop.wait()
        self.notifier.stopping()
        log.info("daemon_stopping", grace=self.settings.daemon.shutdown_grace)
        scheduler.pause()
        await _drain_polls(inflight, self.settings.daemon.shutdown_grace)
        scheduler.shutdown(wait=False)
        await supervisor.shutdown(self.settings.daemon.shutdown_grace)
        await runner
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        log.info("daemon_stopped")
        return 1 if supervisor.gave_up else 0

    def _count_into(self, app: App) -> None:
        """Hand this process's metrics to the pollers and the pipeline."""
        for poller in app.pollers.values():
            poller.metrics = self.metrics
        app.pipeline.metrics = self.metrics

    async def _pipeline_loop(self, app: App) -> None:
        """Work, or the next tick, or stop — whichever comes first."""
        while not self.stop.is_set():
            done = await app.pipeline.run_stages_once()
            if done:
                continue
            self.wake.clear()
            await wait_for_either(self.stop, self.wake, self.settings.daemon.tick)

    async def _web(self, app: App) -> None:
        """The review app on [web] host:port, on this loop and this store, until stopped."""
        from monitor.web.server import serve_until

        await serve_until(
            app.settings,
            app.store,
            self.clock,
            self.stop,
            metrics=self.metrics,
            scheduler=self.probe,
        )

    async def _follow_up(self, app: App) -> None:
        """Deputy re-sends and the daily digest, checked every minute."""
        while not self.stop.is_set():
            await app.follow_up()
            await wait_for_stop(self.stop, FOLLOW_UP_EVERY)

    async def _retention(self, app: App) -> None:
        """Purge what the retention settings say is no longer needed: at start, then daily."""
        while not self.stop.is_set():
            await purge_expired(app, self.clock())
            await wait_for_stop(self.stop, RETENTION_EVERY)

    async def _heartbeat(self, app: App) -> None:
        """systemd WATCHDOG pings and a STATUS line with the backlog."""
        interval = min(self.notifier.watchdog_interval() or 30.0, 30.0)
        while not self.stop.is_set():
            self.notifier.watchdog()
            counts = await app.store.pending_counts()
            self.notifier.status(
                f"classify={counts.get('classify', 0)} decide={counts.get('decide', 0)} "
                f"evidence={counts.get('evidence', 0)} held={counts.get('held', 0)} "
                f"actions_due={counts.get('actions_approved', 0)}"
            )
            await wait_for_stop(self.stop, interval)


RETENTION_EVERY = 24 * 3600.0
FOLLOW_UP_EVERY = 60.0


async def wait_for_either(first: asyncio.Event, second: asyncio.Event, timeout: float) -> None:
    """Return when either event is set or ``timeout`` passes."""
    waiters = {asyncio.ensure_future(first.wait()), asyncio.ensure_future(second.wait())}
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _drain_polls(inflight: set[asyncio.Task[object]], grace: float) -> None:
    pending = {t for t in inflight if not t.done()}
    if not pending:
        return
    _, late = await asyncio.wait(pending, timeout=grace)
    for task in late:
        log.warning("poll_cancelled_at_shutdown", task=task.get_name())
        task.cancel()
    if late:
        await asyncio.wait(late, timeout=5.0)
