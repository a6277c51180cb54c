"""actions.evidence: files, hashes, the chain, hostile ids and text, child imagery."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from actions.evidence import (
    GENESIS_HASH,
    EvidenceError,
    EvidenceFile,
    EvidenceSubject,
    EvidenceWriter,
    chain_hash,
    safe_name,
    verify_record,
    visible_text,
)

CAPTURED = datetime(2025, 3, 1, 12, 5, tzinfo=UTC)
TEXT = "Mr Smith is a disgrace and everyone knows it"
RAW = '{"id": "123_456", "message": "Mr Smith is a disgrace and everyone knows it"}'

SubjectFactory = Callable[..., EvidenceSubject]


@pytest.fixture
def subject() -> SubjectFactory:
    def make(**overrides: Any) -> EvidenceSubject:
        fields: dict[str, Any] = {
            "school": "Oak Primary",
            "platform": "facebook",
            "external_id": "123_456",
            "version": 1,
            "author_handle": "@parent1",
            "author_name": "A Parent",
            "author_id": "987",
            "text": TEXT,
            "permalink": "https://facebook.com/123_456",
            "created_at": datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
            "parent_text": "Photos from the school trip",
            "raw_json": RAW,
            "verdict_summary": "abusive (high): content.aggressive",
            "child_imagery": False,
        }
        fields.update(overrides)
        return EvidenceSubject(**fields)

    return make


@pytest.fixture
def writer(tmp_path: Path) -> EvidenceWriter:
    return EvidenceWriter(tmp_path / "evidence")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_capture_writes_raw_metadata_and_card(
    writer: EvidenceWriter, subject: SubjectFactory, tmp_path: Path
) -> None:
    root = tmp_path / "evidence"
    record = writer.capture(subject(), captured_at=CAPTURED, prev_hash=GENESIS_HASH)

    assert [f.kind for f in record.files] == ["raw", "metadata", "card"]
    assert [f.relpath for f in record.files] == [
        "facebook/123_456/v1/raw.json",
        "facebook/123_456/v1/metadata.json",
        "facebook/123_456/v1/card.png",
    ]
    for item in record.files:
        data = (root / item.relpath).read_bytes()
        assert item.sha256 == sha(data) and item.size == len(data)
    assert (root / record.files[0].relpath).read_text() == RAW  # exactly as given
    with Image.open(root / record.files[2].relpath) as card:
        assert card.format == "PNG" and card.width == 1000
    assert not [p for p in all_files(root) if p.name.startswith(".tmp-")]


def test_metadata_contents(writer: EvidenceWriter, subject: SubjectFactory, tmp_path: Path) -> None:
    record = writer.capture(subject(), captured_at=CAPTURED, prev_hash=GENESIS_HASH)
    on_disk = json.loads((tmp_path / "evidence" / record.files[1].relpath).read_text())
    assert on_disk == dict(record.metadata)
    assert on_disk["platform"] == "facebook" and on_disk["external_id"] == "123_456"
    assert on_disk["author_handle"] == "@parent1" and on_disk["author_id"] == "987"
    assert on_disk["permalink"] == "https://facebook.com/123_456"
    assert on_disk["created_at"] == "2025-03-01T12:00:00+00:00"
    assert on_disk["captured_at"] == "2025-03-01T12:05:00+00:00"
    assert on_disk["text_sha256"] == sha(TEXT.encode())
    assert on_disk["verdict_summary"] == "abusive (high): content.aggressive"
    assert on_disk["renderer"].startswith("pillow-")
    assert TEXT not in json.dumps(on_disk)


def test_entry_hash_is_the_chain_hash(writer: EvidenceWriter, subject: SubjectFactory) -> None:
    first = writer.capture(subject(), captured_at=CAPTURED, prev_hash=GENESIS_HASH)
    assert first.prev_hash == GENESIS_HASH
    assert first.entry_hash == chain_hash(GENESIS_HASH, first.files, first.metadata)
    second = writer.capture(
        subject(version=2, text="edited"), captured_at=CAPTURED, prev_hash=first.entry_hash
    )
    assert second.prev_hash == first.entry_hash
    assert second.entry_hash == chain_hash(first.entry_hash, second.files, second.metadata)
    assert second.files[0].relpath == "facebook/123_456/v2/raw.json"


def test_chain_hash_formula_is_documented() -> None:
    files = [EvidenceFile(kind="raw", relpath="p/i/v1/raw.json", sha256="a" * 64, size=3)]
    canonical = (
        '{"files":[{"kind":"raw","relpath":"p/i/v1/raw.json","sha256":"' + "a" * 64 + '"}],'
        '"metadata":{"x":1}}'
    )
    assert chain_hash(GENESIS_HASH, files, {"x": 1}) == sha((GENESIS_HASH + canonical).encode())


BASE_FILES = (
    EvidenceFile(kind="raw", relpath="p/i/v1/raw.json", sha256="a" * 64, size=3),
    EvidenceFile(kind="card", relpath="p/i/v1/card.png", sha256="b" * 64, size=4),
)
BASE_META = {"external_id": "i", "text_sha256": "c" * 64}
RAW_FILE, CARD_FILE = BASE_FILES
CHANGES = [
    ("prev-hash", "1" * 64, BASE_FILES, BASE_META),
    ("file-sha", GENESIS_HASH, (replace(RAW_FILE, sha256="d" * 64), CARD_FILE), BASE_META),
    ("file-path", GENESIS_HASH, (replace(RAW_FILE, relpath="v2.json"), CARD_FILE), BASE_META),
    ("file-kind", GENESIS_HASH, (replace(RAW_FILE, kind="metadata"), CARD_FILE), BASE_META),
    ("file-dropped", GENESIS_HASH, BASE_FILES[:1], BASE_META),
    ("metadata-value", GENESIS_HASH, BASE_FILES, {**BASE_META, "external_id": "j"}),
    ("metadata-key-added", GENESIS_HASH, BASE_FILES, {**BASE_META, "extra": None}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("prev", "files", "meta"), [pytest.param(*c[1:], id=c[0]) for c in CHANGES]
)
def test_chain_hash_changes_when_any_input_changes(
    prev: str, files: tuple[EvidenceFile, ...], meta: dict[str, Any]
) -> None:
    assert chain_hash(prev, files, meta) != chain_hash(GENESIS_HASH, BASE_FILES, BASE_META)


def test_chain_hash_ignores_file_order_and_size() -> None:
    reordered = (BASE_FILES[1], replace(BASE_FILES[0], size=999))
    assert chain_hash(GENESIS_HASH, reordered, BASE_META) == chain_hash(
        GENESIS_HASH, BASE_FILES, BASE_META
    )


@pytest.mark.parametrize("bad", ["", "0" * 63, "G" * 64, "A" * 64, "0" * 64 + "\n"])
def test_chain_hash_rejects_malformed_prev_hash(bad: str) -> None:
    with pytest.raises(EvidenceError, match="prev_hash"):
        chain_hash(bad, BASE_FILES, BASE_META)


def test_chain_hash_rejects_non_json_metadata() -> None:
    with pytest.raises(EvidenceError, match="plain JSON"):
        chain_hash(GENESIS_HASH, BASE_FILES, {"when": datetime.now(UTC)})


HOSTILE_IDS = [
    "..",
    ".",
    "../../etc/passwd",
    "/etc/passwd",
    "a/../../b",
    "..\\..\\windows",
    "id\x00nul",
    "~user",
    "%2e%2e",
    "ünïcødé/✓",
    "x" * 1000,
    "a:b|c*d?e<f>g",
]


@pytest.mark.parametrize("external_id", HOSTILE_IDS)
def test_hostile_external_ids_stay_inside_their_directory(
    writer: EvidenceWriter, subject: SubjectFactory, tmp_path: Path, external_id: str
) -> None:
    root = (tmp_path / "evidence").resolve()
    record = writer.capture(
        subject(external_id=external_id), captured_at=CAPTURED, prev_hash=GENESIS_HASH
    )
    for item in record.files:
        parts = item.relpath.split("/")
        assert len(parts) == 4 and parts[0] == "facebook" and parts[2] == "v1"
        assert parts[1] not in {"", ".", ".."}
        assert len(parts[1].encode()) < 255
        assert (root / item.relpath).resolve().is_relative_to(root / "facebook")
    assert not (tmp_path / "etc").exists()


def test_safe_name_is_injective_on_tricky_inputs() -> None:
    names = ["a", "A", "%41", "a.b", "a/b", "a%2Fb", "x" * 500, "x" * 501, "x" * 120, "x" * 121]
    encoded = [safe_name(n) for n in names]
    assert len(set(encoded)) == len(names)
    assert all(
        set(e) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-%~")
        for e in encoded
    )
    with pytest.raises(EvidenceError):
        safe_name("")


def test_hostile_platform_is_encoded_too(writer: EvidenceWriter, subject: SubjectFactory) -> None:
    record = writer.capture(subject(platform="../x"), captured_at=CAPTURED, prev_hash=GENESIS_HASH)
    assert record.files[0].relpath.startswith("%2E%2E%2Fx/")


def test_child_imagery_writes_no_card_and_no_text(
    writer: EvidenceWriter, subject: SubjectFactory, tmp_path: Path
) -> None:
    root = tmp_path / "evidence"
    secret = "distinctive words of the post"
    item = subject(
        text=secret,
        raw_json=json.dumps({"id": "123_456", "message": secret, "media": "https://cdn/x.jpg"}),
        parent_text="parent words",
        child_imagery=True,
    )
    record = writer.capture(item, captured_at=CAPTURED, prev_hash=GENESIS_HASH)

    assert [f.kind for f in record.files] == ["raw", "metadata"]
    assert [p.name for p in all_files(root)] == ["metadata.json", "raw.json"]
    for path in all_files(root):
        content = path.read_text()
        assert secret not in content and "parent words" not in content
        assert "cdn/x.jpg" not in content and "A Parent" not in content
    raw = json.loads((root / record.files[0].relpath).read_text())
    assert raw["redacted"] is True
    assert raw["external_id"] == "123_456" and raw["permalink"] == "https://facebook.com/123_456"
    assert record.metadata["text_sha256"] == sha(secret.encode())
    assert record.metadata["child_imagery"] is True
    assert record.metadata["renderer"].startswith("none")
    assert record.entry_hash == chain_hash(GENESIS_HASH, record.files, record.metadata)


def test_recapture_is_idempotent(
    writer: EvidenceWriter, subject: SubjectFactory, tmp_path: Path
) -> None:
    root = tmp_path / "evidence"
    first = writer.capture(subject(), captured_at=CAPTURED, prev_hash=GENESIS_HASH)
    snapshot = {p: p.read_bytes() for p in all_files(root)}
    again = writer.capture(subject(), captured_at=CAPTURED, prev_hash=GENESIS_HASH)
    assert again == first
    assert {p: p.read_bytes() for p in all_files(root)} == snapshot

    later = writer.capture(
        subject(), captured_at=CAPTURED + timedelta(hours=1), prev_hash=GENESIS_HASH
    )
    assert [f.relpath for f in later.files] == [f.relpath for f in first.files]
    assert len(all_files(root)) == 3
    assert later.entry_hash != first.entry_hash


HOSTILE_TEXTS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)> {{7*7}} ${jndi:ldap://x} %s%n",
    "\u202eevil\u202c \x00\x07\x1b[31m red \r\n\t tab",
    "emoji 😀👍🏽 and 中文 العربية",
    "lone surrogate \ud800 here",
    "",
    "no-spaces-" * 400,
    "line\n" * 500,
    "word " * 5000,
]


@pytest.mark.parametrize("text", HOSTILE_TEXTS, ids=range(len(HOSTILE_TEXTS)))
def test_hostile_text_renders_as_text(
    writer: EvidenceWriter, subject: SubjectFactory, tmp_path: Path, text: str
) -> None:
    record = writer.capture(
        subject(text=text, parent_text=text, author_handle=text),
        captured_at=CAPTURED,
        prev_hash=GENESIS_HASH,
    )
    card = tmp_path / "evidence" / record.files[2].relpath
    with Image.open(card) as image:
        image.verify()
    with Image.open(card) as image:
        assert image.height < 2500  # long texts are truncated, not drawn in full


def test_visible_text_escapes_control_and_format_characters() -> None:
    assert visible_text("a\u202eb\x00c\r\nd") == "a\\u202eb\\u0000c\nd"
    assert visible_text("a\nb", keep_newlines=False) == "a b"
    assert visible_text("<script>") == "<script>"


def test_verify_record_detects_tampering(
    writer: EvidenceWriter, subject: SubjectFactory, tmp_path: Path
) -> None:
    root = tmp_path / "evidence"
    record = writer.capture(subject(), captured_at=CAPTURED, prev_hash=GENESIS_HASH)
    verify_record(root, record)
    (root / record.files[0].relpath).write_text('{"id": "forged"}')
    with pytest.raises(EvidenceError, match="changed since capture"):
        verify_record(root, record)


def test_verify_record_detects_a_forged_entry(
    writer: EvidenceWriter, subject: SubjectFactory, tmp_path: Path
) -> None:
    record = writer.capture(subject(), captured_at=CAPTURED, prev_hash=GENESIS_HASH)
    forged = replace(record, prev_hash="1" * 64)
    with pytest.raises(EvidenceError, match="entry hash"):
        verify_record(tmp_path / "evidence", forged)


@pytest.mark.parametrize(
    ("overrides", "kwargs", "match"),
    [
        ({}, {"prev_hash": "nope"}, "prev_hash"),
        ({}, {"captured_at": datetime(2025, 1, 1)}, "timezone-aware"),
        ({"version": -1}, {}, "version"),
        ({"external_id": ""}, {}, "empty"),
    ],
)
def test_capture_rejects_bad_input(
    writer: EvidenceWriter,
    subject: SubjectFactory,
    overrides: dict[str, Any],
    kwargs: dict[str, Any],
    match: str,
) -> None:
    args: dict[str, Any] = {"captured_at": CAPTURED, "prev_hash": GENESIS_HASH, **kwargs}
    with pytest.raises((EvidenceError, ValueError), match=match):
        writer.capture(subject(**overrides), **args)


def test_unwritable_root_raises_evidence_error(subject: SubjectFactory, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(EvidenceError, match="cannot write evidence"):
        EvidenceWriter(blocker).capture(subject(), captured_at=CAPTURED, prev_hash=GENESIS_HASH)


def test_font_path(subject: SubjectFactory, tmp_path: Path) -> None:
    with pytest.raises(EvidenceError, match="font"):
        EvidenceWriter(tmp_path, font_path=tmp_path / "missing.ttf")
    dejavu = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if not dejavu.exists():
        pytest.skip("DejaVu Sans is not installed")
    writer = EvidenceWriter(tmp_path, font_path=dejavu)
    assert "DejaVu Sans" in writer.renderer
    record = writer.capture(subject(), captured_at=CAPTURED, prev_hash=GENESIS_HASH)
    assert record.metadata["renderer"] == writer.renderer
