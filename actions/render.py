"""Evidence cards: the post drawn by headless Chromium (or Pillow), with nothing let out.

A ``CardRenderer`` turns a ``CardContent`` into a PNG. ``ChromiumRenderer`` drives one shared
system Chromium through Playwright, started lazily, with at most ``concurrency`` cards at a
time and every card inside ``timeout`` seconds. The page comes from ``templates/card.html``
(Jinja2, autoescape on; post text is never marked safe) through ``page.set_content`` and is
locked down three ways: JavaScript is disabled, a CSP meta allows only inline styles and
``data:`` images, and the browser context is offline with every request routed to an abort
(``blocked_requests`` counts them; it stays 0). Media reach the card only as ``data:`` URIs
of PNGs re-encoded by Pillow (``actions.media.thumbnail_data_uri``).

If the browser dies it is restarted once; after that (or if it cannot start at all) it raises
``RendererUnavailable``. ``make_renderer("auto", ...)`` wraps it in a ``FallbackRenderer``,
which then draws every card with ``PillowRenderer`` (the plain-text Pillow card of
``actions.evidence``) and says so once in the log; ``render_card`` returns the PNG with the
name of the renderer that drew it, which goes into the evidence metadata.

``LiveCapturer`` (off unless ``evidence.live_capture``) screenshots the permalink itself:
https only, only on the platform's own hosts, only to a public address, and the browser may
reach that one host and nothing else. JavaScript stays on for it (platform pages need it).

``EvidencePreparer`` is what the pipeline calls before it writes evidence: fetch media, draw
the card, take the live capture. Suspected sexual imagery of a child gets none of the three.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, Protocol

import jinja2

from actions.evidence import (
    CARD_VERSION,
    CardFields,
    EvidenceSubject,
    draw_text_card,
    load_card_font,
    visible_text,
)
from actions.media import (
    FetchedMedia,
    MediaFetcher,
    MediaRefused,
    Resolver,
    address_refusal,
    check_url,
    media_extension,
    redact_url,
    system_resolver,
    thumbnail_data_uri,
)
from actions.states import ActionError
from connectors.base import require_utc

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page, Playwright, Route

__all__ = [
    "CARD_HTML_VERSION",
    "CHROMIUM_ARGS",
    "PLATFORM_HOSTS",
    "CardContent",
    "CardRenderer",
    "ChromiumRenderer",
    "EvidencePreparer",
    "FallbackRenderer",
    "LiveCaptureRefused",
    "LiveCapturer",
    "PillowRenderer",
    "Prepared",
    "RenderError",
    "RenderFailed",
    "RenderedCard",
    "RendererUnavailable",
    "card_html",
    "make_renderer",
    "render_card",
]

log = logging.getLogger(__name__)

CARD_HTML_VERSION = "card-html/1"
CHROMIUM_ARGS = (
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
CARD_WIDTH = 1000
MAX_CARD_HEIGHT = 4000
_MAX_TEXT_CHARS = 4000
_MAX_TEXT_LINES = 60
_MAX_PARENT_CHARS = 1600
_MAX_PARENT_LINES = 8
_MAX_FIELD_CHARS = 300
_MAX_THUMBNAILS = 4
_LAUNCH_TIMEOUT = 30.0
_THUMB_RE = re.compile(r"data:image/png;base64,[A-Za-z0-9+/]+={0,2}")
_TEMPLATES = Path(__file__).parent / "templates"

# The hosts each platform serves its own pages from (a permalink must be on one of them, or a
# subdomain, to be captured live). Feeds, forums and Mastodon instances have no fixed host.
PLATFORM_HOSTS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "facebook": ("facebook.com",),
        "instagram": ("instagram.com",),
        "x": ("x.com", "twitter.com"),
        "youtube": ("youtube.com",),
        "bluesky": ("bsky.app",),
        "reddit": ("reddit.com",),
    }
)


class RenderError(ActionError):
    """An evidence card could not be rendered."""


class RenderFailed(RenderError):
    """This card could not be rendered (timed out, or the page failed); the browser is fine."""


class RendererUnavailable(RenderError):
    """The browser cannot start, or died again after its one restart."""


class LiveCaptureRefused(RenderError):
    """A live capture of the permalink was refused or failed; the message says why."""


@dataclass(frozen=True, kw_only=True)
class CardContent:
    """Everything a card shows. ``thumbnails`` are ``data:image/png;base64,...`` URIs only."""

    school: str
    platform: str
    external_id: str
    version: int
    author_handle: str | None
    author_name: str | None
    author_id: str | None
    created_at: datetime  # when it was posted
    captured_at: datetime
    text: str
    parent_text: str | None
    permalink: str | None  # shown as text, never as a link
    verdict_summary: str
    thumbnails: tuple[str, ...] = ()
    media_notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "created_at", require_utc(self.created_at, "created_at"))
        object.__setattr__(self, "captured_at", require_utc(self.captured_at, "captured_at"))
        for uri in self.thumbnails:
            if not _THUMB_RE.fullmatch(uri):
                raise RenderError("a card thumbnail must be a data:image/png;base64 URI")

    @classmethod
    def from_subject(
        cls,
        subject: EvidenceSubject,
        *,
        captured_at: datetime,
        thumbnails: Sequence[str] = (),
        media_notes: Sequence[str] = (),
    ) -> CardContent:
        """The card of an evidence subject; refused for suspected child sexual imagery."""
        if subject.child_imagery:
            raise RenderError("suspected sexual imagery of a child is never rendered")
        return cls(
            school=subject.school,
            platform=subject.platform,
            external_id=subject.external_id,
            version=subject.version,
            author_handle=subject.author_handle,
            author_name=subject.author_name,
            author_id=subject.author_id,
            created_at=subject.created_at,
            captured_at=captured_at,
            text=subject.text,
            parent_text=subject.parent_text,
            permalink=subject.permalink,
            verdict_summary=subject.verdict_summary,
            thumbnails=tuple(thumbnails),
            media_notes=tuple(media_notes),
        )


@dataclass(frozen=True, kw_only=True)
class RenderedCard:
    """A card's PNG and the name (with version) of the renderer that drew it."""

    png: bytes
    renderer: str


