"""Failure handling: sources that fail, actions that fail, retention — nothing lost, humans told."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import select, update
from structlog.testing import capture_logs

from actions.escalate import MailFailed
from actions.states import ActionState
from connectors.base import (
    AuthFailed,
    Batch,
    Capability,
    ConnectorUnavailable,
    Cursor,
    ModerationResult,
    ModerationTarget,
    Post,
    RateLimited,
    SourceContext,
    SourceKind,
)
from monitor.app import App, build_app, purge_expired
from monitor.config import ConfigError, Settings
from monitor.store import tables as t
from monitor.store.convert import ActionRecord
from monitor.store.migrate import upgrade
from tests.conftest import Clock

T = "2026-11-02T09:00:00Z"


class ScriptedConnector:
    """A connector whose next fetch raises or returns what the test queued."""

    name: ClassVar[str] = "scripted"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.HIDE})
    script: ClassVar[list[BaseException | Batch]] = []

    @classmethod
    def from_context(cls, context: SourceContext) -> ScriptedConnector:
        return cls()

    async def fetch(self, cursor: Cursor) -> Batch:
        step = self.script.pop(0) if self.script else Batch(posts=(), cursor=cursor)
        if isinstance(step, BaseException):
            raise step
        return step

    async def check(self) -> None:
        return None

    async def moderate(self, capability: Capability, post: ModerationTarget) -> ModerationResult:
        return ModerationResult(supported=True, done=True)

    async def aclose(self) -> None:
        return None


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> type[ScriptedConnector]:
    import monitor.registry as registry

    monkeypatch.setitem(registry.DEFAULT_CONNECTORS, "scripted", f"{__name__}:ScriptedConnector")
    ScriptedConnector.script = []
    return ScriptedConnector


def replay_source(tmp_path: Path, **texts: str) -> dict[str, Any]:
    """A replay source playing one Facebook post per keyword (external id = the keyword)."""
    posts = tmp_path / "posts.jsonl"
    events = [
        {"op": "post", "platform": "facebook", "external_id": key, "created_at": T, "text": text}
        for key, text in texts.items()
    ]
    posts.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return {"name": "replay", "platform": "replay", "kind": "own", "options": {"path": str(posts)}}


async def app_for(settings: Settings, clock: Clock) -> App:
    await upgrade(settings.database_url())
    return await build_app(settings, clock=clock)


def outbox(settings: Settings) -> list[str]:
    folder = settings.state_dir / "outbox"
    return sorted(p.name for p in folder.glob("*.eml")) if folder.exists() else []


async def test_expired_token_pauses_the_source_and_tells_the_admin_once(
    make_settings: Callable[..., Settings], scripted: type[ScriptedConnector], clock: Clock
) -> None:
    settings = make_settings(sources=[{"name": "fb", "platform": "scripted", "kind": "own"}])
    app = await app_for(settings, clock)
    try:
        scripted.script[:] = [AuthFailed("token expired (code 190)")]
        await app.poll_all()
        await app.poll_all()  # paused: the connector is not even asked
        state = (await app.store.list_sources())[0]
        assert state.pause_reason == "auth_failed" and state.auth_alerted_at is not None
        (alert,) = outbox(settings)
        body = message_from_bytes((settings.state_dir / "outbox" / alert).read_bytes())
        assert "fb" in str(body["Subject"]) and "vigil sources resume fb" in body.get_payload()
        await app.store.resume_source(state.id, "test", clock())
        scripted.script[:] = [Batch(posts=(), cursor=Cursor(value="1"))]
        with capture_logs() as logs:
            await app.poll_all()
        assert [e["event"] for e in logs if e["event"] == "source_recovered"] == [
            "source_recovered"
        ]
    finally:
        await app.close()


async def test_rate_limits_pause_until_the_platform_says(
    make_settings: Callable[..., Settings], scripted: type[ScriptedConnector], clock: Clock
) -> None:
    settings = make_settings(sources=[{"name": "x", "platform": "scripted", "kind": "mention"}])
    app = await app_for(settings, clock)
    try:
        scripted.script[:] = [RateLimited(retry_after=900)]
        await app.poll_all()
        state = (await app.store.list_sources())[0]
        assert state.paused_until == clock() + timedelta(seconds=900)
        clock.advance(seconds=899)
        scripted.script[:] = [Batch(posts=(), cursor=Cursor(value="2"))]
        await app.poll_all()
        assert len(scripted.script) == 1  # still paused
        clock.advance(seconds=2)
        await app.poll_all()
        assert scripted.script == [] and (await app.store.list_sources())[0].cursor == "2"
    finally:
        await app.close()


async def test_transient_errors_back_off_and_one_source_never_stops_another(
    make_settings: Callable[..., Settings],
    scripted: type[ScriptedConnector],
    clock: Clock,
    tmp_path: Path,
) -> None:
    settings = make_settings(
        sources=[
            {"name": "flaky", "platform": "scripted", "kind": "own"},
            replay_source(tmp_path, one="Lovely nativity"),
        ]
    )
    app = await app_for(settings, clock)
    try:
        scripted.script[:] = [
            ConnectorUnavailable("502"),
            ZeroDivisionError("a bug in a connector"),
        ]
        results = await app.poll_all()
        assert results["flaky"].outcome == "failed" and results["replay"].new == 1
        flaky = next(s for s in await app.store.list_sources() if s.name == "flaky")
        assert flaky.pause_reason == "backing_off" and flaky.paused_until is not None
        clock.now = flaky.paused_until + timedelta(seconds=1)
        with capture_logs() as logs:
            results = await app.poll_all()  # an unexpected exception is handled the same way
        assert results["flaky"].outcome == "failed"
        assert not [e for e in logs if e["event"] == "source_failing"]  # logged once, not again
        flaky = next(s for s in await app.store.list_sources() if s.name == "flaky")
        assert flaky.consecutive_failures == 2 and "ZeroDivisionError" in (flaky.last_error or "")
    finally:
        await app.close()


class DownMailer:
    def __init__(self) -> None:
        self.calls = 0

    async def send(self, message: object) -> None:
        self.calls += 1
        raise MailFailed("SMTP 127.0.0.1:1: connection refused")


async def test_an_escalation_is_never_given_up_while_the_mail_server_is_down(
    make_settings: Callable[..., Settings], clock: Clock, tmp_path: Path
) -> None:
    settings = make_settings(
        sources=[replay_source(tmp_path, one="I want to kill myself tonight, nobody would care")],
        policy={"action_max_attempts": 3, "action_retry_base": 60},  # for other actions only
    )
    app = await app_for(settings, clock)
    down = DownMailer()
    app.executor.mailer = down
    try:
        await app.run_once()
        for _ in range(6):  # a day of retries at the capped backoff
            clock.advance(hours=4)
            await app.pipeline.drain()
        (escalate,) = [a for a in await _actions(app) if a.kind == "escalate"]
        assert escalate.state == ActionState.FAILED and escalate.attempts == 7  # still trying
        # after 3 tries the admin was told once; SMTP refused that too, so it is in the outbox
        alerts = [n for n in outbox(settings) if n.startswith("alert-")]
        assert len(alerts) == 1
        body = message_from_bytes((settings.state_dir / "outbox" / alerts[0]).read_bytes())
        assert "has not been sent yet" in str(body["Subject"])
        app.executor.mailer = app.executor.fallback  # the server is back (here: the outbox)
        clock.advance(hours=4)
        await app.pipeline.drain()
        (escalate,) = [a for a in await _actions(app) if a.kind == "escalate"]
        assert escalate.state == ActionState.DONE
    finally:
        await app.close()


async def _actions(app: App) -> list[ActionRecord]:
    async with app.store.transaction() as s:
        return [ActionRecord.from_row(r) for r in await s.scalars(select(t.Action))]


async def test_running_an_escalation_twice_sends_one_email(
    make_settings: Callable[..., Settings], clock: Clock, tmp_path: Path
) -> None:
    settings = make_settings(
        sources=[
            replay_source(
                tmp_path, one="how old are you? this is our little secret, add me on snap"
            )
        ]
    )
    app = await app_for(settings, clock)
    try:
        await app.run_once()
        (sent,) = outbox(settings)
        email = message_from_bytes((settings.state_dir / "outbox" / sent).read_bytes())
        body = next(p for p in email.walk() if p.get_content_type() == "text/plain")
        assert (
            '"our little secret" → safeguarding / contact.sexual'
            in body.get_payload(decode=True).decode()
        )
        # a crash after sending but before recording "done": the lease expires, it runs again
        async with app.store.transaction() as s:
            await s.execute(
                update(t.Action)
                .where(t.Action.kind == "escalate")
                .values(state="running", lease_until=clock() - timedelta(seconds=1))
            )
        await app.pipeline.drain()
        assert len(outbox(settings)) == 1
        assert [a.state for a in await _actions(app) if a.kind == "escalate"] == ["done"]
    finally:
        await app.close()


async def test_retention_purges_old_clean_items_and_keeps_flagged_ones(
    make_settings: Callable[..., Settings], clock: Clock, tmp_path: Path
) -> None:
    settings = make_settings(
        sources=[
            replay_source(
                tmp_path,
                clean="Thank you for a lovely harvest festival",
                bad="how old are you? this is our little secret, add me on snap",
            )
        ],
        retention={"unflagged_days": 30},
    )
    app = await app_for(settings, clock)
    try:
        await app.run_once()
        assert await purge_expired(app, clock()) == {"items": 0, "quarantine": 0}
        clock.advance(days=31)
        assert await purge_expired(app, clock()) == {"items": 1, "quarantine": 0}
        summary = await app.store.summary()
        assert summary["items"] == 1 and summary["cases"] == 1
    finally:
        await app.close()


async def test_a_broken_school_lexicon_refuses_to_start(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    lexicon = tmp_path / "ours.toml"
    lexicon.write_text("version = 1\n[[entry]]\nid = 'x'\nflag = 'nonsense'\n")
    settings = make_settings(classifier={"lexicons": [str(lexicon)]})
    await upgrade(settings.database_url())
    with pytest.raises(ConfigError, match=r"classifier\.rules"):
        await build_app(settings)


class PoisonedClassifier:
    """Wraps the real classifier; any text containing POISON makes it raise."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.enabled, self.skipped = real.enabled, real.skipped

    def classify_many(self, items: list[Any]) -> list[Any]:
        if any("POISON" in i.text for i in items):
            raise RuntimeError("detector crashed on this text: POISON")  # message quotes the post
        return list(self.real.classify_many(items))


