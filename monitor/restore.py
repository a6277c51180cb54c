"""`vigil restore DIR`: check a backup against its manifest, put it back, verify the chain.

Nothing is touched until every file matches ``manifest.json`` (``check_backup``). An
existing database, or a non-empty evidence, outbox or reports directory, is refused unless
forced; forced, it is renamed to ``NAME.pre-restore-<UTC time>``, never deleted. Files go back
first and the SQLite database last, through a temporary name, so a restore cut short never
leaves a database whose evidence is not there. Then ``vigil evidence verify``'s code checks
every school's chain against the restored files.

On PostgreSQL only the files are restored: the dump is put back with the ``pg_restore``
command printed, by an operator who has stopped every process sharing that database.
The exceptions are ``monitor.backup``'s.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

from monitor.app import utcnow
from monitor.backup import (
    MANIFEST,
    PG_DUMP,
    TEMP_PREFIX,
    BackupDamaged,
    Manifest,
    ManifestFile,
    TargetExists,
    WrongDatabase,
    backup_dirs,
    chain_lines,
    copy_hashed,
    database_files,
    hash_file,
)
from monitor.config import Settings
from monitor.evidence_cmd import SchoolVerify, verify_evidence
from monitor.store.migrate import head_revision
from monitor.store.snapshot import pg_plan, sqlite_file

__all__ = ["RestoreOutcome", "check_backup", "read_manifest", "restore_backup"]

_HEX64 = re.compile(r"[0-9a-f]{64}")
_TOPS = frozenset({"database", "evidence", "outbox", "reports"})


@dataclass(frozen=True, kw_only=True)
class RestoreOutcome:
    """What ``restore_backup`` put back."""

    manifest: Manifest
    files: int
    database: Path | None  # the SQLite file restored; None on PostgreSQL
    moved_aside: tuple[Path, ...]
    pg_restore: str | None  # PostgreSQL: the command that restores the dump
    chains: tuple[SchoolVerify, ...] | None  # None: not verified (PostgreSQL)

    @property
    def intact(self) -> bool:
        """False only when the restored chain was verified and has problems."""
        return all(c.report.intact for c in self.chains or ())

    def lines(self) -> Iterator[str]:
        """The report ``vigil restore`` prints."""
        for path in self.moved_aside:
            yield f"moved aside: {path}"
        yield f"restored {self.files} files"
        if self.database is not None:
            yield f"restored the database to {self.database}"
        yield from _revision_lines(self.manifest.schema_revision)
        if self.pg_restore is not None:
            yield "the PostgreSQL database was NOT restored. Stop every vigil process, then run:"
            yield f"  {self.pg_restore}"
            yield "then `vigil db upgrade` (if asked for) and `vigil evidence verify`"
        if self.chains is not None:
            yield from chain_lines(self.chains)


async def restore_backup(
    settings: Settings, directory: Path, *, force: bool = False, now: datetime | None = None
) -> RestoreOutcome:
    """Restore the backup in ``directory`` into ``settings``' installation, then verify it.

    Nothing is touched until every file matches the manifest. Raises BackupDamaged,
    WrongDatabase, and TargetExists (unless ``force``: the existing database and directories
    are then renamed to ``NAME.pre-restore-<UTC time>``, never deleted).
    """
    directory = await asyncio.to_thread(directory.resolve)
    manifest = await asyncio.to_thread(check_backup, directory)
    url = settings.database_url()
    live = sqlite_file(url)
    if manifest.database != ("sqlite" if live else "postgresql"):
        raise WrongDatabase(
            f"this is a {manifest.database} backup, and the config's database is "
            f"{'SQLite' if live else 'PostgreSQL'}"
        )
    targets = backup_dirs(settings)
    stamp = (now or utcnow()).strftime("%Y%m%dT%H%M%SZ")
    moved = await asyncio.to_thread(_clear_targets, live, targets, force=force, stamp=stamp)
    count = await asyncio.to_thread(_restore_files, directory, manifest, targets, live)
    dump = directory / (manifest.database_file or PG_DUMP)
    return RestoreOutcome(
        manifest=manifest,
        files=count,
        database=live,
        moved_aside=moved,
        pg_restore=None if live else pg_plan(url).restore_command(dump),
        chains=tuple(await verify_evidence(settings)) if live else None,
    )


def read_manifest(directory: Path) -> Manifest:
    """The manifest of the backup in ``directory``; BackupDamaged if missing or unreadable."""
    try:
        data = (directory / MANIFEST).read_bytes()
    except FileNotFoundError:
        raise BackupDamaged(f"{directory / MANIFEST} is missing: not a (complete) backup") from None
    return Manifest.from_json(data)


def check_backup(directory: Path) -> Manifest:
    """Read the manifest and check every file it lists; BackupDamaged naming each mismatch."""
    manifest = read_manifest(directory)
    problems = [p for f in manifest.files if (p := _file_problem(directory, f)) is not None]
    if manifest.database_file and manifest.database_file not in {f.path for f in manifest.files}:
        problems.append(f"{manifest.database_file}: the database is not in the file list")
    if problems:
        raise BackupDamaged("the backup does not match its manifest:\n" + "\n".join(problems))
    return manifest


def _file_problem(directory: Path, entry: ManifestFile) -> str | None:
    if _unsafe(entry.path) or not _HEX64.fullmatch(entry.sha256):
        return f"{entry.path!r}: not a valid manifest entry"
    path = directory / entry.path
    if path.is_symlink() or not path.is_file():
        return f"{entry.path}: missing"
    size, digest = hash_file(path)
    if size != entry.size or digest != entry.sha256:
        return f"{entry.path}: changed (sha256 {digest}, manifest {entry.sha256})"
    return None


def _unsafe(path: str) -> bool:
    """True unless ``path`` is a plain relative path under one of the backup's directories."""
    parts = PurePosixPath(path).parts
    return (
        "\\" in path
        or "\x00" in path
        or len(parts) < 2
        or parts[0] not in _TOPS
        or any(part in {"", ".", ".."} or part.startswith("/") for part in parts)
    )