class CardRenderer(Protocol):
    """Draws evidence cards as PNG."""

    @property
    def name(self) -> str:
        """Renderer and version, recorded in the evidence metadata."""
        ...

    async def render(self, card: CardContent) -> bytes:
        """The card as a PNG."""
        ...

    async def close(self) -> None:
        """Release the renderer's resources (it may be used again afterwards)."""
        ...


async def render_card(renderer: CardRenderer, card: CardContent) -> RenderedCard:
    """Render ``card`` and name the renderer that actually drew it."""
    if isinstance(renderer, FallbackRenderer):
        return await renderer.render_card(card)
    png = await renderer.render(card)
    return RenderedCard(png=png, renderer=renderer.name)


# --- HTML -------------------------------------------------------------------------------


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,  # every value is escaped; nothing of the post is marked safe
        undefined=jinja2.StrictUndefined,
        auto_reload=False,
    )


def card_html(card: CardContent) -> str:
    """The card page: autoescaped, CSP-locked, with no script and no external reference."""
    return (
        _environment()
        .get_template("card.html")
        .render(
            width=CARD_WIDTH,
            max_height=MAX_CARD_HEIGHT,
            fields=_fields(card),
            mono={"Item", "Author id", "Text SHA-256"},
            parent=None
            if card.parent_text is None
            else _limited(card.parent_text, _MAX_PARENT_CHARS, _MAX_PARENT_LINES)[0],
            text=_limited(card.text, _MAX_TEXT_CHARS, _MAX_TEXT_LINES)[0],
            notes=_limited(card.text, _MAX_TEXT_CHARS, _MAX_TEXT_LINES)[1],
            thumbnails=card.thumbnails[:_MAX_THUMBNAILS],
            media_notes=[_clip(n) for n in card.media_notes],
        )
    )


def _fields(card: CardContent) -> list[tuple[str, str]]:
    rows = [
        ("School", card.school),
        ("Platform", card.platform),
        ("Item", f"{card.external_id} (version {card.version})"),
        ("Author", card.author_handle or "-"),
        ("Name", card.author_name or "-"),
        ("Author id", card.author_id or "-"),
        ("Posted", card.created_at.isoformat()),
        ("Captured", card.captured_at.isoformat()),
        ("Permalink", card.permalink or "-"),
        ("Verdict", card.verdict_summary),
        ("Text SHA-256", hashlib.sha256(card.text.encode("utf-8", "surrogatepass")).hexdigest()),
    ]
    return [(label, _clip(value)) for label, value in rows]