async def test_a_poison_item_is_held_without_blocking_the_others(
    make_settings: Callable[..., Settings], clock: Clock, tmp_path: Path
) -> None:
    settings = make_settings(
        sources=[replay_source(tmp_path, a="Great sports day", b="POISON pill", c="Lovely choir")],
        daemon={"item_max_failures": 3},
    )
    app = await app_for(settings, clock)
    app.pipeline.classifier = PoisonedClassifier(app.classifier)  # type: ignore[assignment]
    try:
        with capture_logs() as logs:
            await app.run_once()
        summary = await app.store.summary()
        assert summary["verdicts"] == 2  # the healthy items went through at once
        for _ in range(2):
            await app.pipeline.drain()
        counts = await app.store.pending_counts()
        assert counts.get("held") == 1 and counts.get("classify", 0) == 0
        assert not [e for e in logs if "POISON" in json.dumps(e, default=str)]  # no text in logs
        (alert,) = outbox(settings)
        assert (
            "vigil items requeue"
            in message_from_bytes(
                (settings.state_dir / "outbox" / alert).read_bytes()
            ).get_payload()
        )
        # once the cause is fixed, the held item goes through
        app.pipeline.classifier = app.classifier
        assert await app.store.requeue_held(actor="test", now=clock()) == 1
        await app.pipeline.drain()
        assert (await app.store.summary())["verdicts"] == 3
    finally:
        await app.close()


