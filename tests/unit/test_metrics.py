"""Prometheus metrics: counted through real polls and classification, exposed by the web app in
the text format, store gauges that follow the store, one registry per app and per daemon."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, ClassVar

import httpx
import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from connectors.base import (
    AuthFailed,
    Batch,
    Capability,
    ConnectorUnavailable,
    Cursor,
    ModerationResult,
    ModerationTarget,
    PayloadInvalid,
    RateLimited,
    SourceContext,
)
from monitor.app import App, build_app, utcnow
from monitor.config import Settings
from monitor.daemon import Daemon
from monitor.metrics import ErrorKind, Exporter, Metrics, error_kind
from monitor.scheduler import build_scheduler
from monitor.store import Stage, Store
from monitor.store.escalations import acknowledge, list_escalations
from monitor.store.migrate import upgrade
from monitor.web.app import SECURITY_HEADERS, create_app
from tests.conftest import Clock

T = "2026-11-02T08:00:00Z"
POSTS = {
    "clean-1": "Lovely assembly today, well done everyone",
    "clean-2": "What time does the summer fair start on Saturday?",
    "self-harm": "I want to kill myself, nobody at this school cares",
    "abuse": "You are a worthless fat pig and everyone hates you",
}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def replay_settings(
    make_settings: Callable[..., Settings], tmp_path: Path, **sections: Any
) -> Settings:
    posts = tmp_path / "posts.jsonl"
    events = [
        {"op": "post", "platform": "facebook", "external_id": key, "created_at": T, "text": text}
        for key, text in POSTS.items()
    ]
    posts.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    source = {
        "name": "replay",
        "platform": "replay",
        "kind": "own",
        "options": {"path": str(posts)},
    }
    return make_settings(sources=[source], **sections)


def parse(text: str) -> Samples:
    """Every sample of a text exposition, by (name, labels); fails if it does not parse."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def scrape(app: Any) -> tuple[httpx.Response, Samples]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://vigil.test") as client:
        response = await client.get("/metrics")
    return response, parse(response.text)


@pytest.fixture
async def replay_app(
    database_url: str, make_settings: Callable[..., Settings], tmp_path: Path, clock: Clock
) -> AsyncIterator[tuple[App, Metrics]]:
    """The wired app on the replay connector, counting into a Metrics of its own."""
    settings = replay_settings(make_settings, tmp_path, database={"url": database_url})
    app = await build_app(settings, clock=clock)
    metrics = Metrics()
    for poller in app.pollers.values():  # what the daemon does before it starts the scheduler
        poller.metrics = metrics
    app.pipeline.metrics = metrics
    try:
        yield app, metrics
    finally:
        await app.close()


async def test_a_real_poll_and_classification_are_counted_and_exposed(
    replay_app: tuple[App, Metrics], clock: Clock
) -> None:
    app, metrics = replay_app
    web = create_app(app.settings, app.store, clock=clock, metrics=metrics)
    await app.poll_all()
    response, polled = await scrape(web)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    for header, expected in SECURITY_HEADERS.items():
        assert response.headers[header] == expected
    assert value(polled, "vigil_polls_total", source="replay", result="ok") == 1
    assert value(polled, "vigil_items", stage="classify") == len(POSTS)
    assert value(polled, "vigil_classification_seconds_count") == 0
    assert value(polled, "vigil_database_up") == 1

    await app.pipeline.drain()
    await app.poll_all()  # nothing new: still a poll, still ok
    _, drained = await scrape(web)
    assert value(drained, "vigil_polls_total", source="replay", result="ok") == 2
    batches = value(drained, "vigil_classification_seconds_count")
    assert batches >= 1
    assert value(drained, "vigil_classification_seconds_bucket", le="+Inf") == batches
    assert value(drained, "vigil_classification_seconds_sum") > 0
    assert value(drained, "vigil_classified_items_total") == len(POSTS)
    assert value(drained, "vigil_items", stage="classify") == 0
    summary = await app.store.summary()
    sent = summary["escalations"]["sent"]
    assert sent >= 1  # the self-harm post was escalated by email (to the outbox)
    assert value(drained, "vigil_escalations_unacknowledged") == sent
    assert value(drained, "vigil_escalations_pending") == 0
    done = sum(n for key, n in summary["actions"].items() if key.endswith(":done"))
    assert value(drained, "vigil_actions", state="done") == done


