"""Fetching a post's media for its evidence: allow-listed hosts only, public addresses only.

``MediaFetcher.fetch(url)`` returns the file (bytes, SHA-256, content type) or raises
``MediaRefused`` whose ``reason`` says why, in words safe to log (never the URL's query, which
for platform CDNs is usually a signed token). The rules, in the order they are checked:

- ``https`` only, on the default port, with no user name or password in the URL. Plain ``http``
  is refused everywhere, tests included (an injected transport does not care about the scheme,
  so tests use ``https`` URLs too);
- the host equals an allowed host or is a subdomain of one (``a.fbcdn.net`` matches
  ``fbcdn.net``; ``fbcdn.net.evil.com`` does not); an IP-literal host is refused;
- the host is resolved first and refused if ANY address is private, loopback, link-local,
  multicast, reserved, unspecified or otherwise not global (IPv4-mapped, 6to4 and Teredo IPv6
  addresses are judged by the IPv4 address inside). The request is then sent to the first
  checked address, with the name only in ``Host`` and TLS SNI, so a second DNS answer cannot
  swap in another address (no DNS rebinding). Proxies from the environment are ignored;
- no redirect is followed: any 3xx (and any other non-2xx) is refused;
- ``Content-Type`` must be ``image/*`` or ``video/*`` (``image/svg+xml`` is refused: it can
  carry script);
- the body is streamed and the fetch aborted as soon as it passes ``max_bytes``; the whole
  fetch (resolving included) must finish within ``timeout`` seconds.

The pipeline never calls this for suspected sexual imagery of a child.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import ipaddress
import re
import socket
import warnings
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import httpx
from PIL import Image

from actions.states import ActionError

__all__ = [
    "FetchedMedia",
    "MediaError",
    "MediaFetcher",
    "MediaRefused",
    "Resolver",
    "address_refusal",
    "check_url",
    "host_allowed",
    "media_extension",
    "redact_url",
    "system_resolver",
    "thumbnail_data_uri",
]

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

_USER_AGENT = "Vigil-evidence/1 (school safeguarding evidence capture)"
_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/gif": "gif",
    "image/webp": "webp",
    "image/avif": "avif",
    "image/heic": "heic",
    "video/mp4": "mp4",
    "video/webm": "webm",
    "video/quicktime": "mov",
}
_HOST_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62})(?:\.[a-z0-9-]{1,63})*")
_REFUSED_TYPES = frozenset({"image/svg+xml"})
_THUMB_MAX_PIXELS = 40_000_000  # a decoded image larger than this is not thumbnailed


class MediaError(ActionError):
    """Media could not be fetched."""


class MediaRefused(MediaError):
    """The fetch was refused or failed; ``reason`` is safe to log (it never holds the query)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class FetchedMedia:
    """One fetched media file."""

    source: str  # scheme, host and path of the URL; the query and fragment are dropped
    content_type: str  # e.g. "image/jpeg", parameters removed
    data: bytes
    sha256: str

    @property
    def is_image(self) -> bool:
        """True for ``image/*`` (only images get a thumbnail on the card)."""
        return self.content_type.startswith("image/")


