"""Escalation follow-ups: the signed acknowledgement link, the deputies' re-send, the digest."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

import httpx

from monitor.app import build_app
from monitor.config import Settings
from monitor.store.migrate import upgrade
from monitor.web.app import create_app
from tests.conftest import Clock
from tests.integration.test_failures import replay_source

GROOMING = "how old are you? this is our little secret, add me on snap"


def emails(settings: Settings) -> dict[str, object]:
    folder = settings.state_dir / "outbox"
    found = {}
    for path in sorted(folder.glob("*.eml")):
        found[path.name] = message_from_bytes(path.read_bytes(), policy=policy.default)
    return found


def settings_for(make_settings: Callable[..., Settings], tmp_path: Path) -> Settings:
    secret = tmp_path / "link-secret"
    secret.write_text("x" * 40)
    return make_settings(
        sources=[replay_source(tmp_path, one=GROOMING)],
        email={
            "deputy_dsl": ["deputy@oakfield.example.sch.uk"],
            "moderators": ["office@oakfield.example.sch.uk"],
            "digest_hour": 7,
        },
        web={"secret_file": str(secret), "base_url": "http://vigil.test"},
    )


async def test_nobody_acknowledges_so_the_deputies_get_it_once(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    clock = Clock(datetime(2026, 11, 2, 21, 0, tzinfo=UTC))
    settings = settings_for(make_settings, tmp_path)
    await upgrade(settings.database_url())
    app = await build_app(settings, clock=clock)
    try:
        await app.run_once()
        (first,) = [m for n, m in emails(settings).items() if n.startswith("esc-")]
        assert "http://vigil.test/ack/" in first.get_body(("plain",)).get_content()  # type: ignore[attr-defined]
        clock.advance(hours=5)  # 2 am: past resend_after_hours (4)
        await app.run_once()
        await app.run_once()  # and again: the re-send happens once
        resends = [m for n, m in emails(settings).items() if "resend" in n]
        assert len(resends) == 1
        assert resends[0]["To"] == "deputy@oakfield.example.sch.uk"  # type: ignore[index]
        assert str(resends[0]["Subject"]).startswith("[Vigil] not acknowledged")  # type: ignore[index]
        digests = [n for n in emails(settings) if n.startswith("digest-")]
        assert len(digests) == 1  # sent on the first run (past 7 am, none sent that day)
        clock.advance(hours=6)  # 8 am UK the next day: one more, once
        await app.run_once()
        await app.run_once()
        digests = [n for n in emails(settings) if n.startswith("digest-")]
        assert len(digests) == 2
    finally:
        await app.close()


async def test_the_link_in_the_email_acknowledges_and_stops_the_resend(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    clock = Clock(datetime(2026, 11, 2, 21, 0, tzinfo=UTC))
    settings = settings_for(make_settings, tmp_path)
    await upgrade(settings.database_url())
    app = await build_app(settings, clock=clock)
    try:
        await app.run_once()
        (first,) = [m for n, m in emails(settings).items() if n.startswith("esc-")]
        link = re.search(r"http://vigil\.test(/ack/\S+)", first.get_body(("plain",)).get_content())  # type: ignore[attr-defined]
        assert link is not None
        web = create_app(settings, app.store, clock=clock)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=web), base_url="http://vigil.test"
        ) as client:
            page = await client.get(link.group(1))
            assert page.status_code == 200 and GROOMING not in page.text
            done = await client.post(
                link.group(1), data={"token": link.group(1).split("/")[-1], "name": "Priya Shah"}
            )
            assert done.status_code == 200 and "Priya Shah" in done.text
        clock.advance(hours=5)
        await app.run_once()
        assert not [n for n in emails(settings) if "resend" in n]
    finally:
        await app.close()