async def test_gauges_follow_the_store(replay_app: tuple[App, Metrics], clock: Clock) -> None:
    app, _ = replay_app
    store, school_id = app.store, app.pipeline.school_id
    web = create_app(app.settings, store, clock=clock)  # as `vigil web` alone: gauges only
    await app.poll_all()
    async with store.claim_items(Stage.CLASSIFY, 1, school_id=school_id) as claim:
        assert await claim.record_failure(claim.items[0], "boom", clock(), hold_after=1)
    _, held = await scrape(web)
    assert value(held, "vigil_items", stage="held") == 1
    assert value(held, "vigil_items", stage="classify") == len(POSTS) - 1
    assert {labels for name, labels in held if name == "vigil_items"} == {
        frozenset({("stage", stage)}) for stage in ("classify", "decide", "evidence", "held")
    }
    assert not [name for name, _ in held if name.startswith("vigil_polls")]

    await app.pipeline.drain()
    escalations = [e.id for e in await list_escalations(store, school_id) if e.state == "sent"]
    _, before = await scrape(web)
    await acknowledge(store, escalations[0], "Priya Shah", clock(), via="cli")
    _, after = await scrape(web)
    assert value(after, "vigil_escalations_unacknowledged") == (
        value(before, "vigil_escalations_unacknowledged") - 1
    )
    assert value(after, "vigil_actions", state="gave_up") == 0


class ScriptedConnector:
    """A connector whose fetches raise what the test queued, then return empty pages."""

    name: ClassVar[str] = "scripted"
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    script: ClassVar[list[BaseException]] = []

    @classmethod
    def from_context(cls, context: SourceContext) -> ScriptedConnector:
        return cls()

    async def fetch(self, cursor: Cursor) -> Batch:
        if self.script:
            raise self.script.pop(0)
        return Batch(posts=(), cursor=cursor, exhausted=True)

    async def check(self) -> None:
        return None

    async def moderate(self, capability: Capability, post: ModerationTarget) -> ModerationResult:
        return ModerationResult(supported=False)

    async def aclose(self) -> None:
        return None


async def test_errors_and_rate_limit_pauses_are_counted_by_kind(
    make_settings: Callable[..., Settings], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import monitor.registry as registry

    monkeypatch.setitem(registry.DEFAULT_CONNECTORS, "scripted", f"{__name__}:ScriptedConnector")
    ScriptedConnector.script = [
        ConnectorUnavailable("HTTP 503"),
        RateLimited(120),
        AuthFailed("token expired"),
    ]
    settings = make_settings(sources=[{"name": "fb", "platform": "scripted", "kind": "own"}])
    await upgrade(settings.database_url())
    app = await build_app(settings, clock=clock)
    metrics = Metrics()
    app.pollers["fb"].metrics = metrics
    try:
        await app.poll_all()  # unavailable: backs off
        clock.advance(hours=2)
        await app.poll_all()  # rate limited: paused for 120 s
        await app.poll_all()  # paused: not polled
        clock.advance(hours=2)
        await app.poll_all()  # auth: paused until a person resumes it
    finally:
        await app.close()
    samples = parse(prometheus_client.generate_latest(metrics.registry).decode())
    assert value(samples, "vigil_polls_total", source="fb", result="failed") == 3
    assert value(samples, "vigil_polls_total", source="fb", result="paused") == 1
    for kind in ("unavailable", "rate_limited", "auth"):
        assert value(samples, "vigil_poll_errors_total", source="fb", kind=kind) == 1
    assert value(samples, "vigil_rate_limit_pauses_total", source="fb") == 1


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (AuthFailed("x"), ErrorKind.AUTH),
        (RateLimited(1), ErrorKind.RATE_LIMITED),
        (ConnectorUnavailable("x"), ErrorKind.UNAVAILABLE),
        (PayloadInvalid("x", payload="{"), ErrorKind.PAYLOAD),
        (TimeoutError(), ErrorKind.TIMEOUT),
        (KeyError("x"), ErrorKind.INTERNAL),
    ],
)
def test_error_kinds(error: BaseException, kind: ErrorKind) -> None:
    assert error_kind(error) == kind


