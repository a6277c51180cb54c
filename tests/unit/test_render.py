"""actions.render without a browser: the card HTML, Pillow cards, fallback, refusals, wiring."""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image

from actions.evidence import (
    GENESIS_HASH,
    EvidenceError,
    EvidenceSubject,
    EvidenceWriter,
    verify_record,
)
from actions.media import FetchedMedia
from actions.render import (
    CardContent,
    ChromiumRenderer,
    EvidencePreparer,
    FallbackRenderer,
    LiveCapturer,
    LiveCaptureRefused,
    PillowRenderer,
    Prepared,
    RenderedCard,
    RenderError,
    RendererUnavailable,
    RenderFailed,
    card_html,
    make_renderer,
    render_card,
)
from monitor.pipeline import Pipeline

CAPTURED = datetime(2025, 3, 1, 12, 5, tzinfo=UTC)
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

# The hostile corpus: every one goes into every text field of the card.
HOSTILE = {
    "script": "<script>alert(1)</script>",
    "img-onerror": '"><img src=x onerror="document.title=\'pwned\'">',
    "template": "{{7*7}} {% raw %} {{ config }} {% endraw %} ${7*7} #{7*7}",
    "css": "<style>body{background:url(http://127.0.0.1:1/x)}</style>",
    "link": '<link rel="stylesheet" href="http://127.0.0.1:1/x.css">',
    "meta-refresh": '<meta http-equiv="refresh" content="0;url=http://127.0.0.1:1/">',
    "iframe": '<iframe src="http://127.0.0.1:1/"></iframe><object data="http://x/">',
    "svg": '<svg onload="alert(1)"><image href="http://127.0.0.1:1/i.png"/></svg>',
    "rtl": "abc\u202edcba\u202c txt.exe\u2066x\u2069",
    "zero-width": "pa\u200by\u200cpa\u200dl\ufeff \u2060x",
    "controls": "\x00\x07\x1b[31mred\r\n\ttab",
    "emoji": "emoji 😀👍🏽👨‍👩‍👧 中文 العربية",
    "comment": "--><!-- <![CDATA[ ]]> </textarea></title></style>",
    "huge": "word " * 200_000 + "<script>x</script>",  # 1 MB
}


def content(**overrides: Any) -> CardContent:
    fields: dict[str, Any] = {
        "school": "Oak Primary",
        "platform": "facebook",
        "external_id": "123_456",
        "version": 1,
        "author_handle": "@parent1",
        "author_name": "A Parent",
        "author_id": "987",
        "created_at": datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
        "captured_at": CAPTURED,
        "text": "Mr Smith is a disgrace",
        "parent_text": "Photos from the school trip",
        "permalink": "https://facebook.com/123_456",
        "verdict_summary": "flags: abusive; cells: content.aggressive; severity: high",
    }
    fields.update(overrides)
    return CardContent(**fields)


def hostile_content(text: str) -> CardContent:
    return content(
        text=text, parent_text=text, author_handle=text[:500], author_name=text[:500],
        author_id=text[:500], permalink=text[:500], verdict_summary=text[:500],
        external_id=text[:500] or "x", school=text[:500],
    )  # fmt: skip


