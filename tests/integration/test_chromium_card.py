"""The Chromium evidence card, drawn by the real headless system Chromium.

One browser for the module. Every hostile text goes through the real renderer; then the same
page is loaded into an identically locked-down context to look inside it: nothing executed,
nothing was requested (the route counter and the request log both stay at zero).
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image
from playwright.async_api import Page
from structlog.testing import capture_logs

from actions.render import (
    MAX_CARD_HEIGHT,
    ChromiumRenderer,
    FallbackRenderer,
    RendererUnavailable,
    RenderFailed,
    card_html,
    make_renderer,
    render_card,
)
from monitor.config import Settings
from monitor.daemon import Daemon
from monitor.store.migrate import upgrade
from tests.conftest import Clock
from tests.unit.test_render import HOSTILE, content, hostile_content

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="system Chromium is not installed"),
    pytest.mark.asyncio(loop_scope="module"),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chromium() -> AsyncIterator[ChromiumRenderer]:
    renderer = ChromiumRenderer(executable_path=CHROMIUM, timeout=30, concurrency=2)
    await renderer.start()
    yield renderer
    await renderer.close()


def decode(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


@dataclass
class Inspector:
    """A page in a context locked down exactly as the renderer's, with a request log."""

    page: Page
    requests: list[str] = field(default_factory=list)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def inspector(chromium: ChromiumRenderer) -> AsyncIterator[Inspector]:
    assert chromium._browser is not None
    context = await chromium._new_context(chromium._browser)  # the renderer's own lockdown
    found = Inspector(page=await context.new_page())
    context.on("request", lambda request: found.requests.append(request.url))
    yield found
    await context.close()


async def look_inside(inspector: Inspector, html: str) -> dict[str, Any]:
    """Load ``html`` into the inspector's page and report what is in it."""
    inspector.requests.clear()
    page = inspector.page
    await page.set_content(html, wait_until="load")
    return {
        "title": await page.title(),
        "scripts": await page.locator("script").count(),
        "images": await page.locator("img").count(),
        "iframes": await page.locator("iframe, object, embed, link, svg").count(),
        "text": await page.locator("body").inner_text(),
        "requests": [u for u in inspector.requests if not u.startswith("data:")],
    }


async def test_a_card_is_a_png_of_the_expected_size(chromium: ChromiumRenderer) -> None:
    png = await chromium.render(content())
    image = decode(png)
    assert image.format == "PNG" and image.width == 1000 and 500 < image.height < 1200
    assert chromium.name.startswith("chromium-") and chromium.version
    assert chromium.name.endswith("card-html/1")
    darkest, lightest = image.convert("L").getextrema()
    assert isinstance(darkest, int) and isinstance(lightest, int)
    assert darkest < 50 and lightest > 200  # there is dark text on a light page


@pytest.mark.parametrize("name", list(HOSTILE))
async def test_hostile_corpus_neither_executes_nor_requests(
    chromium: ChromiumRenderer, inspector: Inspector, name: str
) -> None:
    card = hostile_content(HOSTILE[name])
    before = chromium.blocked_requests
    image = decode(await chromium.render(card))
    assert image.width == 1000 and image.height <= MAX_CARD_HEIGHT
    assert chromium.blocked_requests == before  # the route never saw a request

    inside = await look_inside(inspector, card_html(card))
    assert inside["title"] == "Vigil evidence card"
    assert inside["scripts"] == inside["images"] == inside["iframes"] == 0
    assert inside["requests"] == []
    assert chromium.blocked_requests == before


async def test_hostile_text_is_shown_as_written(inspector: Inspector) -> None:
    text = HOSTILE["script"] + " " + HOSTILE["template"] + " " + HOSTILE["img-onerror"]
    inside = await look_inside(inspector, card_html(content(text=text)))
    assert "<script>alert(1)</script> {{7*7}} {% raw %}" in inside["text"]
    assert "onerror=\"document.title='pwned'\"" in inside["text"]


async def test_a_1mb_post_renders_quickly_and_bounded(chromium: ChromiumRenderer) -> None:
    card = content(text=HOSTILE["huge"], parent_text=HOSTILE["huge"])
    image = decode(await chromium.render(card))
    assert image.width == 1000 and image.height <= MAX_CARD_HEIGHT