def _clip(value: str) -> str:
    value = visible_text(value, keep_newlines=False)
    return value if len(value) <= _MAX_FIELD_CHARS else value[:_MAX_FIELD_CHARS] + "…"


def _limited(text: str, max_chars: int, max_lines: int) -> tuple[str, list[str]]:
    """The first ``max_chars`` / ``max_lines`` of ``text`` (made visible) and a note if cut."""
    lines = text[:max_chars].replace("\r\n", "\n").split("\n")
    shown = visible_text("\n".join(lines[:max_lines]))
    if len(text) <= max_chars and len(lines) <= max_lines:
        return shown, []
    return shown, [f"[truncated: the full text ({len(text)} characters) is in raw.json]"]


# --- Pillow -------------------------------------------------------------------------------


class PillowRenderer:
    """The plain-text Pillow card of ``actions.evidence``, behind the CardRenderer protocol."""

    def __init__(self, *, font_path: Path | None = None) -> None:
        import PIL

        self._font = load_card_font(font_path)
        family, style = self._font.getname()
        self._name = f"pillow-{PIL.__version__} {CARD_VERSION} font={family} {style}"

    @property
    def name(self) -> str:
        """Pillow version, card layout version and font."""
        return self._name

    async def render(self, card: CardContent) -> bytes:
        """Draw the card in a worker thread (Pillow is CPU-bound)."""
        fields: CardFields = card
        return await asyncio.to_thread(draw_text_card, fields, card.captured_at, self._font)

    async def close(self) -> None:
        """Nothing to release."""


# --- Chromium -----------------------------------------------------------------------------


