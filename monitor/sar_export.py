"""`vigil export --author HANDLE --out FILE`: a subject access request (UK GDPR Art. 15).

Writes a ZIP holding ``subject-access.json`` (every item the school holds by that handle, on
any platform, with its versions, verdicts, case, actions, escalation states and evidence
entries, and the audit entries about them) and ``evidence/<relpath>`` for each evidence file
of those items. The file is never overwritten, and the export is audited (``sar_export``:
the file's name and SHA-256, the item ids and a SHA-256 of the handle, never the handle).
Nothing is printed or logged but counts.

The archive is for the school's data protection lead, who reviews it before disclosing it:
it names staff (who acted, and why) and may hold other people's data, and exemptions (crime,
safeguarding) may apply.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from actions.custody import safe_relpath
from monitor.config import Settings
from monitor.store import Store
from monitor.store.subject_access import SubjectRecords, normalise_handle, subject_records

__all__ = [
    "DATA_MEMBER",
    "EXPORT_FORMAT",
    "SAR_EVENT",
    "SarArchive",
    "SarOutcome",
    "build_archive",
    "export_author",
]

EXPORT_FORMAT = "vigil-subject-access/1"
SAR_EVENT = "sar_export"
DATA_MEMBER = "subject-access.json"
REVIEW_NOTE = (
    "Review before disclosing: this holds what Vigil stored about the posts of this handle, "
    "including the names of staff who acted on them, and exemptions may apply. Case notes, "
    "escalation recipients and the DSL's outcomes are not included."
)


@dataclass(frozen=True, kw_only=True)
class SarOutcome:
    """What ``export_author`` wrote."""

    path: Path
    sha256: str
    size: int
    items: int
    files_included: int
    files_missing: int


@dataclass(frozen=True, kw_only=True)
class SarArchive:
    """A built subject access ZIP, in memory."""

    data: bytes
    files_included: int
    files_missing: int


async def export_author(
    settings: Settings,
    handle: str,
    out: Path,
    *,
    actor: str,
    now: datetime | None = None,
) -> SarOutcome:
    """Write the subject access ZIP for ``handle`` to ``out`` (never overwriting) and audit it.

    Raises FileExistsError when ``out`` exists and ValueError for an empty handle.
    """
    if not normalise_handle(handle):
        raise ValueError("give the author's handle")
    if await asyncio.to_thread(out.exists):
        raise FileExistsError(f"{out} already exists; it is never overwritten")
    now = now or datetime.now(UTC)
    store = Store.open(settings.database_url())
    try:
        school_id = await store.ensure_school(settings.school.slug, settings.school.name, now)
        records = await subject_records(store, school_id, handle)
        root = settings.under_state(settings.evidence.dir)
        archive = await asyncio.to_thread(
            build_archive, records, root, handle=handle, exported_at=now, exported_by=actor
        )
        await asyncio.to_thread(_write_new, out, archive.data)
        outcome = _outcome(out, records, archive)
        await store.audit(
            school_id=school_id,
            actor=actor,
            event=SAR_EVENT,
            subject_type="author",
            subject_id=None,
            detail=_audit_detail(outcome, records, handle),
            now=now,
        )
    finally:
        await store.close()
    return outcome


def build_archive(
    records: SubjectRecords, root: Path, *, handle: str, exported_at: datetime, exported_by: str
) -> SarArchive:
    """The ZIP in memory: the JSON document and the evidence files found under ``root``."""
    members: dict[str, bytes] = {}
    listed: list[dict[str, Any]] = []
    for item in records.items:
        for file in item.files:
            data = _read(root, file.relpath)
            member = f"evidence/{file.relpath}"
            listed.append(_file_entry(item.item_id, member, file.sha256, data))
            if data is not None:
                members[member] = data
    document = _document(records, handle, exported_at, exported_by, listed)
    text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False)
    data = _zip({DATA_MEMBER: text.encode("utf-8"), **members}, exported_at)
    missing = sum(1 for f in listed if f["status"] == "missing")
    return SarArchive(data=data, files_included=len(members), files_missing=missing)


def _read(root: Path, relpath: str) -> bytes | None:
    if not safe_relpath(relpath):
        return None
    try:
        return (root / relpath).read_bytes()
    except OSError:
        return None


def _file_entry(item_id: int, member: str, sha256: str, data: bytes | None) -> dict[str, Any]:
    if data is None:
        return {"item_id": item_id, "member": member, "sha256": sha256, "status": "missing"}
    found = hashlib.sha256(data).hexdigest()
    status = "included" if found == sha256 else "included (changed since capture)"
    return {
        "item_id": item_id,
        "member": member,
        "sha256": found,
        "size": len(data),
        "status": status,
    }


def _document(
    records: SubjectRecords,
    handle: str,
    exported_at: datetime,
    exported_by: str,
    files: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "format": EXPORT_FORMAT,
        "school": {"slug": records.school_slug, "name": records.school_name},
        "request": {
            "author_handle": normalise_handle(handle),
            "matched": "any platform, case-insensitive, with or without a leading @",
        },
        "exported_at": exported_at.astimezone(UTC).isoformat(),
        "exported_by": exported_by,
        "tool": _tool(),
        "note": REVIEW_NOTE,
        "items": [dict(item.record) for item in records.items],
        "audit": [dict(entry) for entry in records.audit],
        "files": files,
    }


def _zip(members: Mapping[str, bytes], when: datetime) -> bytes:
    utc = when.astimezone(UTC)
    stamp = (utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o600 << 16  # personal data: the owner only
            archive.writestr(info, data)
    return buffer.getvalue()


def _write_new(out: Path, data: bytes) -> None:
    """Write ``data`` to a new file, readable by its owner only; never replace one."""
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _outcome(out: Path, records: SubjectRecords, archive: SarArchive) -> SarOutcome:
    return SarOutcome(
        path=out,
        sha256=hashlib.sha256(archive.data).hexdigest(),
        size=len(archive.data),
        items=len(records.items),
        files_included=archive.files_included,
        files_missing=archive.files_missing,
    )


def _audit_detail(outcome: SarOutcome, records: SubjectRecords, handle: str) -> dict[str, Any]:
    """The file and what it holds, by id; the handle only as a hash (the log is permanent)."""
    return {
        "file": outcome.path.name,
        "sha256": outcome.sha256,
        "items": outcome.items,
        "item_ids": [item.item_id for item in records.items],
        "evidence_files": outcome.files_included,
        "handle_sha256": hashlib.sha256(normalise_handle(handle).encode("utf-8")).hexdigest(),
    }


def _tool() -> str:
    try:
        return f"vigil {metadata.version('vigil')}"
    except metadata.PackageNotFoundError:
        return "vigil"
