"""The whole pipeline on the replay connector: every stage, evidence before hide, no leaks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from monitor.app import build_app
from monitor.config import Settings
from monitor.daemon import Daemon
from monitor.store import tables as t
from monitor.store.migrate import upgrade
from tests.conftest import DEMO_POSTS, Clock


def replay_settings(
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    posts: Path = DEMO_POSTS,
    database: dict[str, str] | None = None,
    **options: object,
) -> Settings:
    return make_settings(
        database=database or {},
        sources=[
            {
                "name": "replay",
                "platform": "replay",
                "kind": "own",
                "max_items_per_poll": 10_000,
                "options": {
                    "path": str(posts),
                    "page_size": 50,
                    "moderation_log": str(tmp_path / "calls.jsonl"),
                    **options,
                },
            }
        ],
    )


async def test_run_once_takes_every_post_through_every_stage(
    database_url: str, make_settings: Callable[..., Settings], tmp_path: Path, clock: Clock
) -> None:
    settings = replay_settings(make_settings, tmp_path, database={"url": database_url})
    with capture_logs() as logs:
        assert await Daemon(settings, clock=clock).run(once=True) == 0
    app = await build_app(settings, clock=clock)
    try:
        summary = await app.store.summary()
        async with app.store.transaction() as s:
            items = (await s.scalars(select(t.Item))).all()
            hidden = (
                await s.scalars(
                    select(t.Action).where(t.Action.kind == "hide", t.Action.state == "done")
                )
            ).all()
            evidence_items = set((await s.scalars(select(t.Evidence.item_id))).all())
            escalations = (await s.scalars(select(t.Escalation))).all()
    finally:
        await app.close()
    texts = [json.loads(line).get("text", "") for line in DEMO_POSTS.read_text().splitlines()]
    assert summary["items"] == sum(
        1 for line in DEMO_POSTS.read_text().splitlines() if '"op": "post"' in line
    )
    assert all(i.stage == "done" for i in items)
    assert summary["verdicts"] >= summary["items"]
    assert summary["cases"] == summary["evidence"] > 0
    # evidence first: every hidden item has its evidence, and the platform saw each hide once
    assert hidden and {a.item_id for a in hidden} <= evidence_items
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert len([c for c in calls if c["call"] == "hide"]) == len(hidden)
    outbox = list((settings.state_dir / "outbox").glob("*.eml"))
    assert escalations and len(outbox) == len(escalations) == summary["escalations"]["sent"]
    # no post text reaches the logs
    logged = json.dumps(logs, default=str)
    leaked = [x for x in texts if len(x) > 25 and x in logged]
    assert leaked == []


async def test_second_run_does_nothing_twice(
    make_settings: Callable[..., Settings], tmp_path: Path, clock: Clock
) -> None:
    settings = replay_settings(make_settings, tmp_path)
    await upgrade(settings.database_url())
    await Daemon(settings, clock=clock).run(once=True)
    app = await build_app(settings, clock=clock)
    try:
        first = await app.store.summary()
    finally:
        await app.close()
    clock.advance(hours=1)
    await Daemon(settings, clock=clock).run(once=True)
    app = await build_app(settings, clock=clock)
    try:
        second = await app.store.summary()
    finally:
        await app.close()
    assert first == second


async def test_malformed_replay_lines_are_quarantined_not_dropped(
    make_settings: Callable[..., Settings], tmp_path: Path, clock: Clock
) -> None:
    posts = tmp_path / "posts.jsonl"
    good = {
        "op": "post",
        "platform": "facebook",
        "external_id": "1",
        "text": "Lovely assembly today",
        "created_at": "2026-11-02T09:00:00Z",
    }
    posts.write_text(
        "\n".join([json.dumps(good), "{not json", json.dumps({**good, "external_id": "2"})]) + "\n"
    )
    settings = replay_settings(make_settings, tmp_path, posts)
    await upgrade(settings.database_url())
    await Daemon(settings, clock=clock).run(once=True)
    app = await build_app(settings, clock=clock)
    try:
        async with app.store.transaction() as s:
            quarantined = (await s.scalars(select(t.Quarantine))).all()
        summary = await app.store.summary()
    finally:
        await app.close()
    assert summary["items"] == 2
    assert (
        len(quarantined) == 1
        and quarantined[0].payload == "{not json"
        and "line 2" in quarantined[0].error
    )


async def test_run_refuses_an_unmigrated_database(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    from monitor.daemon import SchemaOutOfDate

    settings = replay_settings(make_settings, tmp_path)
    try:
        await Daemon(settings).run(once=True)
    except SchemaOutOfDate as err:
        assert "vigil db upgrade" in str(err)
    else:
        raise AssertionError("an unmigrated database must be refused")


async def test_a_database_that_stays_unreachable_is_retried_then_reported(
    make_settings: Callable[..., Settings],
) -> None:
    from monitor.daemon import DatabaseUnreachable

    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    settings = make_settings(database={"url": "postgresql+asyncpg://vigil@127.0.0.1:1/none"})
    with capture_logs() as logs, pytest.raises(DatabaseUnreachable, match=r"127\.0\.0\.1"):
        await Daemon(settings, sleep=no_wait).run(once=True)
    assert len(waits) == 5 and waits == sorted(waits)  # backed off, then gave up
    assert [e["event"] for e in logs].count("database_unreachable") == 5