class ChromiumRenderer:
    """Cards drawn by one shared headless system Chromium (see the module docstring).

    ``reuse_pages`` keeps a pool of pages in one locked-down context (fast); otherwise each
    card gets a fresh context (slower, nothing at all carried from card to card).
    """

    def __init__(
        self,
        *,
        executable_path: Path,
        timeout: float = 30.0,
        concurrency: int = 2,
        reuse_pages: bool = True,
        max_restarts: int = 1,
    ) -> None:
        self._path = executable_path
        self._timeout = timeout
        self._reuse = reuse_pages
        self._max_restarts = max_restarts
        self._semaphore = asyncio.Semaphore(concurrency)
        self._lock = asyncio.Lock()
        self._pw: Playwright | None = None
        self._browser: Browser | None = None
        self._context: BrowserContext | None = None
        self._pages: list[Page] = []
        self._generation = 0
        self._restarts = 0
        self._dead: str | None = None
        self.version: str | None = None
        self.blocked_requests = 0  # requests the route stopped; stays 0 for a card page

    @property
    def name(self) -> str:
        """``chromium-<version> card-html/<n>``."""
        return f"chromium-{self.version or 'unstarted'} {CARD_HTML_VERSION}"

    @property
    def restarts(self) -> int:
        """How many times the browser has been restarted after dying."""
        return self._restarts

    async def start(self) -> None:
        """Launch the browser unless it is running; RendererUnavailable if it cannot.

        A browser found dead counts as a crash: it is relaunched once, never twice.
        """
        async with self._lock:
            if self._dead is not None:
                raise RendererUnavailable(self._dead)
            if self._browser is not None:
                if self._browser.is_connected():
                    return
                await self._crashed()
            try:
                await self._launch()
            except Exception as err:
                await self._shutdown()
                self._dead = f"chromium at {self._path} cannot start: {_first_line(err)}"
                raise RendererUnavailable(self._dead) from None

    async def _crashed(self) -> None:
        """Clean up after a dead browser; RendererUnavailable once its restart is used up."""
        await self._shutdown()
        if self._restarts >= self._max_restarts:
            self._dead = f"chromium died again after {self._restarts} restart(s)"
            raise RendererUnavailable(self._dead)
        self._restarts += 1
        log.warning("chromium_died_restarting", extra={"restarts": self._restarts})

    async def _launch(self) -> None:
        from playwright.async_api import async_playwright

        self._pw = await async_playwright().start()
        root = os.geteuid() == 0
        self._browser = await self._pw.chromium.launch(
            executable_path=str(self._path),
            headless=True,
            # Chromium's own sandbox whenever it can run: it cannot as root (tests, containers),
            # where the process's own confinement (the systemd unit) is all there is.
            chromium_sandbox=not root,
            args=[*CHROMIUM_ARGS, *(["--no-sandbox"] if root else [])],
            timeout=max(self._timeout, _LAUNCH_TIMEOUT) * 1000,
        )
        self.version = self._browser.version
        self._generation += 1
        if self._reuse:
            self._context = await self._new_context(self._browser)

    async def _new_context(self, browser: Browser) -> BrowserContext:
        context = await browser.new_context(
            java_script_enabled=False,
            offline=True,
            viewport={"width": CARD_WIDTH, "height": 600},
            device_scale_factor=1,
            service_workers="block",
            accept_downloads=False,
        )
        await context.route("**/*", self._block)
        return context

    async def _block(self, route: Route) -> None:
        self.blocked_requests += 1
        await route.abort("blockedbyclient")

    async def close(self) -> None:
        """Close the browser and Playwright (a later render starts them again)."""
        async with self._lock:
            await self._shutdown()

    async def _shutdown(self) -> None:
        pages, self._pages = self._pages, []
        for closable in (*pages, self._context, self._browser):
            if closable is not None:
                with contextlib.suppress(Exception):
                    await closable.close()
        if self._pw is not None:
            with contextlib.suppress(Exception):
                await self._pw.stop()
        self._pw, self._browser, self._context = None, None, None

    async def render(self, card: CardContent) -> bytes:
        """The card as a PNG, ``CARD_WIDTH`` wide."""
        return await self.render_html(card_html(card))

    async def render_html(self, html: str) -> bytes:
        """Screenshot a self-contained page (used by ``render``; tests feed hostile pages)."""
        async with self._semaphore:
            for _ in range(2):
                await self.start()
                generation = self._generation
                try:
                    async with asyncio.timeout(self._timeout):
                        return await self._shoot(html)
                except TimeoutError:
                    raise RenderFailed(f"card render timed out after {self._timeout:g}s") from None
                except Exception as err:
                    if self._browser is not None and self._browser.is_connected():
                        raise RenderFailed(f"card render failed: {_first_line(err)}") from None
                    await self._after_crash(generation)
            raise RendererUnavailable("chromium died while rendering")

    async def _after_crash(self, generation: int) -> None:
        async with self._lock:
            if generation == self._generation and self._browser is not None:
                await self._crashed()  # else another render has restarted it already

    async def _shoot(self, html: str) -> bytes:
        page, context = await self._page()
        ok = False
        try:
            await page.set_content(html, wait_until="load", timeout=self._timeout * 1000)
            png = await page.screenshot(
                full_page=True, type="png", animations="disabled", timeout=self._timeout * 1000
            )
            ok = True
            return png
        finally:
            if ok and context is None:
                self._pages.append(page)
            else:
                with contextlib.suppress(Exception):
                    await (context or page).close()

    async def _page(self) -> tuple[Page, BrowserContext | None]:
        """A page to draw on, and its own context when it has one (closed after use)."""
        if self._reuse and self._context is not None:
            return (self._pages.pop() if self._pages else await self._context.new_page()), None
        assert self._browser is not None
        context = await self._new_context(self._browser)
        return await context.new_page(), context

    async def screenshot_url(
        self, url: str, *, allow_host: str, storage_state: Path | None
    ) -> bytes:
        """Screenshot ``url`` in a fresh context that may reach ``allow_host`` (https) only."""
        async with self._semaphore:
            await self.start()
            assert self._browser is not None
            context = await self._browser.new_context(
                viewport={"width": CARD_WIDTH, "height": 2000},
                storage_state=str(storage_state) if storage_state else None,
                service_workers="block",
                accept_downloads=False,
            )
            try:
                await context.route("**/*", _only_host(allow_host))
                page = await context.new_page()
                async with asyncio.timeout(self._timeout):
                    await page.goto(url, wait_until="load", timeout=self._timeout * 1000)
                    return await page.screenshot(type="png", timeout=self._timeout * 1000)
            except TimeoutError:
                raise LiveCaptureRefused(
                    f"live capture timed out after {self._timeout:g}s"
                ) from None
            except Exception as err:
                raise LiveCaptureRefused(f"live capture failed: {_first_line(err)}") from None
            finally:
                with contextlib.suppress(Exception):
                    await context.close()