async def system_resolver(host: str, port: int) -> Sequence[str]:
    """Every address ``host`` resolves to, from the system resolver."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class MediaFetcher:
    """Fetches media from allow-listed hosts for evidence (see the module docstring)."""

    def __init__(
        self,
        allowed_hosts: Iterable[str],
        *,
        max_bytes: int,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self._allowed = tuple(_normal_host(h) for h in allowed_hosts if h.strip())
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._resolver = resolver or system_resolver
        self._transport = transport
        self._client: httpx.AsyncClient | None = None  # made at the first fetch

    @property
    def enabled(self) -> bool:
        """False when no host is allowed (nothing can ever be fetched)."""
        return bool(self._allowed)

    async def aclose(self) -> None:
        """Close the HTTP client (a later fetch opens a new one)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self._transport,
                follow_redirects=False,
                trust_env=False,  # an environment proxy would defeat the address check
                timeout=httpx.Timeout(self._timeout),
                headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"},
            )
        return self._client

    async def fetch(self, url: str) -> FetchedMedia:
        """Fetch ``url``; raises MediaRefused with the reason when any rule says no."""
        parsed = check_url(url, self._allowed)
        try:
            async with asyncio.timeout(self._timeout):
                address = await self._resolve(parsed.raw_host.decode("ascii"))
                return await self._get(parsed, address)
        except TimeoutError:
            raise MediaRefused(f"timed out after {self._timeout:g}s") from None
        except httpx.TimeoutException:
            raise MediaRefused(f"timed out after {self._timeout:g}s") from None
        except httpx.HTTPError as err:
            raise MediaRefused(f"request failed: {type(err).__name__}") from None

    async def _resolve(self, host: str) -> str:
        try:
            addresses = list(await self._resolver(host, 443))
        except (OSError, UnicodeError) as err:
            raise MediaRefused(f"cannot resolve {host}: {type(err).__name__}") from None
        if not addresses:
            raise MediaRefused(f"{host} resolves to no address")
        for address in addresses:
            why = address_refusal(address)
            if why is not None:
                raise MediaRefused(f"{host} resolves to {why} address {address}")
        return addresses[0]

    async def _get(self, url: httpx.URL, address: str) -> FetchedMedia:
        host = url.raw_host.decode("ascii")
        pinned = url.copy_with(host=address.split("%", 1)[0])
        client = self._http()
        request = client.build_request(
            "GET", pinned, headers={"Host": host}, extensions={"sni_hostname": host}
        )
        response = await client.send(request, stream=True)
        try:
            content_type = self._check_response(response)
            data = await self._read_limited(response)
        finally:
            await response.aclose()
        return FetchedMedia(
            source=redact_url(str(url)),
            content_type=content_type,
            data=data,
            sha256=hashlib.sha256(data).hexdigest(),
        )

    def _check_response(self, response: httpx.Response) -> str:
        if response.is_redirect or 300 <= response.status_code < 400:
            raise MediaRefused(
                f"redirect ({response.status_code}) refused: redirects are not followed"
            )
        if not response.is_success:
            raise MediaRefused(f"HTTP {response.status_code}")
        header = str(response.headers.get("content-type", ""))
        content_type = header.split(";", 1)[0].strip().lower()
        if not content_type.startswith(("image/", "video/")) or content_type in _REFUSED_TYPES:
            raise MediaRefused(
                f"content type {content_type or 'missing'!r} is not an image or video"
            )
        declared = str(response.headers.get("content-length", ""))
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise MediaRefused(f"too large: {declared} bytes declared, limit {self._max_bytes}")
        return content_type

    async def _read_limited(self, response: httpx.Response) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self._max_bytes:
                raise MediaRefused(f"too large: more than {self._max_bytes} bytes, aborted")
            chunks.append(chunk)
        return b"".join(chunks)


def check_url(url: str, allowed_hosts: Sequence[str]) -> httpx.URL:
    """The parsed URL if its scheme, port, credentials and host pass; else MediaRefused."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise MediaRefused("not a valid URL") from None
    if parsed.scheme != "https":
        raise MediaRefused(f"scheme {parsed.scheme or 'missing'!r} refused: only https is fetched")
    if parsed.userinfo:
        raise MediaRefused("a URL with a user name or password is refused")
    if parsed.port not in (None, 443):
        raise MediaRefused(f"port {parsed.port} refused: only the default https port")
    host = _normal_host(parsed.raw_host.decode("ascii", "replace"))
    if not host:
        raise MediaRefused("the URL has no host")
    if _is_ip(host):
        raise MediaRefused("an IP address as host is refused")
    if not _HOST_RE.fullmatch(host):
        raise MediaRefused("not a valid host name")
    if not host_allowed(host, allowed_hosts):
        raise MediaRefused(f"host {host} is not on the media allow-list")
    return parsed.copy_with(host=host)


def host_allowed(host: str, allowed_hosts: Sequence[str]) -> bool:
    """True when ``host`` equals an allowed host or is a subdomain of one (case-insensitive)."""
    host = _normal_host(host)
    return any(
        host == allowed or host.endswith("." + allowed)
        for allowed in (_normal_host(a) for a in allowed_hosts)
        if allowed
    )


def address_refusal(address: str) -> str | None:
    """Why ``address`` must not be fetched from ("private", "loopback", ...), or None."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "an unparsable"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            inner = address_refusal(str(embedded))
            return None if inner is None else f"{inner} (embedded in {ip})"
    for label in ("loopback", "unspecified", "link_local", "multicast", "reserved", "private"):
        if getattr(ip, f"is_{label}"):
            return label.replace("_", "-")
    return None if ip.is_global else "non-global"


def redact_url(url: str) -> str:
    """``scheme://host/path`` of ``url``: no query, fragment or credentials (safe to log)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "(invalid URL)"
    host = parsed.raw_host.decode("ascii", "replace")
    return f"{parsed.scheme}://{host}{parsed.path}"


def media_extension(content_type: str) -> str:
    """A file extension for a media content type ("bin" when unknown)."""
    return _EXTENSIONS.get(content_type.lower(), "bin")


def thumbnail_data_uri(media: FetchedMedia, *, max_px: int = 320) -> str | None:
    """A small PNG of an image as a ``data:`` URI, re-encoded by Pillow; None if not possible.

    Only the re-encoded PNG ever reaches the card renderer, never the fetched bytes.
    """
    if not media.is_image:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(media.data)) as image:
                if image.width * image.height > _THUMB_MAX_PIXELS:
                    return None
                image.thumbnail((max_px, max_px))
                buffer = io.BytesIO()
                image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB").save(
                    buffer, format="PNG"
                )
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Warning):
        return None
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _normal_host(host: str) -> str:
    return host.strip().lower().rstrip(".")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
