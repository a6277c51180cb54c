"""The review app end to end in real headless Chromium (Playwright driving Debian's chromium).

A Facebook Page on the fake Graph API gets a rude comment (the policy proposes a hide for a
moderator) and a child's disclosure (escalated to the DSL at once). The daemon polls once;
then a moderator signs in, filters the queue, opens the case and approves the hide, which the
daemon carries out against the fake platform; the DSL signs in, acknowledges the escalation
and downloads the audit log as CSV.

Screenshots of the main pages go to ``$VIGIL_SCREENSHOTS`` when it is set (the README's come
from a run with ``VIGIL_SCREENSHOTS=docs/screenshots``), else to the test's tmp directory.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import socket
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from playwright.async_api import Browser, Page, async_playwright

from monitor.config import Settings
from monitor.daemon import Daemon
from monitor.store import Store
from monitor.store.migrate import upgrade
from monitor.store.users import Role, add_user
from monitor.web import auth
from monitor.web.server import serve_until
from tests.conftest import Clock
from tests.fakeplatform import FakeGraph

CHROMIUM = Path("/usr/bin/chromium")
RUDE = "The staff at Oakfield are a bunch of clowns and idiots, sort it out"
DISCLOSURE = "my dads friend hurts me when mum is at work and i dont want to go home"
PASSWORD = "correct horse battery staple"
POST = "122100000000000001"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    fake = FakeGraph()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    target = Path(os.environ.get("VIGIL_SCREENSHOTS") or tmp_path / "shots")
    target.mkdir(parents=True, exist_ok=True)
    return target


async def _sign_in(browser: Browser, base: str, username: str) -> Page:
    page = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
    await page.goto(f"{base}/queue")
    assert "/login" in page.url  # anonymous: sent to sign in, and back afterwards
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/queue")
    return page


async def test_moderator_and_dsl_work_a_case_in_a_real_browser(
    make_settings: Callable[..., Settings],
    graph: FakeGraph,
    clock: Clock,
    shots: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VIGIL_TEST_FB_TOKEN", graph.token)
    monkeypatch.setattr(auth, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024))
    graph.add_post(POST, "Sports day photos are up!", clock() - timedelta(hours=3))
    rude = graph.add_comment(
        POST, "987654321000002", RUDE, "Someone Else", clock() - timedelta(hours=2)
    )
    graph.add_comment(POST, "987654321000003", DISCLOSURE, "A Pupil", clock() - timedelta(hours=1))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    settings = make_settings(
        school={
            "staff": [{"name": "Priya Shah", "role": "dsl", "email": "dsl@oakfield.example.sch.uk"}]
        },
        web={"port": port, "base_url": base},
        sources=[
            {
                "name": "facebook",
                "platform": "facebook",
                "kind": "own",
                "account": "oakfieldprimary",
                "credentials": {"access_token_env": "VIGIL_TEST_FB_TOKEN"},
                "options": {"api_base": graph.base_url, "page_id": graph.page_id},
            }
        ],
    )
    await upgrade(settings.database_url())
    assert await Daemon(settings, clock=clock).run(once=True) == 0
    assert not graph.comments[rude]["is_hidden"]  # proposed for a moderator, not automatic

    store = Store.open(settings.database_url())
    stop = asyncio.Event()
    server = asyncio.create_task(serve_until(settings, store, clock, stop))
    try:
        school_id = await store.ensure_school(settings.school.slug, settings.school.name, clock())
        for username, role in (("mod.jones", Role.MODERATOR), ("ms.shah", Role.DSL)):
            await add_user(
                store,
                username=username,
                display_name=username.replace(".", " ").title(),
                email=f"{username}@oakfield.example.sch.uk",
                role=role,
                password_hash=auth.hash_password(PASSWORD),
                school_ids=[school_id],
                actor="test",
                now=clock(),
            )
        await _wait_until_serving(port)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=str(CHROMIUM),
                chromium_sandbox=os.geteuid() != 0,
                args=["--no-sandbox"] if os.geteuid() == 0 else [],
            )
            try:
                await _moderator_approves_the_hide(browser, base, shots)
                assert await Daemon(settings, clock=clock).run(once=True) == 0
                assert graph.comments[rude]["is_hidden"]  # carried out on the platform
                await _dsl_acknowledges_and_exports(browser, base, shots)
            finally:
                await browser.close()
    finally:
        stop.set()
        await server
        await store.close()


async def _moderator_approves_the_hide(browser: Browser, base: str, shots: Path) -> None:
    page = await _sign_in(browser, base, "mod.jones")
    assert "my dads friend" not in await page.content()  # safeguarding: the DSL's only
    await page.select_option("#f-flag", "abusive")
    await page.click("form.filters button[type=submit]")
    await page.wait_for_url("**/queue?*flag=abusive*")
    await page.screenshot(path=str(shots / "queue.png"), full_page=True)
    await page.click("table.queue tbody tr a.ugc")
    await page.wait_for_url("**/cases/*")
    assert await page.locator("mark").count() >= 1  # the matched words are highlighted
    await page.screenshot(path=str(shots / "case.png"), full_page=True)
    hide = page.locator("div.action", has_text="Hide").first
    await hide.locator("button", has_text="Approve").click()
    await page.wait_for_load_state()
    assert "approved" in (await page.locator("div.action", has_text="Hide").first.inner_text())


async def _dsl_acknowledges_and_exports(browser: Browser, base: str, shots: Path) -> None:
    page = await _sign_in(browser, base, "ms.shah")
    assert "my dads friend" in await page.content()  # the DSL sees safeguarding cases
    await page.goto(f"{base}/escalations")
    await page.screenshot(path=str(shots / "escalations.png"), full_page=True)
    await page.locator("button", has_text="Acknowledge").first.click()
    await page.wait_for_load_state()
    assert "Ms Shah" in await page.content() or "acknowledged" in (await page.content()).lower()
    await page.goto(f"{base}/audit")
    await page.screenshot(path=str(shots / "audit.png"), full_page=True)
    async with page.expect_download() as info:
        await page.click("a[href^='/audit.csv']")
    download = await info.value
    text = await asyncio.to_thread(Path(await download.path()).read_text)
    rows = list(csv.DictReader(io.StringIO(text)))
    events = {r["event"] for r in rows}
    assert {"action_approved", "escalation_acknowledged"} <= events, events


async def _wait_until_serving(port: int) -> None:
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise AssertionError("the web app never started listening")