def _only_host(host: str) -> Callable[[Route], Awaitable[None]]:
    async def handle(route: Route) -> None:
        try:
            parsed = check_url(route.request.url, (host,))
        except MediaRefused:
            await route.abort("blockedbyclient")
            return
        if parsed.raw_host.decode("ascii") != host:
            await route.abort("blockedbyclient")
            return
        await route.continue_()

    return handle


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__


class FallbackRenderer:
    """``primary`` (Chromium) until it is unavailable, then ``fallback`` (Pillow) for good.

    A card the primary fails on (a timeout) is drawn by the fallback; the primary stays.
    """

    def __init__(self, primary: CardRenderer, fallback: CardRenderer) -> None:
        self._primary = primary
        self._fallback = fallback
        self._fallen_back = False

    @property
    def name(self) -> str:
        """The name of the renderer cards are currently drawn with."""
        return (self._fallback if self._fallen_back else self._primary).name

    @property
    def fallen_back(self) -> bool:
        """True once the primary has been given up."""
        return self._fallen_back

    async def render_card(self, card: CardContent) -> RenderedCard:
        """Render with the primary, else the fallback; names the one that drew it."""
        if not self._fallen_back:
            try:
                return RenderedCard(
                    png=await self._primary.render(card), renderer=self._primary.name
                )
            except RendererUnavailable as err:
                if not self._fallen_back:
                    self._fallen_back = True
                    log.warning(
                        "card_renderer_fallback",
                        extra={"renderer": self._fallback.name, "reason": str(err)},
                    )
            except RenderFailed as err:
                log.warning("card_render_failed", extra={"reason": str(err)})
        return RenderedCard(png=await self._fallback.render(card), renderer=self._fallback.name)

    async def render(self, card: CardContent) -> bytes:
        """The card as a PNG, from whichever renderer is working."""
        return (await self.render_card(card)).png

    async def close(self) -> None:
        """Close both renderers."""
        await self._primary.close()
        await self._fallback.close()


def make_renderer(
    kind: Literal["auto", "chromium", "pillow"],
    *,
    chromium_path: Path,
    timeout: float = 30.0,
    concurrency: int = 2,
    font_path: Path | None = None,
) -> CardRenderer:
    """The configured renderer: "auto" is Chromium falling back to Pillow; nothing starts yet."""
    if kind == "pillow":
        return PillowRenderer(font_path=font_path)
    chromium = ChromiumRenderer(
        executable_path=chromium_path, timeout=timeout, concurrency=concurrency
    )
    if kind == "chromium":
        return chromium
    if kind != "auto":
        raise RenderError(f"unknown card renderer {kind!r}")
    return FallbackRenderer(chromium, PillowRenderer(font_path=font_path))


# --- live capture -------------------------------------------------------------------------


