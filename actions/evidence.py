"""Evidence capture: raw payload, metadata and an evidence card, hashed into a chain.

``EvidenceWriter.capture`` writes, under ``root/<platform>/<external id>/v<version>/``:

- ``raw.json``: the platform payload exactly as given;
- ``metadata.json``: ids, author, permalink, times (UTC ISO 8601), SHA-256 of the text, the
  verdict summary and the renderer used;
- ``card.png``: the "evidence card": a PNG rendered beforehand by ``actions.render`` (headless
  Chromium or Pillow) and passed in, else the post drawn as plain text with Pillow here;
- ``media-NN.<ext>``: media fetched beforehand by ``actions.media`` (allow-listed hosts only).

Suspected sexual imagery of a child is never rendered or stored: no card and no media (passing
either is an error), ``raw.json`` is replaced by a redacted stub (ids and permalink only) and the
metadata carries the SHA-256 of the text, never the text.

Path parts are percent-encoded so a hostile external id can never leave its directory. Every
file is written to a temporary name and moved into place, so capturing the same subject again
writes the same paths. Each capture is one entry of a hash chain::

    entry_hash = sha256(prev_hash + canonical_json({"files": [...], "metadata": {...}}))

where ``files`` lists ``{kind, relpath, sha256}`` sorted by ``relpath`` and canonical JSON is
``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=True)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tempfile
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

import PIL
from PIL import Image, ImageDraw, ImageFont, features

from actions.media import FetchedMedia, media_extension
from actions.states import ActionError
from connectors.base import require_utc

__all__ = [
    "GENESIS_HASH",
    "CardFields",
    "EvidenceError",
    "EvidenceFile",
    "EvidenceRecord",
    "EvidenceSubject",
    "EvidenceWriter",
    "chain_hash",
    "draw_text_card",
    "load_card_font",
    "safe_name",
    "verify_record",
    "visible_text",
    "write_atomic",
]

GENESIS_HASH = "0" * 64
METADATA_SCHEMA = 1
CARD_VERSION = "card/1"

_SAFE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_MAX_NAME = 120  # encoded length before a name is shortened with a hash suffix
_HASH_RE = re.compile(r"[0-9a-f]{64}")

_WIDTH = 1000
_MARGIN = 24
_FONT_SIZE = 16
_LINE_HEIGHT = 22
_MAX_TEXT_CHARS = 4000
_MAX_TEXT_LINES = 60
_MAX_PARENT_LINES = 8
_MAX_FIELD_CHARS = 300


class EvidenceError(ActionError):
    """Evidence could not be captured or verified."""


@dataclass(frozen=True, kw_only=True)
class EvidenceSubject:
    """What the pipeline knows about the item whose evidence is captured."""

    school: str
    platform: str
    external_id: str
    version: int
    author_handle: str | None
    author_name: str | None
    author_id: str | None
    text: str
    permalink: str | None
    created_at: datetime
    parent_text: str | None
    raw_json: str
    verdict_summary: str  # must not quote the post: it is kept even for child imagery
    child_imagery: bool


@dataclass(frozen=True, kw_only=True)
class EvidenceFile:
    """One written file: ``kind`` is "raw", "metadata", "card" or "media"; ``relpath`` is under
    root."""

    kind: str
    relpath: str
    sha256: str
    size: int


@dataclass(frozen=True, kw_only=True)
class EvidenceRecord:
    """One entry of the evidence log."""

    files: tuple[EvidenceFile, ...]
    prev_hash: str
    entry_hash: str
    captured_at: datetime
    metadata: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


class EvidenceWriter:
    """Writes evidence files under ``root``; synchronous (run it in a worker thread)."""

    def __init__(self, root: Path, *, font_path: Path | None = None) -> None:
        if not features.check("freetype2"):
            raise EvidenceError("Pillow was built without FreeType; evidence cards need it")
        self._root = root
        self._font = load_card_font(font_path)
        family, style = self._font.getname()
        self.renderer = f"pillow-{PIL.__version__} {CARD_VERSION} font={family} {style}"

    def capture(
        self,
        subject: EvidenceSubject,
        *,
        captured_at: datetime,
        prev_hash: str,
        card: bytes | None = None,
        renderer: str | None = None,
        media: Sequence[FetchedMedia] = (),
        live: bytes | None = None,
    ) -> EvidenceRecord:
        """Write the subject's evidence files and return the chained record.

        ``card`` is a PNG rendered beforehand (by ``actions.render``) and ``renderer`` names
        what rendered it; without one the Pillow card is drawn here. ``media`` are files
        fetched beforehand (``actions.media``), each written as a file of kind "media";
        ``live`` is a screenshot of the permalink itself (kind "live", ``live.png``).
        """
        _check_hash(prev_hash, "prev_hash")
        captured_at = require_utc(captured_at, "captured_at")
        _check_parts(subject, card, renderer, media, live)
        used = renderer if card is not None and renderer else self.renderer
        metadata = self._metadata(subject, captured_at, used, media, live)
        contents = [
            ("raw", "raw.json", _raw_bytes(subject)),
            ("metadata", "metadata.json", _json_bytes(metadata)),
        ]
        if not subject.child_imagery:
            card = draw_text_card(subject, captured_at, self._font) if card is None else card
            contents.append(("card", "card.png", card))
        contents += [("media", _media_name(i, m), m.data) for i, m in enumerate(media, 1)]
        contents += [("live", "live.png", live)] if live is not None else []
        files = self._write_all(_item_dir(subject), contents)
        return EvidenceRecord(
            files=files,
            prev_hash=prev_hash,
            entry_hash=chain_hash(prev_hash, files, metadata),
            captured_at=captured_at,
            metadata=MappingProxyType(metadata),
        )

    def _metadata(
        self,
        subject: EvidenceSubject,
        captured_at: datetime,
        renderer: str,
        media: Sequence[FetchedMedia],
        live: bytes | None,
    ) -> dict[str, Any]:
        if subject.child_imagery:
            renderer = "none: suspected sexual imagery of a child is never rendered"
        return {
            "schema": METADATA_SCHEMA,
            "school": subject.school,
            "platform": subject.platform,
            "external_id": subject.external_id,
            "version": subject.version,
            "author_id": subject.author_id,
            "author_handle": subject.author_handle,
            "author_name": None if subject.child_imagery else subject.author_name,
            "permalink": subject.permalink,
            "created_at": require_utc(subject.created_at, "created_at").isoformat(),
            "captured_at": captured_at.isoformat(),
            "text_sha256": _sha256(subject.text.encode("utf-8", "surrogatepass")),
            "text_chars": len(subject.text),
            "verdict_summary": subject.verdict_summary,
            "renderer": renderer,
            "media": [_media_entry(i, m) for i, m in enumerate(media, 1)],
            "live_capture": None if live is None else "live.png",
            "child_imagery": subject.child_imagery,
            "redacted": subject.child_imagery,
        }

    def _write_all(
        self, reldir: str, contents: Sequence[tuple[str, str, bytes]]
    ) -> tuple[EvidenceFile, ...]:
        directory = self._root / reldir
        try:
            directory.mkdir(parents=True, exist_ok=True)
            files = tuple(
                _write_file(directory, reldir, kind, name, data) for kind, name, data in contents
            )
            _fsync_dir(directory)
        except OSError as err:
            raise EvidenceError(f"cannot write evidence under {directory}: {err}") from err
        return files


def chain_hash(prev_hash: str, files: Sequence[EvidenceFile], metadata: Mapping[str, Any]) -> str:
    """The entry hash that links one evidence record to the one before it."""
    _check_hash(prev_hash, "prev_hash")
    listed = sorted(
        ({"kind": f.kind, "relpath": f.relpath, "sha256": f.sha256} for f in files),
        key=lambda entry: (entry["relpath"], entry["kind"]),
    )
    try:
        canonical = json.dumps(
            {"files": listed, "metadata": dict(metadata)},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=True,
            allow_nan=False,
        )
    except (TypeError, ValueError) as err:
        raise EvidenceError(f"evidence metadata is not plain JSON: {err}") from err
    return _sha256((prev_hash + canonical).encode("ascii"))


def verify_record(root: Path, record: EvidenceRecord) -> None:
    """Raise EvidenceError unless every file still matches its hash and the entry hash holds."""
    for item in record.files:
        path = root / item.relpath
        try:
            data = path.read_bytes()
        except OSError as err:
            raise EvidenceError(f"evidence file {item.relpath} cannot be read: {err}") from err
        if _sha256(data) != item.sha256:
            raise EvidenceError(f"evidence file {item.relpath} has changed since capture")
    if chain_hash(record.prev_hash, record.files, record.metadata) != record.entry_hash:
        raise EvidenceError("evidence entry hash does not match its files and metadata")


def safe_name(value: str) -> str:
    """Encode ``value`` as one path component: only ``[A-Za-z0-9_-]`` and ``%XX`` escapes."""
    if not value:
        raise EvidenceError("an evidence path part cannot be empty")
    encoded = "".join(ch if ch in _SAFE_CHARS else _percent(ch) for ch in value)
    if len(encoded) <= _MAX_NAME:
        return encoded
    # "~" is never produced by the encoding above, so a shortened name cannot collide with
    # a short one.
    return encoded[:80] + "~" + _sha256(value.encode("utf-8", "surrogatepass"))[:32]


def visible_text(text: str, *, keep_newlines: bool = True) -> str:
    """Show control and format characters (bidi overrides, NUL, ...) as ``\\uXXXX`` escapes."""
    text = text.replace("\r\n", "\n").replace("\t", "    ")
    return "".join(_visible_char(ch, keep_newlines) for ch in text)


def _visible_char(ch: str, keep_newlines: bool) -> str:
    if ch == "\n":
        return ch if keep_newlines else " "
    if unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Zl", "Zp"}:
        return f"\\u{ord(ch):04x}"
    return ch


def _percent(ch: str) -> str:
    return "".join(f"%{byte:02X}" for byte in ch.encode("utf-8", "surrogatepass"))


def _item_dir(subject: EvidenceSubject) -> str:
    if isinstance(subject.version, bool) or subject.version < 0:
        raise EvidenceError(f"evidence version must be a non-negative int, got {subject.version}")
    return f"{safe_name(subject.platform)}/{safe_name(subject.external_id)}/v{subject.version}"


def _check_hash(value: str, what: str) -> None:
    if not _HASH_RE.fullmatch(value):
        raise EvidenceError(f"{what} must be 64 lower-case hex digits")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_bytes(value: Mapping[str, Any]) -> bytes:
    return (json.dumps(value, sort_keys=True, indent=2, ensure_ascii=True) + "\n").encode("ascii")


def _raw_bytes(subject: EvidenceSubject) -> bytes:
    if not subject.child_imagery:
        return subject.raw_json.encode("utf-8", "surrogatepass")
    stub = {
        "redacted": True,
        "reason": "suspected sexual imagery of a child: payload not stored",
        "platform": subject.platform,
        "external_id": subject.external_id,
        "author_id": subject.author_id,
        "permalink": subject.permalink,
    }
    return _json_bytes(stub)


def _check_parts(
    subject: EvidenceSubject,
    card: bytes | None,
    renderer: str | None,
    media: Sequence[FetchedMedia],
    live: bytes | None,
) -> None:
    if subject.child_imagery and (card is not None or media or live is not None):
        raise EvidenceError("suspected sexual imagery of a child is never rendered or stored")
    if card is not None and not renderer:
        raise EvidenceError("a pre-rendered card needs the name of its renderer")


def _media_name(index: int, media: FetchedMedia) -> str:
    return f"media-{index:02d}.{media_extension(media.content_type)}"


def _media_entry(index: int, media: FetchedMedia) -> dict[str, Any]:
    return {
        "file": _media_name(index, media),
        "source": media.source,  # scheme, host and path: the query (often signed) is dropped
        "content_type": media.content_type,
        "sha256": media.sha256,
        "size": len(media.data),
    }


def _write_file(directory: Path, reldir: str, kind: str, name: str, data: bytes) -> EvidenceFile:
    write_atomic(directory / name, data)
    return EvidenceFile(kind=kind, relpath=f"{reldir}/{name}", sha256=_sha256(data), size=len(data))


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then move it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- the evidence card -------------------------------------------------------------------


class CardFields(Protocol):
    """What an evidence card shows; ``EvidenceSubject`` and ``actions.render.CardContent``."""

    @property
    def school(self) -> str: ...
    @property
    def platform(self) -> str: ...
    @property
    def external_id(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def author_handle(self) -> str | None: ...
    @property
    def author_name(self) -> str | None: ...
    @property
    def author_id(self) -> str | None: ...
    @property
    def text(self) -> str: ...
    @property
    def permalink(self) -> str | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def parent_text(self) -> str | None: ...
    @property
    def verdict_summary(self) -> str: ...


def load_card_font(font_path: Path | None) -> ImageFont.FreeTypeFont:
    """The Pillow card's font: ``font_path`` (TrueType), else Pillow's default; basic layout."""
    # BASIC layout: no bidi or shaping, so text is drawn in the order it was written (a
    # right-to-left override cannot reorder it) and cards are the same on every host.
    basic = ImageFont.Layout.BASIC
    if font_path is None:
        default = ImageFont.load_default(size=_FONT_SIZE)
        if not isinstance(default, ImageFont.FreeTypeFont):  # only without FreeType
            raise EvidenceError("Pillow's default font is not a FreeType font")
        return default.font_variant(layout_engine=basic)
    try:
        return ImageFont.truetype(str(font_path), _FONT_SIZE, layout_engine=basic)
    except OSError as err:
        raise EvidenceError(f"cannot load evidence card font {font_path}: {err}") from err


def draw_text_card(
    subject: CardFields, captured_at: datetime, font: ImageFont.FreeTypeFont
) -> bytes:
    """The Pillow evidence card: every field and the post drawn as plain text, as a PNG."""
    lines = _card_lines(subject, captured_at, font)
    height = 2 * _MARGIN + _LINE_HEIGHT * len(lines)
    image = Image.new("RGB", (_WIDTH, height), "white")
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(lines):
        draw.text((_MARGIN, _MARGIN + row * _LINE_HEIGHT), line, font=font, fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _card_lines(
    subject: CardFields, captured_at: datetime, font: ImageFont.FreeTypeFont
) -> list[str]:
    width = _WIDTH - 2 * _MARGIN
    header = [
        "VIGIL EVIDENCE CARD (post drawn as plain text)",
        f"School: {subject.school}",
        f"Platform: {subject.platform}   Item: {subject.external_id}   Version: {subject.version}",
        f"Author: {_or_dash(subject.author_handle)}   Name: {_or_dash(subject.author_name)}"
        f"   Id: {_or_dash(subject.author_id)}",
        f"Posted: {require_utc(subject.created_at, 'created_at').isoformat()}",
        f"Captured: {captured_at.isoformat()}",
        f"Permalink: {_or_dash(subject.permalink)}",
        f"Verdict: {subject.verdict_summary}",
        f"Text SHA-256: {_sha256(subject.text.encode('utf-8', 'surrogatepass'))}",
    ]
    lines = [row for field_ in header for row in _wrap(_clip(field_), font, width)]
    if subject.parent_text:
        lines += ["", "In reply to:"]
        lines += _limited(subject.parent_text, font, width, _MAX_PARENT_LINES)
    lines += ["", "Post text:", *_limited(subject.text, font, width, _MAX_TEXT_LINES)]
    return lines


def _limited(text: str, font: ImageFont.FreeTypeFont, width: int, max_lines: int) -> list[str]:
    max_chars = min(_MAX_TEXT_CHARS, 200 * max_lines)
    lines = _wrap(visible_text(text[:max_chars]), font, width, max_lines + 1)
    if len(text) <= max_chars and len(lines) <= max_lines:
        return lines
    note = f"[truncated: the full text ({len(text)} characters) is in raw.json]"
    return [*lines[:max_lines], note]


def _clip(value: str) -> str:
    value = visible_text(value, keep_newlines=False)
    return value if len(value) <= _MAX_FIELD_CHARS else value[:_MAX_FIELD_CHARS] + "…"


def _or_dash(value: str | None) -> str:
    return value if value else "-"


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int, max_lines: int = 1000) -> list[str]:
    lines: list[str] = []
    for paragraph in text.split("\n"):
        lines.extend(_wrap_paragraph(paragraph, font, width))
        if len(lines) >= max_lines:
            return lines[:max_lines]
    return lines


def _wrap_paragraph(paragraph: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    # Words are measured one at a time (measuring is the slow part); a space never kerns.
    space = font.getlength(" ")
    lines: list[str] = []
    current, current_width = "", 0.0
    for word in paragraph.split(" "):
        word_width = font.getlength(word)
        if not current or current_width + space + word_width > width:
            if current:
                lines.append(current)
            *full, current = _break_word(word, font, width) if word_width > width else [word]
            lines.extend(full)
            current_width = font.getlength(current)
            continue
        current, current_width = f"{current} {word}", current_width + space + word_width
    lines.append(current)
    return lines


def _break_word(word: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    # Measuring is the slow part, so only a prefix that could possibly fit is measured: no
    # glyph of a readable font is narrower than 2px (zero-width ones just pack less densely).
    pieces: list[str] = []
    limit = max(1, width // 2)
    while True:
        cut = _longest_fit(word[:limit], font, width)
        if cut >= len(word):
            return [*pieces, word]
        pieces.append(word[:cut])
        word = word[cut:]


def _longest_fit(word: str, font: ImageFont.FreeTypeFont, width: int) -> int:
    """Length of the longest prefix of ``word`` that fits (at least one character)."""
    low, high = 1, len(word)
    while low < high:
        middle = (low + high + 1) // 2
        if font.getlength(word[:middle]) <= width:
            low = middle
        else:
            high = middle - 1
    return low