def _clear_targets(
    live: Path | None, targets: dict[str, Path], *, force: bool, stamp: str
) -> tuple[Path, ...]:
    """Refuse (or, forced, move aside) the database files and non-empty directories."""
    in_the_way = [p for p in sorted(database_files(live)) if p.exists()] if live else []
    in_the_way += [p for p in targets.values() if p.is_dir() and any(p.iterdir())]
    if in_the_way and not force:
        names = ", ".join(str(p) for p in in_the_way)
        raise TargetExists(f"restoring would replace {names}; stop Vigil and use --force")
    moved = []
    for path in in_the_way:
        # The database and its -wal/-shm keep their pairing: vigil.db.pre-restore-S-wal.
        base = live if live is not None and path in database_files(live) else path
        aside = path.with_name(f"{base.name}.pre-restore-{stamp}{path.name[len(base.name) :]}")
        path.rename(aside)
        moved.append(aside)
    return tuple(moved)


def _restore_files(
    directory: Path, manifest: Manifest, targets: dict[str, Path], live: Path | None
) -> int:
    """Copy every file but the database back, then (SQLite) the database, atomically."""
    count = 0
    for entry in manifest.files:
        top, *rest = PurePosixPath(entry.path).parts
        if top == "database":
            continue
        _restore_one(directory / entry.path, targets[top].joinpath(*rest), entry)
        count += 1
    if live is not None and manifest.database_file is not None:
        entry = next(f for f in manifest.files if f.path == manifest.database_file)
        temp = live.with_name(f"{TEMP_PREFIX}{live.name}")
        temp.unlink(missing_ok=True)
        live.parent.mkdir(parents=True, exist_ok=True)
        _restore_one(directory / entry.path, temp, entry)
        os.sync()
        temp.rename(live)
    else:
        os.sync()
    return count


def _restore_one(source: Path, dest: Path, entry: ManifestFile) -> None:
    size, digest = copy_hashed(source, dest)
    if (size, digest) != (entry.size, entry.sha256):  # changed since check_backup read it
        dest.unlink()
        raise BackupDamaged(f"{entry.path}: changed while it was being restored")


def _revision_lines(revision: str | None) -> Iterator[str]:
    head = head_revision()
    if revision != head:
        yield (
            f"the backup's schema is {revision} and this Vigil's is {head}: run `vigil db "
            "upgrade` before starting Vigil (if the backup is from a newer Vigil, install that)"
        )
