"""`vigil evidence verify` and `vigil evidence export`: glue between the CLI, store and custody.

Neither command prints post text: verify prints ids, file names and hashes; export writes the
ZIP and prints its path and SHA-256.
"""

from __future__ import annotations

import asyncio
import getpass
import os
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path

from actions.custody import ChainReport, ExportArchive, build_export, verify_chain
from monitor.app import utcnow
from monitor.config import Settings
from monitor.store import Store
from monitor.store.evidence_log import load_case, load_chain, load_schools
from monitor.store.retention import audited_purges

__all__ = [
    "ExportOutcome",
    "SchoolVerify",
    "UnknownCase",
    "UnknownSchool",
    "evidence_root",
    "export_case",
    "os_user",
    "verify_evidence",
]

EXPORT_EVENT = "evidence_exported"


class UnknownCase(LookupError):
    """There is no case with the id given."""


class UnknownSchool(LookupError):
    """There is no school with the slug given."""


@dataclass(frozen=True, kw_only=True)
class SchoolVerify:
    """One school's chain, verified."""

    slug: str
    report: ChainReport

    def summary(self) -> str:
        """One line: entries, files, problems, head hash."""
        state = "intact" if self.report.intact else f"{len(self.report.problems)} problem(s)"
        purged = f" ({self.report.purged} purged)" if self.report.purged else ""
        return (
            f"school {self.slug}: {self.report.entries} entries{purged}, {self.report.files} "
            f"files, {state}; head entry_hash {self.report.head_hash}"
        )


@dataclass(frozen=True, kw_only=True)
class ExportOutcome:
    """What ``export_case`` wrote."""

    path: Path
    sha256: str
    size: int
    entries: int
    files_included: int
    files_withheld: int
    files_missing: int
    problems: tuple[str, ...]
    child_imagery: bool


def evidence_root(settings: Settings) -> Path:
    """The evidence directory the config names."""
    return settings.under_state(settings.evidence.dir)


async def verify_evidence(settings: Settings, *, school: str | None = None) -> list[SchoolVerify]:
    """Verify every school's chain (or one school's, by slug) against the evidence directory."""
    root = evidence_root(settings)
    store = Store.open(settings.database_url())
    try:
        schools = await load_schools(store)
        if school is not None:
            schools = [s for s in schools if s.slug == school]
            if not schools:
                raise UnknownSchool(school)
        results = []
        for ref in schools:
            entries = await load_chain(store, ref.id)
            purges = await audited_purges(store, ref.id)
            report = verify_chain(entries, root, audited_purges=purges)
            results.append(SchoolVerify(slug=ref.slug, report=report))
        return results
    finally:
        await store.close()


async def export_case(
    settings: Settings,
    case_id: int,
    out: Path,
    *,
    now: datetime | None = None,
    user: str | None = None,
) -> ExportOutcome:
    """Write case ``case_id``'s export ZIP to ``out`` (never overwriting) and audit it.

    Raises UnknownCase, and FileExistsError when ``out`` exists.
    """
    if await asyncio.to_thread(out.exists):
        raise FileExistsError(f"{out} already exists; it is never overwritten")
    user = user or os_user()
    now = now or utcnow()
    store = Store.open(settings.database_url())
    try:
        bundle = await load_case(store, case_id)
        if bundle is None:
            raise UnknownCase(case_id)
        archive = build_export(
            bundle, evidence_root(settings), exported_at=now, exported_by=user, tool=_tool()
        )
        await asyncio.to_thread(_write_new, out, archive.data)
        await store.audit(
            school_id=bundle.school_id,
            actor=f"cli:{user}",
            event=EXPORT_EVENT,
            subject_type="case",
            subject_id=case_id,
            detail=_audit_detail(out, archive),
            now=now,
        )
    finally:
        await store.close()
    return _outcome(out, archive)


def _audit_detail(out: Path, archive: ExportArchive) -> dict[str, object]:
    """What the audit log keeps about an export: the file's name and hash, never content."""
    return {
        "file": out.name,
        "sha256": archive.sha256,
        "entries": archive.entries,
        "intact": not archive.problems,
        "child_imagery": archive.child_imagery,
    }


def _write_new(out: Path, data: bytes) -> None:
    """Write ``data`` to a new file: one created meanwhile is never replaced."""
    with out.open("xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _outcome(out: Path, archive: ExportArchive) -> ExportOutcome:
    return ExportOutcome(
        path=out,
        sha256=archive.sha256,
        size=len(archive.data),
        entries=archive.entries,
        files_included=archive.files_included,
        files_withheld=archive.files_withheld,
        files_missing=archive.files_missing,
        problems=tuple(str(p) for p in archive.problems),
        child_imagery=archive.child_imagery,
    )


def os_user() -> str:
    """Who is running the command, as the operating system knows them."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid {os.getuid()}"


def _tool() -> str:
    try:
        return f"vigil {metadata.version('vigil')}"
    except metadata.PackageNotFoundError:
        return "vigil"
