"""actions.media: the allow-listed, public-address-only media fetcher, and its pipeline guard."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import socket
import struct
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from PIL import Image

from actions.evidence import EvidenceSubject
from actions.media import (
    FetchedMedia,
    MediaFetcher,
    MediaRefused,
    address_refusal,
    host_allowed,
    media_extension,
    redact_url,
    thumbnail_data_uri,
)
from actions.render import EvidencePreparer, Prepared
from monitor.pipeline import Pipeline

ALLOWED = ("fbcdn.net", "pbs.twimg.com")
PUBLIC = "93.184.216.34"
URL = "https://scontent.xx.fbcdn.net/v/t39/photo.jpg?oh=SIGNED-TOKEN&oe=123"
JPEG = b"\xff\xd8\xff\xe0" + b"x" * 100


@dataclass
class Net:
    """A fake DNS and web: what was resolved and what was requested."""

    dns: dict[str, list[str]] = field(default_factory=dict)
    resolved: list[str] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    respond: Callable[[httpx.Request], httpx.Response] = lambda request: httpx.Response(
        200, headers={"content-type": "image/jpeg"}, content=JPEG
    )

    async def resolver(self, host: str, port: int) -> Sequence[str]:
        self.resolved.append(host)
        if host not in self.dns:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.dns[host]

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.respond(request)


@pytest.fixture
def net() -> Net:
    return Net(dns={"scontent.xx.fbcdn.net": [PUBLIC], "pbs.twimg.com": [PUBLIC]})


def fetcher_for(net: Net, *, max_bytes: int = 1000, timeout: float = 5.0) -> MediaFetcher:
    return MediaFetcher(
        ALLOWED,
        max_bytes=max_bytes,
        timeout=timeout,
        transport=httpx.MockTransport(net.handler),
        resolver=net.resolver,
    )


async def refused(net: Net, url: str, **kwargs: Any) -> str:
    fetcher = fetcher_for(net, **kwargs)
    try:
        with pytest.raises(MediaRefused) as caught:
            await fetcher.fetch(url)
    finally:
        await fetcher.aclose()
    assert "SIGNED-TOKEN" not in caught.value.reason
    return caught.value.reason


async def test_allowed_host_is_fetched_from_its_checked_address(net: Net) -> None:
    fetcher = fetcher_for(net)
    media = await fetcher.fetch(URL)
    await fetcher.aclose()

    assert media.data == JPEG and media.sha256 == hashlib.sha256(JPEG).hexdigest()
    assert media.content_type == "image/jpeg" and media.is_image
    assert media.source == "https://scontent.xx.fbcdn.net/v/t39/photo.jpg"  # no signed query
    (request,) = net.requests
    # pinned to the address that was checked; the name only in Host and TLS SNI
    assert request.url.host == PUBLIC and request.url.query == b"oh=SIGNED-TOKEN&oe=123"
    assert request.headers["host"] == "scontent.xx.fbcdn.net"
    assert request.extensions["sni_hostname"] == "scontent.xx.fbcdn.net"
    assert "cookie" not in request.headers and "authorization" not in request.headers


async def test_video_is_fetched_but_not_thumbnailed(net: Net) -> None:
    net.respond = lambda r: httpx.Response(200, headers={"content-type": "video/mp4"}, content=b"v")
    fetcher = fetcher_for(net)
    media = await fetcher.fetch("https://pbs.twimg.com/v.mp4")
    await fetcher.aclose()
    assert media.content_type == "video/mp4" and not media.is_image
    assert thumbnail_data_uri(media) is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://evil.example/x.jpg", "not on the media allow-list"),
        ("https://fbcdn.net.evil.com/x.jpg", "not on the media allow-list"),
        ("https://evilfbcdn.net/x.jpg", "not on the media allow-list"),
        ("https://twimg.com/x.jpg", "not on the media allow-list"),  # parent of an allowed host
        ("http://scontent.xx.fbcdn.net/x.jpg", "only https"),
        ("ftp://scontent.xx.fbcdn.net/x.jpg", "only https"),
        ("https://fbcdn.net@evil.com/x.jpg", "user name or password"),
        ("https://u:p@scontent.xx.fbcdn.net/x.jpg", "user name or password"),
        ("https://scontent.xx.fbcdn.net:8443/x.jpg", "port 8443"),
        ("https://127.0.0.1/x.jpg", "IP address"),
        ("https://[::1]/x.jpg", "IP address"),
        ("not a url", "only https"),
        ("https://", "no host"),
        ("https://a b/", "not a valid host name"),
        ("https://%5Bzz/", "not a valid host name"),
    ],
)
async def test_urls_refused_before_any_lookup(net: Net, url: str, why: str) -> None:
    assert why in await refused(net, url)
    assert net.resolved == [] and net.requests == []


async def test_host_match_is_case_insensitive_and_ignores_a_trailing_dot(net: Net) -> None:
    fetcher = fetcher_for(net)
    media = await fetcher.fetch("https://SCONTENT.xx.FBCDN.net./p.jpg")
    await fetcher.aclose()
    assert media.data == JPEG and net.resolved == ["scontent.xx.fbcdn.net"]


NON_PUBLIC = [
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.10", "private"),
    ("127.0.0.1", "loopback"),
    ("169.254.169.254", "link-local"),  # cloud metadata
    ("224.0.0.1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("0.0.0.0", "unspecified"),
    ("100.64.0.1", "non-global"),  # carrier-grade NAT
    ("::1", "loopback"),
    ("fe80::1%eth0", "link-local"),
    ("fc00::1", "private"),
    ("ff02::1", "multicast"),
    ("::", "unspecified"),
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
    ("2002:a00:1::1", "private"),  # 6to4 around 10.0.0.1
    ("not-an-ip", "unparsable"),
]


@pytest.mark.parametrize(("address", "why"), NON_PUBLIC)
async def test_non_public_addresses_are_refused_without_a_request(
    net: Net, address: str, why: str
) -> None:
    net.dns["scontent.xx.fbcdn.net"] = [address]
    assert why in await refused(net, URL)
    assert net.requests == []


async def test_any_non_public_address_among_several_is_refused(net: Net) -> None:
    net.dns["scontent.xx.fbcdn.net"] = [PUBLIC, "2606:2800:220:1::1", "10.0.0.7"]
    assert "private address 10.0.0.7" in await refused(net, URL)
    assert net.requests == []


@pytest.mark.parametrize(("address", "why"), NON_PUBLIC)
def test_address_refusal(address: str, why: str) -> None:
    assert why in (address_refusal(address) or "")


@pytest.mark.parametrize("address", [PUBLIC, "8.8.8.8", "2606:2800:220:1::1"])
def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(address) is None


async def test_unresolvable_host_is_refused(net: Net) -> None:
    del net.dns["scontent.xx.fbcdn.net"]
    assert "cannot resolve scontent.xx.fbcdn.net" in await refused(net, URL)
    net.dns["scontent.xx.fbcdn.net"] = []
    assert "no address" in await refused(net, URL)
    assert net.requests == []


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirects_are_refused_not_followed(net: Net, status: int) -> None:
    net.respond = lambda r: httpx.Response(status, headers={"location": "http://127.0.0.1/x"})
    assert f"redirect ({status})" in await refused(net, URL)
    assert len(net.requests) == 1  # the Location was never requested


async def test_http_errors_are_refused(net: Net) -> None:
    net.respond = lambda r: httpx.Response(404)
    assert await refused(net, URL) == "HTTP 404"


async def test_declared_oversize_is_refused(net: Net) -> None:
    net.respond = lambda r: httpx.Response(
        200, headers={"content-type": "image/jpeg"}, content=b"x" * 1001
    )
    assert "1001 bytes declared, limit 1000" in await refused(net, URL)


async def test_undeclared_oversize_stream_is_aborted_early(net: Net) -> None:
    sent: list[int] = []

    class Endless(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            for n in range(1000):
                sent.append(n)
                yield b"x" * 300

    net.respond = lambda r: httpx.Response(
        200, headers={"content-type": "image/png"}, stream=Endless()
    )
    assert "more than 1000 bytes, aborted" in await refused(net, URL)
    assert len(sent) <= 5  # stopped reading as soon as the limit was passed


@pytest.mark.parametrize(
    "content_type", ["text/html", "application/octet-stream", "image/svg+xml", ""]
)
async def test_wrong_content_type_is_refused(net: Net, content_type: str) -> None:
    headers = {"content-type": content_type} if content_type else {}
    net.respond = lambda r: httpx.Response(200, headers=headers, content=b"<svg onload=x>")
    assert "is not an image or video" in await refused(net, URL)


async def test_content_type_parameters_are_dropped(net: Net) -> None:
    net.respond = lambda r: httpx.Response(
        200, headers={"content-type": "Image/JPEG; charset=binary"}, content=JPEG
    )
    fetcher = fetcher_for(net)
    assert (await fetcher.fetch(URL)).content_type == "image/jpeg"
    await fetcher.aclose()


async def test_a_slow_lookup_times_out(net: Net) -> None:
    never = asyncio.Event()

    async def stuck(host: str, port: int) -> Sequence[str]:
        await never.wait()
        return [PUBLIC]

    fetcher = MediaFetcher(
        ALLOWED, max_bytes=1000, timeout=0.01, transport=httpx.MockTransport(net.handler),
        resolver=stuck,
    )  # fmt: skip
    with pytest.raises(MediaRefused, match=r"timed out after 0\.01s"):
        await fetcher.fetch(URL)
    assert net.requests == []


async def test_a_transport_timeout_is_refused(net: Net) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    net.respond = slow
    assert "timed out" in await refused(net, URL)


async def test_connection_failures_are_refused(net: Net) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    net.respond = down
    assert await refused(net, URL) == "request failed: ConnectError"


def test_no_allowed_hosts_disables_the_fetcher() -> None:
    assert not MediaFetcher([], max_bytes=1, timeout=1).enabled
    assert MediaFetcher(["fbcdn.net"], max_bytes=1, timeout=1).enabled


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("fbcdn.net", True),
        ("a.b.fbcdn.net", True),
        ("FBCDN.NET.", True),
        ("fbcdn.net.evil.com", False),
        ("xfbcdn.net", False),
        ("net", False),
        ("", False),
    ],
)
def test_host_allowed(host: str, ok: bool) -> None:
    assert host_allowed(host, ("fbcdn.net", "")) is ok


def test_redact_url_and_extension() -> None:
    assert redact_url("https://u:p@h.example/a/b.jpg?sig=1#f") == "https://h.example/a/b.jpg"
    assert redact_url("::::") == "(invalid URL)" or redact_url("::::").startswith("://")
    assert media_extension("image/jpeg") == "jpg" and media_extension("video/x-odd") == "bin"


def png_bytes(size: tuple[int, int] = (800, 600)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "red").save(buffer, format="PNG")
    return buffer.getvalue()


def media_of(data: bytes, content_type: str = "image/png") -> FetchedMedia:
    return FetchedMedia(
        source="https://x/y", content_type=content_type, data=data,
        sha256=hashlib.sha256(data).hexdigest(),
    )  # fmt: skip


def test_thumbnail_is_a_small_reencoded_png() -> None:
    uri = thumbnail_data_uri(media_of(png_bytes()))
    assert uri is not None and uri.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as thumb:
        assert thumb.format == "PNG" and max(thumb.size) == 320


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG that declares enormous dimensions (a decompression bomb's first bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    )  # fmt: skip


@pytest.mark.parametrize(
    "data", [b"not an image", JPEG, huge_png_header(100_000, 100_000), b""], ids=range(4)
)
def test_thumbnail_of_bad_or_huge_images_is_none(data: bytes) -> None:
    assert thumbnail_data_uri(media_of(data)) is None


# --- never for suspected child sexual imagery --------------------------------------------


class SpyFetcher:
    enabled = True

    def __init__(self) -> None:
        self.urls: list[str] = []

    async def fetch(self, url: str) -> FetchedMedia:
        self.urls.append(url)
        return media_of(png_bytes((10, 10)))

    async def aclose(self) -> None:
        pass


def subject(*, child_imagery: bool) -> EvidenceSubject:
    return EvidenceSubject(
        school="Oak", platform="facebook", external_id="1", version=1, author_handle="@a",
        author_name="A", author_id="9", text="words", permalink="https://facebook.com/1",
        created_at=datetime(2025, 1, 1, tzinfo=UTC), parent_text=None, raw_json="{}",
        verdict_summary="flags: safeguarding", child_imagery=child_imagery,
    )  # fmt: skip


MEDIA = (
    {"url": "https://scontent.xx.fbcdn.net/a.jpg", "type": "image"},
    {"url": "https://video.twimg.com/b.mp4", "type": "video"},
    {"url": "https://news.example/article", "type": "link"},
)


def pipeline_with(preparer: EvidencePreparer) -> Pipeline:
    return Pipeline(
        store=None, classifier=None, policy=None, evidence=None,  # type: ignore[arg-type]
        capabilities={}, school_name="Oak", school_id=1, clock=lambda: datetime.now(UTC),
        preparer=preparer,
    )  # fmt: skip


async def test_pipeline_never_fetches_media_for_child_imagery() -> None:
    spy = SpyFetcher()
    pipeline = pipeline_with(EvidencePreparer(fetcher=spy))  # type: ignore[arg-type]
    item = SimpleNamespace(id=1, media=MEDIA)
    now = datetime(2025, 1, 2, tzinfo=UTC)

    prepared = await pipeline._prepare(item, subject(child_imagery=True), now)  # type: ignore[arg-type]
    assert prepared == Prepared() and spy.urls == []

    prepared = await pipeline._prepare(item, subject(child_imagery=False), now)  # type: ignore[arg-type]
    assert spy.urls == [MEDIA[0]["url"], MEDIA[1]["url"]]  # images and videos, never links
    assert len(prepared.media) == 2


async def test_preparer_itself_refuses_child_imagery_too() -> None:
    spy = SpyFetcher()
    preparer = EvidencePreparer(fetcher=spy)  # type: ignore[arg-type]
    now = datetime(2025, 1, 2, tzinfo=UTC)
    urls = [MEDIA[0]["url"]]
    assert (
        await preparer.prepare(subject(child_imagery=True), captured_at=now, media_urls=urls)
        == Prepared()
    )
    assert spy.urls == []


async def test_refusals_are_reported_without_the_query(net: Net) -> None:
    preparer = EvidencePreparer(fetcher=fetcher_for(net))
    prepared = await preparer.prepare(
        subject(child_imagery=False),
        captured_at=datetime(2025, 1, 2, tzinfo=UTC),
        media_urls=[URL, "https://evil.example/p.jpg?token=SIGNED-TOKEN"],
    )
    await preparer.close()
    assert len(prepared.media) == 1
    (reason,) = prepared.refusals
    assert reason.startswith("media 2 (https://evil.example/p.jpg) not fetched: host evil.example")
    assert "SIGNED-TOKEN" not in reason
