"""Supervisor: named tasks restarted with backoff, stop ends waits, grace then cancel.

No test waits in real time: backoff goes through an injected sleep, and grace expiry uses a
grace of zero.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from structlog.testing import capture_logs
from structlog.typing import EventDict

from monitor.retry import RetryPolicy
from monitor.supervisor import (
    TASK_CANCELLED,
    TASK_CRASHED,
    TASK_EXITED,
    TASK_GAVE_UP,
    TASK_RESTARTING,
    Supervisor,
    TaskExited,
    wait_for_stop,
)

POLICY = RetryPolicy(base=1.0, factor=2.0, cap=60.0, jitter=0.0, max_attempts=None)


class Boom(Exception):
    pass


class FakeSleep:
    """Records requested delays; returns at once, or blocks until stop if asked to."""

    def __init__(self, *, block: bool = False) -> None:
        self.delays: list[float] = []
        self.block = block
        self.started = asyncio.Event()

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self.started.set()
        if self.block:
            await asyncio.Event().wait()  # only stop can end this wait


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def events(logs: list[EventDict], name: str) -> list[EventDict]:
    return [entry for entry in logs if entry["event"] == name]


def crashing(times: int, stop: asyncio.Event) -> tuple[list[str], Callable[[], Awaitable[None]]]:
    """A task that raises *times* times, then sets stop and returns; records its task name."""
    seen: list[str] = []

    async def task() -> None:
        current = asyncio.current_task()
        assert current is not None
        seen.append(current.get_name())
        if len(seen) <= times:
            raise Boom(f"crash {len(seen)}")
        stop.set()

    return seen, task


async def test_crash_is_logged_with_name_and_restarted_with_backoff() -> None:
    stop = asyncio.Event()
    sleep = FakeSleep()
    supervisor = Supervisor(stop=stop, policy=POLICY, sleep=sleep)
    seen, task = crashing(3, stop)
    supervisor.add("classify_worker", task)
    with capture_logs() as logs:
        await supervisor.run()
    assert seen == ["classify_worker"] * 4
    assert sleep.delays == [1.0, 2.0, 4.0]
    crashed = events(logs, TASK_CRASHED)
    assert [entry["task"] for entry in crashed] == ["classify_worker"] * 3
    assert all(isinstance(entry["exc_info"], Boom) for entry in crashed)
    assert crashed[0]["log_level"] == "error"
    restarts = events(logs, TASK_RESTARTING)
    assert [(e["task"], e["attempts"], e["delay"]) for e in restarts] == [
        ("classify_worker", 1, 1.0),
        ("classify_worker", 2, 2.0),
        ("classify_worker", 3, 4.0),
    ]
    assert supervisor.gave_up == frozenset()


async def test_each_task_has_its_own_backoff() -> None:
    stop = asyncio.Event()
    sleep = FakeSleep()
    supervisor = Supervisor(stop=stop, policy=POLICY, sleep=sleep)
    seen, flaky = crashing(2, stop)

    async def steady() -> None:
        await stop.wait()

    supervisor.add("steady", steady)
    supervisor.add("flaky", flaky)
    with capture_logs() as logs:
        await supervisor.run()
    assert seen == ["flaky"] * 3
    assert {entry["task"] for entry in events(logs, TASK_CRASHED)} == {"flaky"}
    assert events(logs, TASK_EXITED) == []


async def test_stop_during_backoff_ends_the_wait() -> None:
    stop = asyncio.Event()
    sleep = FakeSleep(block=True)
    supervisor = Supervisor(stop=stop, policy=POLICY, sleep=sleep)
    calls = 0

    async def task() -> None:
        nonlocal calls
        calls += 1
        raise Boom

    supervisor.add("poller", task)
    with capture_logs():
        running = asyncio.create_task(supervisor.run())
        await sleep.started.wait()
        stop.set()
        await running
    assert calls == 1
    assert sleep.delays == [1.0]


async def test_normal_return_without_stop_is_restarted() -> None:
    stop = asyncio.Event()
    sleep = FakeSleep()
    supervisor = Supervisor(stop=stop, policy=POLICY, sleep=sleep)
    calls = 0

    async def task() -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            stop.set()

    supervisor.add("action_worker", task)
    with capture_logs() as logs:
        await supervisor.run()
    assert calls == 3
    assert [entry["task"] for entry in events(logs, TASK_EXITED)] == ["action_worker"] * 2
    assert events(logs, TASK_CRASHED) == []
    assert sleep.delays == [1.0, 2.0]


async def test_grace_expiry_cancels_a_stuck_task() -> None:
    stop = asyncio.Event()
    supervisor = Supervisor(stop=stop, policy=POLICY, sleep=FakeSleep())
    started = asyncio.Event()
    cancelled = False

    async def stuck() -> None:
        nonlocal cancelled
        started.set()
        try:
            await asyncio.Event().wait()  # ignores stop
        except asyncio.CancelledError:
            cancelled = True
            raise

    async def polite() -> None:
        await stop.wait()

    supervisor.add("browser", stuck)
    supervisor.add("scheduler", polite)
    with capture_logs() as logs:
        running = asyncio.create_task(supervisor.run())
        await started.wait()
        await supervisor.shutdown(grace=0)
        await running
    assert cancelled
    assert stop.is_set()
    assert [entry["task"] for entry in events(logs, TASK_CANCELLED)] == ["browser"]


async def test_shutdown_within_grace_cancels_nothing() -> None:
    stop = asyncio.Event()
    supervisor = Supervisor(stop=stop, policy=POLICY, sleep=FakeSleep())
    finished: list[str] = []
    started: list[str] = []
    both_started = asyncio.Event()

    def polite(name: str) -> Callable[[], Awaitable[None]]:
        async def task() -> None:
            started.append(name)
            if len(started) == 2:
                both_started.set()
            await stop.wait()
            finished.append(name)

        return task

    supervisor.add("a", polite("a"))
    supervisor.add("b", polite("b"))
    with capture_logs() as logs:
        running = asyncio.create_task(supervisor.run())
        await both_started.wait()
        await supervisor.shutdown(grace=30)
        await running
    assert sorted(finished) == ["a", "b"]
    assert events(logs, TASK_CANCELLED) == []
    assert events(logs, TASK_EXITED) == []


async def test_policy_giving_up_sets_stop() -> None:
    stop = asyncio.Event()
    sleep = FakeSleep()
    policy = RetryPolicy(base=1.0, jitter=0.0, max_attempts=3)
    supervisor = Supervisor(stop=stop, policy=policy, sleep=sleep)

    async def broken() -> None:
        raise Boom

    supervisor.add("evidence_worker", broken)
    with capture_logs() as logs:
        await supervisor.run()
    assert stop.is_set()
    assert supervisor.gave_up == frozenset({"evidence_worker"})
    assert sleep.delays == [1.0, 2.0]
    gave_up = events(logs, TASK_GAVE_UP)
    assert [(e["task"], e["attempts"], e["log_level"]) for e in gave_up] == [
        ("evidence_worker", 3, "critical")
    ]


async def test_a_long_healthy_run_resets_attempts() -> None:
    stop = asyncio.Event()
    sleep = FakeSleep()
    clock = FakeClock()
    supervisor = Supervisor(stop=stop, policy=POLICY, sleep=sleep, clock=clock, healthy_after=60)
    runtimes = iter([1.0, 1.0, 3600.0, 1.0])

    async def task() -> None:
        try:
            clock.now += next(runtimes)
        except StopIteration:
            stop.set()
            return
        raise Boom

    supervisor.add("scheduler", task)
    with capture_logs():
        await supervisor.run()
    assert sleep.delays == [1.0, 2.0, 1.0, 2.0]


async def test_policy_errors_filter_applies_to_crashes() -> None:
    stop = asyncio.Event()
    policy = RetryPolicy(jitter=0.0, retry_on=(TaskExited,))
    supervisor = Supervisor(stop=stop, policy=policy, sleep=FakeSleep())

    async def broken() -> None:
        raise Boom

    supervisor.add("web", broken)
    with capture_logs():
        await supervisor.run()
    assert supervisor.gave_up == frozenset({"web"})


async def test_task_logs_carry_the_task_name() -> None:
    stop = asyncio.Event()
    supervisor = Supervisor(stop=stop, policy=POLICY, sleep=FakeSleep())

    async def task() -> None:
        from monitor.logging import get_logger

        get_logger("worker").info("poll_finished")
        stop.set()

    supervisor.add("poller", task)
    from structlog.contextvars import merge_contextvars

    with capture_logs(processors=[merge_contextvars]) as logs:
        await supervisor.run()
    assert events(logs, "poll_finished")[0]["task"] == "poller"


async def test_run_without_tasks_returns_on_stop() -> None:
    stop = asyncio.Event()
    supervisor = Supervisor(stop=stop, policy=POLICY)
    running = asyncio.create_task(supervisor.run())
    await asyncio.sleep(0)
    assert not running.done()
    stop.set()
    await running


async def test_cancelling_run_cancels_the_tasks() -> None:
    stop = asyncio.Event()
    supervisor = Supervisor(stop=stop, policy=POLICY)
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def task() -> None:
        started.set()
        try:
            await stop.wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    supervisor.add("pipeline", task)
    running = asyncio.create_task(supervisor.run())
    await started.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert cancelled.is_set()


async def test_registration_rules() -> None:
    stop = asyncio.Event()
    supervisor = Supervisor(stop=stop, policy=POLICY)

    async def task() -> None:
        await stop.wait()

    supervisor.add("one", task)
    with pytest.raises(ValueError, match="one"):
        supervisor.add("one", task)
    stop.set()
    await supervisor.run()
    with pytest.raises(RuntimeError):
        supervisor.add("two", task)
    with pytest.raises(RuntimeError):
        await supervisor.run()


async def test_shutdown_before_run_only_sets_stop() -> None:
    stop = asyncio.Event()
    await Supervisor(stop=stop, policy=POLICY).shutdown(grace=5)
    assert stop.is_set()


async def test_wait_for_stop_true_when_already_set() -> None:
    stop = asyncio.Event()
    stop.set()
    assert await wait_for_stop(stop, 0) is True


async def test_wait_for_stop_false_on_timeout() -> None:
    assert await wait_for_stop(asyncio.Event(), 0) is False
    assert await wait_for_stop(asyncio.Event(), -1) is False


async def test_wait_for_stop_wakes_when_set() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_soon(stop.set)
    assert await wait_for_stop(stop, 3600) is True