class LiveCapturer:
    """Screenshots a post's own permalink (see the module docstring for the rules)."""

    def __init__(
        self,
        chromium: ChromiumRenderer,
        *,
        storage_state: Path | None = None,
        resolver: Resolver | None = None,
        platform_hosts: Mapping[str, Sequence[str]] = PLATFORM_HOSTS,
    ) -> None:
        self._chromium = chromium
        self._storage_state = storage_state
        self._resolver = resolver or system_resolver
        self._hosts = platform_hosts

    def target_host(self, platform: str, permalink: str | None) -> str:
        """The permalink's host if it may be captured; LiveCaptureRefused otherwise."""
        if not permalink:
            raise LiveCaptureRefused("the item has no permalink")
        hosts = self._hosts.get(platform)
        if not hosts:
            raise LiveCaptureRefused(f"platform {platform!r} has no known hosts of its own")
        try:
            parsed = check_url(permalink, tuple(hosts))
        except MediaRefused as err:
            raise LiveCaptureRefused(f"permalink refused: {err.reason}") from None
        return parsed.raw_host.decode("ascii")

    async def capture(self, platform: str, permalink: str | None) -> bytes:
        """A PNG screenshot of the permalink; LiveCaptureRefused with the reason otherwise."""
        host = self.target_host(platform, permalink)
        assert permalink is not None
        if self._storage_state is not None and not self._storage_state.is_file():
            raise LiveCaptureRefused(f"storage state {self._storage_state} is not a file")
        try:
            addresses = list(await self._resolver(host, 443))
        except OSError as err:
            raise LiveCaptureRefused(f"cannot resolve {host}: {type(err).__name__}") from None
        refused = [why for why in map(address_refusal, addresses) if why]
        if not addresses or refused:
            raise LiveCaptureRefused(
                f"{host} resolves to {refused[0] if refused else 'no'} address"
            )
        return await self._chromium.screenshot_url(
            permalink, allow_host=host, storage_state=self._storage_state
        )

    async def close(self) -> None:
        """Close the browser used for live captures."""
        await self._chromium.close()


# --- what the pipeline calls --------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Prepared:
    """What is captured beside the payload: card, media, live screenshot, and what was refused."""

    card: bytes | None = None
    renderer: str | None = None
    media: tuple[FetchedMedia, ...] = ()
    live: bytes | None = None
    refusals: tuple[str, ...] = field(default=())  # safe to log: no URL query, no post text


@dataclass(kw_only=True)
class EvidencePreparer:
    """Fetches media, renders the card and takes the live capture for one evidence subject."""

    renderer: CardRenderer | None = None
    fetcher: MediaFetcher | None = None
    live: LiveCapturer | None = None
    max_media: int = 4

    async def prepare(
        self, subject: EvidenceSubject, *, captured_at: datetime, media_urls: Iterable[str] = ()
    ) -> Prepared:
        """Everything but the payload; nothing at all for suspected child sexual imagery."""
        if subject.child_imagery:
            return Prepared()
        refusals: list[str] = []
        media = await self._fetch(list(media_urls)[: self.max_media], refusals)
        rendered = None
        if self.renderer is not None:
            content = CardContent.from_subject(
                subject,
                captured_at=captured_at,
                thumbnails=[uri for m in media if (uri := await _thumbnail(m))],
                media_notes=_media_notes(media, refusals),
            )
            rendered = await render_card(self.renderer, content)
        live = await self._live(subject, refusals)
        return Prepared(
            card=rendered.png if rendered else None,
            renderer=rendered.renderer if rendered else None,
            media=tuple(media),
            live=live,
            refusals=tuple(refusals),
        )

    async def _fetch(self, urls: Sequence[str], refusals: list[str]) -> list[FetchedMedia]:
        if self.fetcher is None or not self.fetcher.enabled:
            return []
        fetched = []
        for number, url in enumerate(urls, 1):
            try:
                fetched.append(await self.fetcher.fetch(url))
            except MediaRefused as err:
                refusals.append(f"media {number} ({redact_url(url)}) not fetched: {err.reason}")
        return fetched

    async def _live(self, subject: EvidenceSubject, refusals: list[str]) -> bytes | None:
        if self.live is None:
            return None
        try:
            return await self.live.capture(subject.platform, subject.permalink)
        except RenderError as err:
            refusals.append(f"live capture not taken: {err}")
            return None

    async def close(self) -> None:
        """Close the renderer and live capturer (browsers) and the media fetcher's client."""
        if self.renderer is not None:
            await self.renderer.close()
        if self.live is not None:
            await self.live.close()
        if self.fetcher is not None:
            await self.fetcher.aclose()


async def _thumbnail(media: FetchedMedia) -> str | None:
    return await asyncio.to_thread(thumbnail_data_uri, media)


def _media_notes(media: Sequence[FetchedMedia], refusals: Sequence[str]) -> list[str]:
    notes = [
        f"media-{i:02d}.{media_extension(m.content_type)}: {m.content_type}, {len(m.data)} bytes,"
        f" SHA-256 {m.sha256}" + ("" if m.is_image else " (video: stored, not shown)")
        for i, m in enumerate(media, 1)
    ]
    return notes + list(refusals)
