"""/readyz: the database answers, the scheduler runs, no enabled source is stuck; 503 naming the
failing checks otherwise, never content or secrets. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from structlog.testing import capture_logs

from monitor.config import Settings
from monitor.poller import AUTH_PAUSE, BACKOFF_PAUSE, RATE_PAUSE
from monitor.scheduler import SchedulerProbe
from monitor.store import SourceState, Store
from monitor.web.app import SECURITY_HEADERS, create_app
from monitor.web.health import SourceStatus, judge_source, stuck_after
from tests.conftest import Clock

SECRET_ERROR = "AuthFailed: token EAAB-secret-token expired for 'a hateful post'"


def source(name: str, interval: int = 300, enabled: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "platform": "replay",
        "kind": "own",
        "interval": interval,
        "enabled": enabled,
        "options": {"path": "/nonexistent.jsonl"},
    }


@dataclass(kw_only=True)
class World:
    store: Store
    settings: Settings
    clock: Clock
    school_id: int
    ids: dict[str, int]

    async def polled(self, name: str, ago: timedelta = timedelta(0)) -> None:
        """Record a successful poll of ``name`` ``ago`` before now."""
        await self.store.record_batch(self.ids[name], [], cursor="c", now=self.clock() - ago)

    async def failed(self, name: str, *, reason: str, until: datetime | None = None) -> None:
        await self.store.record_poll_failure(
            self.ids[name], SECRET_ERROR, now=self.clock(), paused_until=until, pause_reason=reason
        )

    async def readyz(self, scheduler: Any = None) -> httpx.Response:
        app = create_app(self.settings, self.store, clock=self.clock, scheduler=scheduler)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://vigil.test") as c:
            return await c.get("/readyz")


@pytest.fixture
async def world(
    store: Store, make_settings: Callable[..., Settings], clock: Clock
) -> AsyncIterator[World]:
    settings = make_settings(
        sources=[source("fb"), source("x", interval=1800), source("old", enabled=False)]
    )
    school = settings.school
    school_id = await store.ensure_school(school.slug, school.name, clock())
    ids = {}
    for name in ("fb", "x", "old"):
        state = await store.ensure_source(school_id, name, "replay", "own", clock())
        ids[name] = state.id
    yield World(store=store, settings=settings, clock=clock, school_id=school_id, ids=ids)


@pytest.fixture
async def running() -> AsyncIterator[SchedulerProbe]:
    """A started APScheduler, as the daemon's probe sees it."""
    scheduler = AsyncIOScheduler(timezone="UTC")
    scheduler.start()
    try:
        yield SchedulerProbe(
            scheduler=scheduler,
            stop=asyncio.Event(),
            started_at=datetime(2026, 11, 2, 8, 59, tzinfo=UTC),
        )
    finally:
        scheduler.shutdown(wait=False)


async def test_ready_when_everything_polls(world: World) -> None:
    await world.polled("fb", timedelta(minutes=2))
    await world.polled("x", timedelta(minutes=20))
    response = await world.readyz()
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "scheduler": "ok", "sources": "ok"},
        "failing": [],
        "scheduler": "database",
        "sources": {"stuck": [], "paused": [], "waiting": []},
    }
    assert response.headers["content-type"] == "application/json"
    for header, expected in SECURITY_HEADERS.items():
        assert response.headers[header] == expected


async def test_no_scheduler_when_nothing_polled_within_the_window(world: World) -> None:
    # fb every 5 min, x every 30 min: the window is max(3 × 300 s, 600 s) = 15 min
    await world.polled("fb", timedelta(minutes=16))
    await world.polled("x", timedelta(minutes=16))
    response = await world.readyz()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["scheduler"] == "database"
    assert body["checks"]["scheduler"] == "failing"
    assert body["sources"]["stuck"] == ["fb"]  # x may go 90 min between polls


async def test_a_configured_window_wins(
    world: World, make_settings: Callable[..., Settings]
) -> None:
    await world.polled("fb", timedelta(minutes=14))
    await world.polled("x", timedelta(minutes=14))
    world.settings = make_settings(
        sources=[source("fb"), source("x", interval=1800)], web={"ready_window": 600}
    )
    body = (await world.readyz()).json()
    assert body["checks"]["scheduler"] == "failing"
    assert body["checks"]["sources"] == "ok"