async def test_a_thumbnail_is_drawn_from_its_data_uri(chromium: ChromiumRenderer) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (200, 100), (255, 0, 0)).save(buffer, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    before = chromium.blocked_requests
    image = decode(await chromium.render(content(thumbnails=(uri,)))).convert("RGB")
    red = dict((colour, n) for n, colour in image.getcolors(maxcolors=1 << 20) or []).get(
        (255, 0, 0), 0
    )
    assert red >= 200 * 100 * 0.9 and chromium.blocked_requests == before


# --- the lockdown does its job even without the CSP (controls for the checks above) ------

UNSAFE_PAGE = """<!doctype html><html><head><title>before</title>
<link rel="stylesheet" href="http://127.0.0.1:1/x.css"></head>
<body><img src="http://127.0.0.1:1/x.png"><script>document.title = "ran";</script></body></html>"""


async def test_without_the_csp_requests_are_still_stopped_and_script_still_dead(
    chromium: ChromiumRenderer,
) -> None:
    # A fresh context: a page keeps the CSP of the card it showed last (set_content reuses
    # the document), so the shared pages cannot show this.
    assert chromium._browser is not None
    context = await chromium._new_context(chromium._browser)
    try:
        before = chromium.blocked_requests
        inside = await look_inside(Inspector(page=await context.new_page()), UNSAFE_PAGE)
    finally:
        await context.close()
    assert chromium.blocked_requests - before >= 2  # the route saw them and aborted them
    assert inside["title"] == "before"  # JavaScript is disabled: the script never ran


# --- failures, restarts and fallback ------------------------------------------------------


async def test_a_browser_that_dies_is_restarted_once_then_given_up() -> None:
    renderer = ChromiumRenderer(executable_path=CHROMIUM, timeout=30, concurrency=1)
    try:
        await renderer.render(content())
        assert renderer._browser is not None
        await renderer._browser.close()  # the browser dies
        decode(await renderer.render(content()))  # restarted
        assert renderer.restarts == 1
        assert renderer._browser is not None
        await renderer._browser.close()  # and dies again
        with pytest.raises(RendererUnavailable, match="died again"):
            await renderer.render(content())
    finally:
        await renderer.close()


async def test_auto_falls_back_to_pillow_when_chromium_cannot_start(tmp_path: Path) -> None:
    renderer = make_renderer("auto", chromium_path=tmp_path / "no-chromium", timeout=10)
    assert isinstance(renderer, FallbackRenderer)
    try:
        first = await render_card(renderer, content())
        second = await render_card(renderer, content())
    finally:
        await renderer.close()
    assert first.renderer.startswith("pillow-") and second.renderer == first.renderer
    assert decode(first.png).width == 1000 and renderer.fallen_back


async def test_a_card_that_takes_too_long_fails_alone() -> None:
    renderer = ChromiumRenderer(executable_path=CHROMIUM, timeout=0.001, concurrency=1)
    try:
        with pytest.raises(RenderFailed, match="timed out"):
            await renderer.render(content())
        assert renderer._browser is not None and renderer._browser.is_connected()
    finally:
        await renderer.close()


# --- wired into the pipeline --------------------------------------------------------------


async def test_the_daemon_captures_evidence_with_a_chromium_card(
    make_settings: Callable[..., Settings], tmp_path: Path, clock: Clock
) -> None:
    posts = tmp_path / "posts.jsonl"
    text = "You are a worthless fat pig and everyone hates you <script>alert(1)</script>"
    post = {
        "op": "post", "platform": "facebook", "external_id": "c1", "text": text,
        "created_at": "2026-11-02T09:00:00Z", "permalink": "https://www.facebook.com/p/1",
        "media": [{"url": "https://scontent.example/x.jpg?sig=SECRET", "type": "image"}],
    }  # fmt: skip
    posts.write_text(json.dumps(post) + "\n")
    settings = make_settings(
        sources=[{"name": "replay", "platform": "replay", "kind": "own",
                  "options": {"path": str(posts)}}],
        evidence={"renderer": "chromium"},
    )  # fmt: skip
    await upgrade(settings.database_url())
    with capture_logs() as logs:
        assert await Daemon(settings, clock=clock).run(once=True) == 0

    root = settings.under_state(settings.evidence.dir)
    (metadata_file,) = root.rglob("metadata.json")
    metadata = json.loads(metadata_file.read_text())
    assert metadata["renderer"].startswith("chromium-") and metadata["media"] == []
    card = decode((metadata_file.parent / "card.png").read_bytes())
    assert card.width == 1000
    refusals = [e for e in logs if e["event"] == "evidence_refusal"]
    assert [e["reason"] for e in refusals] == [
        "media 1 (https://scontent.example/x.jpg) not fetched: "
        "host scontent.example is not on the media allow-list"
    ]
    assert "SECRET" not in json.dumps(logs, default=str)