def test_each_metrics_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.polled("fb", "ok")
    one = parse(prometheus_client.generate_latest(first.registry).decode())
    other = parse(prometheus_client.generate_latest(second.registry).decode())
    assert value(one, "vigil_polls_total", source="fb", result="ok") == 1
    assert ("vigil_polls_total", frozenset({("source", "fb"), ("result", "ok")})) not in other
    global_names = {m.name for m in prometheus_client.REGISTRY.collect()}
    assert not [name for name in global_names if name.startswith("vigil_")]


def test_without_the_database_a_scrape_says_so() -> None:
    metrics = Metrics()
    metrics.polled("fb", "ok")
    samples = parse(Exporter(metrics).render(None).decode())
    assert value(samples, "vigil_database_up") == 0
    assert value(samples, "vigil_polls_total", source="fb", result="ok") == 1
    assert not [name for name, _ in samples if name == "vigil_items"]


async def test_metrics_answer_when_the_database_does_not(
    make_settings: Callable[..., Settings], tmp_path: Path, clock: Clock
) -> None:
    # Not a database: every query fails. (A file SQLite cannot open at all would also do, but
    # aiosqlite's failed connect leaves a worker thread that outlives the test's event loop.)
    (tmp_path / "broken.db").write_bytes(b"not a database " * 512)
    store = Store.open(f"sqlite+aiosqlite:///{tmp_path / 'broken.db'}")
    try:
        response, samples = await scrape(create_app(make_settings(), store, clock=clock))
    finally:
        await store.close()
    assert response.status_code == 200
    assert value(samples, "vigil_database_up") == 0


@pytest.mark.postgres
async def test_a_poll_another_process_holds_is_counted_as_locked(
    postgres_url: str, make_settings: Callable[..., Settings], tmp_path: Path, clock: Clock
) -> None:
    await upgrade(postgres_url)
    settings = replay_settings(make_settings, tmp_path, database={"url": postgres_url})
    app = await build_app(settings, clock=clock)
    other = Store.open(postgres_url)  # another process's connection
    metrics = Metrics()
    try:
        scheduler = build_scheduler(
            app.store,
            {"replay": (settings.source("replay"), app.pollers["replay"])},
            on_polled=lambda: None,
            now=clock(),
            metrics=metrics,
        )
        job = scheduler.get_job("poll:replay")
        async with other.source_lock(app.pollers["replay"].source_id) as held:
            assert held
            await job.func()
    finally:
        await other.close()
        await app.close()
    samples = parse(prometheus_client.generate_latest(metrics.registry).decode())
    assert value(samples, "vigil_polls_total", source="replay", result="locked") == 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
async def test_the_daemon_serves_its_counters_and_readiness(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    port = _free_port()
    settings = replay_settings(make_settings, tmp_path, web={"serve": True, "port": port})
    await upgrade(settings.database_url())
    daemon = Daemon(settings, clock=utcnow)
    running = asyncio.create_task(daemon.run())
    try:
        samples, ready = await _until_classified(port)
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(running, 30) == 0
    assert value(samples, "vigil_polls_total", source="replay", result="ok") >= 1
    assert value(samples, "vigil_classified_items_total") == len(POSTS)
    assert ready.status_code == 200
    assert ready.json()["scheduler"] == "in_process"


async def _until_classified(port: int) -> tuple[Samples, httpx.Response]:
    """Scrape until every post was classified (the daemon polls at start), then ask /readyz."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        for _ in range(600):
            try:
                samples = parse((await client.get("/metrics")).text)
            except httpx.HTTPError:
                samples = {}
            if samples.get(("vigil_classified_items_total", frozenset())) == len(POSTS):
                return samples, await client.get("/readyz")
            await asyncio.sleep(0.05)
    raise AssertionError("the daemon did not classify the posts in time")