class Tags(HTMLParser):
    """Every start tag and its attributes, and every text node."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


ALLOWED_TAGS = {
    *("html", "head", "meta", "title", "style", "body", "h1", "h2"),
    *("table", "tr", "th", "td", "div", "p", "img"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_text_is_only_ever_text_in_the_card_html(name: str) -> None:
    text = HOSTILE[name]
    page = card_html(hostile_content(text))
    parsed = Tags()
    parsed.feed(page)

    assert {tag for tag, _ in parsed.tags} <= ALLOWED_TAGS
    assert [t for t, _ in parsed.tags].count("style") == 1  # only the template's own
    assert [t for t, _ in parsed.tags].count("meta") == 3
    csp = [a for t, a in parsed.tags if t == "meta" and a.get("http-equiv")]
    assert csp == [{"http-equiv": "Content-Security-Policy", "content": CSP}]
    assert all(not key.startswith("on") for _, attrs in parsed.tags for key in attrs)
    assert not [a for t, a in parsed.tags if t == "img"]  # no media: no <img> at all
    assert "http://" not in page.split("<body>", 1)[0].replace("127.0.0.1", "")  # head is ours
    shown = "".join(parsed.text)
    assert "{{7*7}}" in shown if name == "template" else True  # never evaluated


def test_the_post_text_is_shown_literally() -> None:
    page = card_html(content(text=HOSTILE["script"] + " " + HOSTILE["template"]))
    parsed = Tags()
    parsed.feed(page)
    assert "<script>alert(1)</script> {{7*7}} {% raw %}" in "".join(parsed.text)
    assert "&lt;script&gt;" in page and "<script" not in page


def test_bidi_and_zero_width_characters_are_made_visible() -> None:
    page = card_html(content(text=HOSTILE["rtl"] + HOSTILE["zero-width"]))
    assert "\u202e" not in page and "\u200b" not in page and "\ufeff" not in page
    assert "\\u202e" in page and "\\u200b" in page


def test_a_huge_post_is_truncated_with_a_note() -> None:
    text = HOSTILE["huge"]
    page = card_html(content(text=text, parent_text=text))
    assert len(page) < 30_000
    assert f"the full text ({len(text)} characters) is in raw.json" in page


def test_thumbnails_must_be_png_data_uris() -> None:
    ok = "data:image/png;base64,iVBORw0KGgo="
    page = card_html(content(thumbnails=(ok,), media_notes=("media-01.png: image/png",)))
    parsed = Tags()
    parsed.feed(page)
    assert [a["src"] for t, a in parsed.tags if t == "img"] == [ok]
    for bad in [
        "http://127.0.0.1/x.png",
        "https://scontent.xx.fbcdn.net/x.jpg",
        "javascript:alert(1)",
        "data:image/svg+xml;base64,PHN2Zz4=",
        "data:text/html,<script>alert(1)</script>",
        'data:image/png;base64,AAAA" onerror="alert(1)',
    ]:
        with pytest.raises(RenderError, match="thumbnail"):
            content(thumbnails=(bad,))


def subject(**overrides: Any) -> EvidenceSubject:
    fields: dict[str, Any] = {
        "school": "Oak Primary", "platform": "facebook", "external_id": "123_456", "version": 1,
        "author_handle": "@parent1", "author_name": "A Parent", "author_id": "987",
        "text": "Mr Smith is a disgrace", "permalink": "https://facebook.com/123_456",
        "created_at": datetime(2025, 3, 1, 12, 0, tzinfo=UTC), "parent_text": None,
        "raw_json": "{}", "verdict_summary": "flags: abusive", "child_imagery": False,
    }  # fmt: skip
    fields.update(overrides)
    return EvidenceSubject(**fields)


def test_card_content_from_subject() -> None:
    card = CardContent.from_subject(subject(), captured_at=CAPTURED)
    assert card.text == "Mr Smith is a disgrace" and card.captured_at == CAPTURED
    with pytest.raises(RenderError, match="never rendered"):
        CardContent.from_subject(subject(child_imagery=True), captured_at=CAPTURED)
    with pytest.raises(ValueError, match="timezone"):
        content(captured_at=datetime(2025, 1, 1))


@pytest.fixture(scope="module")
def pillow() -> PillowRenderer:
    dejavu = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    return PillowRenderer(font_path=dejavu if dejavu.exists() else None)


@pytest.mark.parametrize("name", list(HOSTILE))
async def test_hostile_corpus_through_the_pillow_card(pillow: PillowRenderer, name: str) -> None:
    png = await pillow.render(hostile_content(HOSTILE[name]))
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.width == 1000 and image.height < 2500
        image.verify()


def test_pillow_renderer_name_matches_the_writer(pillow: PillowRenderer, tmp_path: Path) -> None:
    dejavu = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    writer = EvidenceWriter(tmp_path, font_path=dejavu if dejavu.exists() else None)
    assert pillow.name == writer.renderer and pillow.name.startswith("pillow-")


# --- fallback -----------------------------------------------------------------------------


class Scripted:
    """A renderer that raises the queued errors, then draws b"png-<name>"."""

    def __init__(self, name: str, *errors: Exception) -> None:
        self.name = name
        self.errors = list(errors)
        self.calls = 0
        self.closed = False

    async def render(self, card: CardContent) -> bytes:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return f"png-{self.name}".encode()

    async def close(self) -> None:
        self.closed = True


async def test_fallback_for_good_when_the_browser_is_unavailable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    primary = Scripted("chromium", RendererUnavailable("cannot start"))
    renderer = FallbackRenderer(primary, Scripted("pillow"))
    with caplog.at_level(logging.WARNING, logger="actions.render"):
        first = await renderer.render_card(content())
        second = await renderer.render_card(content())
    assert first == second == RenderedCard(png=b"png-pillow", renderer="pillow")
    assert primary.calls == 1 and renderer.fallen_back and renderer.name == "pillow"
    assert [r.message for r in caplog.records] == ["card_renderer_fallback"]  # logged once


async def test_one_failed_card_falls_back_for_that_card_only() -> None:
    primary = Scripted("chromium", RenderFailed("timed out"))
    renderer = FallbackRenderer(primary, Scripted("pillow"))
    assert (await renderer.render_card(content())).renderer == "pillow"
    assert (await renderer.render_card(content())).renderer == "chromium"
    assert await render_card(renderer, content()) == RenderedCard(
        png=b"png-chromium", renderer="chromium"
    )
    await renderer.close()
    assert primary.closed


async def test_render_card_names_a_plain_renderer() -> None:
    assert await render_card(Scripted("x"), content()) == RenderedCard(png=b"png-x", renderer="x")


def test_make_renderer_kinds(tmp_path: Path) -> None:
    path = tmp_path / "chromium"
    assert isinstance(make_renderer("pillow", chromium_path=path), PillowRenderer)
    assert isinstance(make_renderer("chromium", chromium_path=path), ChromiumRenderer)
    auto = make_renderer("auto", chromium_path=path)
    assert isinstance(auto, FallbackRenderer) and auto.name.startswith("chromium-unstarted")
    with pytest.raises(RenderError, match="unknown"):
        make_renderer("netscape", chromium_path=path)  # type: ignore[arg-type]


# --- evidence writer with pre-rendered cards and media -----------------------------------


def fetched(data: bytes, content_type: str) -> FetchedMedia:
    return FetchedMedia(
        source="https://cdn.example/p", content_type=content_type, data=data,
        sha256=hashlib.sha256(data).hexdigest(),
    )  # fmt: skip


def test_writer_stores_a_prerendered_card_and_media(tmp_path: Path) -> None:
    writer = EvidenceWriter(tmp_path)
    media = [fetched(b"jpeg-bytes", "image/jpeg"), fetched(b"mp4-bytes", "video/mp4")]
    record = writer.capture(
        subject(), captured_at=CAPTURED, prev_hash=GENESIS_HASH,
        card=b"chromium-png", renderer="chromium-156 card-html/1", media=media, live=b"live-png",
    )  # fmt: skip
    kinds = [(f.kind, f.relpath.rsplit("/", 1)[1]) for f in record.files]
    assert kinds == [
        ("raw", "raw.json"), ("metadata", "metadata.json"), ("card", "card.png"),
        ("media", "media-01.jpg"), ("media", "media-02.mp4"), ("live", "live.png"),
    ]  # fmt: skip
    assert (tmp_path / record.files[2].relpath).read_bytes() == b"chromium-png"
    assert (tmp_path / record.files[3].relpath).read_bytes() == b"jpeg-bytes"
    assert record.metadata["renderer"] == "chromium-156 card-html/1"
    assert record.metadata["live_capture"] == "live.png"
    assert record.metadata["media"][1] == {
        "file": "media-02.mp4", "source": "https://cdn.example/p", "content_type": "video/mp4",
        "sha256": hashlib.sha256(b"mp4-bytes").hexdigest(), "size": 9,
    }  # fmt: skip
    verify_record(tmp_path, record)  # every media file is in the chain
    (tmp_path / record.files[4].relpath).write_bytes(b"swapped")
    with pytest.raises(EvidenceError, match="changed since capture"):
        verify_record(tmp_path, record)


def test_writer_refuses_cards_or_media_for_child_imagery(tmp_path: Path) -> None:
    writer = EvidenceWriter(tmp_path)
    child = subject(child_imagery=True)
    for extra in (
        {"card": b"png", "renderer": "x"},
        {"media": [fetched(b"x", "image/png")]},
        {"live": b"png"},
    ):
        with pytest.raises(EvidenceError, match="never rendered or stored"):
            writer.capture(child, captured_at=CAPTURED, prev_hash=GENESIS_HASH, **extra)
    assert not list(tmp_path.rglob("*.*"))
    with pytest.raises(EvidenceError, match="name of its renderer"):
        writer.capture(subject(), captured_at=CAPTURED, prev_hash=GENESIS_HASH, card=b"png")


# --- never for suspected child sexual imagery --------------------------------------------


class NeverRenderer(Scripted):
    async def render(self, card: CardContent) -> bytes:
        raise AssertionError("the renderer must not be called")


async def test_pipeline_never_renders_child_imagery(tmp_path: Path) -> None:
    renderer = NeverRenderer("chromium")
    pipeline = Pipeline(
        store=None, classifier=None, policy=None, evidence=None,  # type: ignore[arg-type]
        capabilities={}, school_name="Oak", school_id=1, clock=lambda: CAPTURED,
        preparer=EvidencePreparer(renderer=renderer),
    )  # fmt: skip
    item = SimpleNamespace(id=1, media=())
    child = subject(child_imagery=True)
    assert await pipeline._prepare(item, child, CAPTURED) == Prepared()  # type: ignore[arg-type]
    assert (
        await EvidencePreparer(renderer=renderer).prepare(child, captured_at=CAPTURED) == Prepared()
    )
    # and the writer then writes no card at all
    record = EvidenceWriter(tmp_path).capture(child, captured_at=CAPTURED, prev_hash=GENESIS_HASH)
    assert [f.kind for f in record.files] == ["raw", "metadata"]


async def test_preparer_renders_with_thumbnails_and_notes() -> None:
    seen: list[CardContent] = []

    class Spy(Scripted):
        async def render(self, card: CardContent) -> bytes:
            seen.append(card)
            return b"png"

    buffer = io.BytesIO()
    Image.new("RGB", (50, 40), "blue").save(buffer, format="PNG")

    class Fetcher:
        enabled = True

        async def fetch(self, url: str) -> FetchedMedia:
            return (
                fetched(buffer.getvalue(), "image/png")
                if "a" in url
                else fetched(b"v", "video/mp4")
            )

        async def aclose(self) -> None:
            pass

    preparer = EvidencePreparer(renderer=Spy("spy"), fetcher=Fetcher())  # type: ignore[arg-type]
    prepared = await preparer.prepare(
        subject(), captured_at=CAPTURED, media_urls=["https://a", "https://v"]
    )
    assert prepared.card == b"png" and prepared.renderer == "spy" and len(prepared.media) == 2
    (card,) = seen
    assert len(card.thumbnails) == 1 and card.thumbnails[0].startswith("data:image/png;base64,")
    assert "video: stored, not shown" in card.media_notes[1]


# --- live capture refusals (no network here: only the refusals are tested) ---------------


class NoBrowser:
    def __init__(self) -> None:
        self.calls = 0

    async def screenshot_url(self, url: str, **kwargs: Any) -> bytes:
        self.calls += 1
        return b"png"

    async def close(self) -> None:
        pass


def capturer(
    addresses: list[str], storage_state: Path | None = None
) -> tuple[LiveCapturer, NoBrowser]:
    browser = NoBrowser()

    async def resolver(host: str, port: int) -> list[str]:
        return addresses

    live = LiveCapturer(browser, storage_state=storage_state, resolver=resolver)  # type: ignore[arg-type]
    return live, browser


@pytest.mark.parametrize(
    ("platform", "permalink", "why"),
    [
        ("facebook", None, "no permalink"),
        ("rss", "https://news.example/story", "no known hosts"),
        ("mastodon", "https://mastodon.social/@a/1", "no known hosts"),
        ("facebook", "http://www.facebook.com/1", "only https"),
        ("facebook", "javascript:alert(1)", "only https"),
        ("facebook", "file:///etc/passwd", "only https"),
        ("facebook", "https://facebook.com.evil.com/1", "not on the media allow-list"),
        ("facebook", "https://www.instagram.com/p/1", "not on the media allow-list"),
        ("facebook", "https://facebook.com@evil.com/1", "user name or password"),
        ("x", "https://x.com:8080/a/status/1", "port 8080"),
    ],
)
async def test_live_capture_refusals(platform: str, permalink: str | None, why: str) -> None:
    live, browser = capturer(["157.240.1.35"])
    with pytest.raises(LiveCaptureRefused, match=why):
        await live.capture(platform, permalink)
    assert browser.calls == 0


async def test_live_capture_refuses_private_addresses_and_missing_state(tmp_path: Path) -> None:
    live, browser = capturer(["157.240.1.35", "127.0.0.1"])
    with pytest.raises(LiveCaptureRefused, match="loopback"):
        await live.capture("facebook", "https://www.facebook.com/1")
    live, browser = capturer(["157.240.1.35"], storage_state=tmp_path / "missing.json")
    with pytest.raises(LiveCaptureRefused, match="not a file"):
        await live.capture("facebook", "https://www.facebook.com/1")
    assert browser.calls == 0
    live, browser = capturer(["157.240.1.35"])
    assert await live.capture("facebook", "https://www.facebook.com/1") == b"png"
    assert live.target_host("x", "https://mobile.twitter.com/a/1") == "mobile.twitter.com"


async def test_live_refusal_is_reported_not_raised() -> None:
    live, _ = capturer(["10.0.0.1"])
    prepared = await EvidencePreparer(live=live).prepare(subject(), captured_at=CAPTURED)
    assert prepared.live is None
    assert prepared.refusals == (
        "live capture not taken: facebook.com resolves to private address",
    )


def test_replace_keeps_validation() -> None:
    with pytest.raises(RenderError):
        replace(content(), thumbnails=("http://x",))
