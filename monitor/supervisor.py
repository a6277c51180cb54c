"""Supervision of the daemon's named long-lived asyncio tasks (STYLE rule 7).

Each registered coroutine factory runs as an asyncio task with its name. If it raises, the
supervisor logs ``task_crashed`` with the name and traceback and starts it again after the
`RetryPolicy` delay; a task that returns while ``stop`` is not set is restarted the same way
(``task_exited``). Backoff waits end as soon as ``stop`` is set. Tasks see ``stop`` through
their own closure and are expected to return promptly once it is set; `Supervisor.shutdown`
cancels whatever is still running after the grace period.

If the policy gives up on a task (``task_gave_up``), the supervisor sets ``stop``: a daemon
missing one of its workers cannot do its job, so it drains and exits non-zero, and systemd
restarts it. `Supervisor.gave_up` tells the daemon which tasks did that.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

import structlog

from monitor.logging import get_logger
from monitor.retry import RetryPolicy

__all__ = [
    "TASK_CANCELLED",
    "TASK_CRASHED",
    "TASK_EXITED",
    "TASK_GAVE_UP",
    "TASK_RESTARTING",
    "Supervisor",
    "TaskExited",
    "wait_for_stop",
]

log = get_logger(__name__)

TASK_CRASHED: Final = "task_crashed"
TASK_EXITED: Final = "task_exited"
TASK_RESTARTING: Final = "task_restarting"
TASK_GAVE_UP: Final = "task_gave_up"
TASK_CANCELLED: Final = "task_cancelled"
TASK_UNRESPONSIVE: Final = "task_unresponsive"

# How long a cancelled task may take to unwind before shutdown stops waiting for it.
_CANCEL_TIMEOUT: Final = 5.0

TaskFactory = Callable[[], Awaitable[None]]


class TaskExited(Exception):
    """A supervised task returned although stop was not set."""


async def wait_for_stop(stop: asyncio.Event, timeout: float) -> bool:
    """Wait up to *timeout* seconds for *stop*; True if it was set. For "work, tick, or stop"."""
    if stop.is_set():
        return True
    try:
        async with asyncio.timeout(max(timeout, 0.0)):
            await stop.wait()
    except TimeoutError:
        return stop.is_set()
    return True


async def _first_of(*awaitables: Awaitable[object]) -> None:
    """Wait until one of *awaitables* finishes, then cancel the others."""
    futures = [asyncio.ensure_future(item) for item in awaitables]
    try:
        done, _ = await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in futures:
            future.cancel()
        await asyncio.gather(*futures, return_exceptions=True)
    for future in done:
        future.result()  # a failing injected sleep is a bug: let it surface


class Supervisor:
    """Runs named coroutine factories as tasks and restarts them with backoff until stop.

    *sleep* waits between restarts (tests inject a fake); *clock* and *healthy_after* reset
    the attempt count when a task ran for at least *healthy_after* seconds before it failed,
    so a crash once a week never adds up to the policy's ``max_attempts``.
    """

    def __init__(
        self,
        *,
        stop: asyncio.Event,
        policy: RetryPolicy,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        clock: Callable[[], float] | None = None,
        healthy_after: float = 600.0,
    ) -> None:
        self._stop = stop
        self._policy = policy
        self._sleep = asyncio.sleep if sleep is None else sleep
        self._clock = time.monotonic if clock is None else clock
        self._healthy_after = healthy_after
        self._factories: dict[str, TaskFactory] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._gave_up: set[str] = set()

    @property
    def gave_up(self) -> frozenset[str]:
        """Names of tasks the retry policy gave up on; non-empty means exit non-zero."""
        return frozenset(self._gave_up)

    def add(self, name: str, factory: TaskFactory) -> None:
        """Register *factory*; `run` starts it as a task called *name*."""
        if self._tasks:
            raise RuntimeError("Supervisor.add() after run() started")
        if name in self._factories:
            raise ValueError(f"a task named {name!r} is already registered")
        self._factories[name] = factory

    async def run(self) -> None:
        """Run every task; return once stop is set and all of them have finished."""
        if self._tasks:
            raise RuntimeError("Supervisor.run() called twice")
        self._tasks = {
            name: asyncio.create_task(self._keep_alive(name, factory), name=name)
            for name, factory in self._factories.items()
        }
        if not self._tasks:
            await self._stop.wait()
            return
        try:
            await asyncio.wait(self._tasks.values())
        except asyncio.CancelledError:
            await self._cancel(self._pending())
            raise
        _raise_unexpected(self._tasks.values())

    async def shutdown(self, grace: float) -> None:
        """Set stop, give tasks *grace* seconds to finish, then cancel the rest."""
        self._stop.set()
        pending = self._pending()
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=max(grace, 0.0))
        for task in late:
            log.warning(TASK_CANCELLED, task=task.get_name(), grace=grace)
        await self._cancel(late)

    def _pending(self) -> set[asyncio.Task[None]]:
        return {task for task in self._tasks.values() if not task.done()}

    async def _cancel(self, tasks: Iterable[asyncio.Task[None]]) -> None:
        tasks = set(tasks)
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        _, stuck = await asyncio.wait(tasks, timeout=_CANCEL_TIMEOUT)
        for task in stuck:
            log.error(TASK_UNRESPONSIVE, task=task.get_name(), timeout=_CANCEL_TIMEOUT)

    async def _keep_alive(self, name: str, factory: TaskFactory) -> None:
        """One supervised task: run, and on crash or exit back off and run again."""
        structlog.contextvars.bind_contextvars(task=name)  # this task's context only
        attempts = 0
        while not self._stop.is_set():
            started = self._clock()
            error = await self._run_once(name, factory)
            if self._stop.is_set():
                return
            healthy = self._clock() - started >= self._healthy_after
            attempts = 1 if healthy else attempts + 1
            delay = self._policy.next_delay(attempts, error)
            if delay is None:
                self._give_up(name, attempts)
                return
            log.info(TASK_RESTARTING, task=name, attempts=attempts, delay=round(delay, 3))
            await _first_of(self._sleep(delay), self._stop.wait())

    async def _run_once(self, name: str, factory: TaskFactory) -> Exception:
        """Await one run of the task; return what ended it (TaskExited for a plain return)."""
        try:
            await factory()
        except Exception as err:
            log.error(TASK_CRASHED, task=name, exc_info=err)
            return err
        if not self._stop.is_set():
            log.warning(TASK_EXITED, task=name)
        return TaskExited(name)

    def _give_up(self, name: str, attempts: int) -> None:
        log.critical(TASK_GAVE_UP, task=name, attempts=attempts)
        self._gave_up.add(name)
        self._stop.set()


def _raise_unexpected(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Only BaseExceptions such as SystemExit get past _keep_alive: pass them on."""
    for task in tasks:
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error