async def test_never_polled_sources_wait_and_the_scheduler_fails(world: World) -> None:
    response = await world.readyz()
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["scheduler"]
    assert body["sources"]["waiting"] == ["fb", "x"]


async def test_in_process_scheduler_running(world: World, running: SchedulerProbe) -> None:
    await world.polled("fb", timedelta(hours=5))  # the daemon was down; it started a minute ago
    response = await world.readyz(running)
    assert response.status_code == 200
    assert response.json()["scheduler"] == "in_process"
    world.clock.advance(minutes=15)  # 16 min since the start, fb still not polled: stuck
    body = (await world.readyz(running)).json()
    assert body["failing"] == ["sources"]
    assert body["sources"]["stuck"] == ["fb"]  # x may go 90 min between polls


async def test_in_process_scheduler_stopping(world: World, running: SchedulerProbe) -> None:
    await world.polled("fb")
    await world.polled("x")
    running.stop.set()
    response = await world.readyz(running)
    assert response.status_code == 503
    assert response.json()["failing"] == ["scheduler"]


async def test_a_scheduler_that_never_started_is_not_running(world: World) -> None:
    await world.polled("fb")
    await world.polled("x")
    probe = SchedulerProbe(
        scheduler=AsyncIOScheduler(timezone="UTC"), stop=asyncio.Event(), started_at=world.clock()
    )
    assert (await world.readyz(probe)).json()["checks"]["scheduler"] == "failing"


async def test_a_stuck_source_fails_readiness_by_name(world: World) -> None:
    await world.polled("fb", timedelta(minutes=16))
    await world.polled("x", timedelta(minutes=1))
    response = await world.readyz()
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["sources"]
    assert body["checks"] == {"database": "ok", "scheduler": "ok", "sources": "failing"}
    assert body["sources"]["stuck"] == ["fb"]


async def test_rate_limited_and_backing_off_sources_are_paused_not_stuck(world: World) -> None:
    await world.failed("fb", reason=RATE_PAUSE, until=world.clock() + timedelta(hours=2))
    await world.failed("x", reason=BACKOFF_PAUSE, until=world.clock() + timedelta(minutes=5))
    world.clock.advance(minutes=4)
    response = await world.readyz()
    assert response.status_code == 200
    assert response.json()["sources"] == {"stuck": [], "paused": ["fb", "x"], "waiting": []}


async def test_an_auth_pause_is_stuck_and_no_error_text_leaks(world: World) -> None:
    await world.polled("x")
    await world.failed("fb", reason=AUTH_PAUSE)
    with capture_logs() as logs:
        response = await world.readyz()
    assert response.status_code == 503
    assert response.json()["sources"]["stuck"] == ["fb"]
    assert "secret" not in response.text and "hateful" not in response.text
    assert [e["event"] for e in logs] == ["readiness_changed"]
    assert "secret" not in str(logs)


async def test_disabled_and_unconfigured_sources_are_ignored(world: World) -> None:
    stray = await world.store.ensure_source(world.school_id, "gone", "x", "own", world.clock())
    await world.store.record_poll_failure(
        stray.id, SECRET_ERROR, now=world.clock(), pause_reason=AUTH_PAUSE
    )
    await world.failed("old", reason=AUTH_PAUSE)
    await world.polled("fb")
    await world.polled("x")
    assert (await world.readyz()).status_code == 200