class NoModerationConnector(ScriptedConnector):
    """A platform with no moderation API at all (like a news site's comments)."""

    capabilities: ClassVar[frozenset[Capability]] = frozenset()


async def test_what_a_platform_cannot_do_becomes_a_report_pack(
    make_settings: Callable[..., Settings], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import monitor.registry as registry

    monkeypatch.setitem(registry.DEFAULT_CONNECTORS, "nomod", f"{__name__}:NoModerationConnector")
    text = "how old are you? this is our little secret, add me on snap"
    post = Post(
        platform="rss",
        external_id="n1",
        text=text,
        created_at=clock(),
        source_kind=SourceKind.MENTION,
        permalink="https://forum.example/t/1",
    )
    NoModerationConnector.script = [Batch(posts=(post,), cursor=Cursor(value="1"))]
    settings = make_settings(sources=[{"name": "forum", "platform": "nomod", "kind": "mention"}])
    app = await app_for(settings, clock)
    try:
        await app.run_once()
        report = next(a for a in await _actions(app) if a.kind == "report")
        assert report.state == ActionState.DONE and report.result["supported"] is False
        pack = await asyncio.to_thread(Path(report.result["report_pack"]).read_text)
        assert "https://forum.example/t/1" in pack and "report or complaints route" in pack
        assert "CEOP" in pack and "little secret" not in pack  # routes, never the post
        assert outbox(settings) and not [n for n in outbox(settings) if n.startswith("alert-")]
    finally:
        await app.close()


async def test_paging_goes_on_through_empty_pages_but_not_round_in_circles(
    make_settings: Callable[..., Settings], scripted: type[ScriptedConnector], clock: Clock
) -> None:
    settings = make_settings(sources=[{"name": "s", "platform": "scripted", "kind": "own"}])
    app = await app_for(settings, clock)
    post = Post(
        platform="facebook",
        external_id="late",
        text="Lovely concert",
        created_at=clock(),
        source_kind=SourceKind.OWN,
    )
    try:
        scripted.script[:] = [
            Batch(posts=(), cursor=Cursor(value="thread-1"), exhausted=False),  # empty, moved on
            Batch(posts=(post,), cursor=Cursor(value="thread-2"), exhausted=False),
            Batch(posts=(), cursor=Cursor(value="thread-2"), exhausted=False),  # no progress
            Batch(posts=(post,), cursor=Cursor(value="never"), exhausted=True),
        ]
        result = (await app.poll_all())["s"]
        assert (result.pages, result.new) == (3, 1) and len(scripted.script) == 1
    finally:
        await app.close()