async def test_no_enabled_source_needs_no_scheduler(
    store: Store, make_settings: Callable[..., Settings], clock: Clock
) -> None:
    settings = make_settings(sources=[source("off", enabled=False)])
    app = create_app(settings, store, clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://vigil.test") as c:
        response = await c.get("/readyz")
    assert response.status_code == 200


async def test_database_down_sqlite(
    make_settings: Callable[..., Settings], tmp_path: Path, clock: Clock
) -> None:
    # Every query fails on a file that is not a database.
    (tmp_path / "broken.db").write_bytes(b"not a database " * 512)
    await _database_down(make_settings(), f"sqlite+aiosqlite:///{tmp_path / 'broken.db'}", clock)


@pytest.mark.postgres
async def test_database_down_postgres(make_settings: Callable[..., Settings], clock: Clock) -> None:
    # Nothing listens on port 1: the connection is refused at once.
    await _database_down(make_settings(), "postgresql+asyncpg://vigil@127.0.0.1:1/vigil", clock)


async def _database_down(settings: Settings, url: str, clock: Clock) -> None:
    store = Store.open(url)
    try:
        app = create_app(settings, store, clock=clock)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://vigil.test") as c:
            with capture_logs() as logs:
                first, second = await c.get("/readyz"), await c.get("/readyz")
    finally:
        await store.close()
    assert first.status_code == second.status_code == 503
    assert first.json() == {
        "status": "not_ready",
        "checks": {"database": "failing", "scheduler": "unknown", "sources": "unknown"},
        "failing": ["database", "scheduler", "sources"],
        "scheduler": "database",
        "sources": {"stuck": [], "paused": [], "waiting": []},
    }
    assert "127.0.0.1" not in first.text and "vigil.db" not in first.text
    changed = [e for e in logs if e["event"] == "readiness_changed"]
    assert len(changed) == 1 and changed[0]["ready"] is False  # logged once, not per probe


async def test_database_down_with_the_scheduler_running(
    make_settings: Callable[..., Settings], tmp_path: Path, clock: Clock, running: SchedulerProbe
) -> None:
    (tmp_path / "broken.db").write_bytes(b"not a database " * 512)
    store = Store.open(f"sqlite+aiosqlite:///{tmp_path / 'broken.db'}")
    try:
        app = create_app(make_settings(), store, clock=clock, scheduler=running)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://vigil.test") as c:
            body = (await c.get("/readyz")).json()
    finally:
        await store.close()
    assert body["checks"] == {"database": "failing", "scheduler": "ok", "sources": "unknown"}


NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def state(**overrides: Any) -> SourceState:
    values: dict[str, Any] = {
        "id": 1,
        "school_id": 1,
        "name": "fb",
        "platform": "facebook",
        "kind": "own",
        "cursor": None,
        "paused_until": None,
        "pause_reason": None,
        "last_poll_at": None,
        "last_success_at": None,
        "last_error": None,
        "failing_since": None,
        "consecutive_failures": 0,
        "auth_alerted_at": None,
        "items_seen": 0,
    }
    return SourceState(**{**values, **overrides})


@pytest.mark.parametrize(
    ("source_state", "interval", "since", "expected"),
    [
        (None, 300, None, SourceStatus.WAITING),
        (None, 60, NOW - timedelta(minutes=10), SourceStatus.OK),
        (None, 60, NOW - timedelta(minutes=11), SourceStatus.STUCK),
        (state(last_poll_at=NOW - timedelta(minutes=10)), 60, None, SourceStatus.OK),
        (state(last_poll_at=NOW - timedelta(minutes=10, seconds=1)), 60, None, SourceStatus.STUCK),
        (state(last_poll_at=NOW - timedelta(minutes=45)), 900, None, SourceStatus.OK),
        (state(last_poll_at=NOW - timedelta(minutes=46)), 900, None, SourceStatus.STUCK),
        # a restart gives every source a fresh allowance from the scheduler's start
        (state(last_poll_at=NOW - timedelta(days=1)), 300, NOW, SourceStatus.OK),
        (
            state(pause_reason=RATE_PAUSE, paused_until=NOW + timedelta(seconds=1)),
            300,
            None,
            SourceStatus.PAUSED,
        ),
        (
            state(
                pause_reason=RATE_PAUSE,
                paused_until=NOW,
                last_poll_at=NOW - timedelta(hours=1),
            ),
            300,
            None,
            SourceStatus.STUCK,
        ),
        (state(pause_reason=AUTH_PAUSE, last_poll_at=NOW), 300, NOW, SourceStatus.STUCK),
    ],
)
def test_judge_source(
    source_state: SourceState | None,
    interval: int,
    since: datetime | None,
    expected: SourceStatus,
) -> None:
    assert judge_source(source_state, interval, NOW, since) == expected


def test_stuck_after_is_three_intervals_and_at_least_ten_minutes() -> None:
    assert stuck_after(60) == timedelta(minutes=10)
    assert stuck_after(900) == timedelta(minutes=45)
