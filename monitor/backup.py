"""`vigil backup DIR`: the database, the evidence, the outbox and report packs, and a manifest.

A backup directory holds:

- ``database/vigil.db``: on SQLite, an online snapshot (``store.snapshot.backup_sqlite``),
  safe to take while the daemon runs; on PostgreSQL, ``database/vigil.dump``, pg_dump's
  custom-format archive, when pg_dump was run (see below);
- ``evidence/``, ``outbox/`` and ``reports/``: copies of those directories;
- ``manifest.json``: the format, Vigil's version, when (UTC), the schema revision, the
  database, and every other file with its size and SHA-256.

**Order.** The database is copied first, the files after. An evidence file is written (and
fsynced) before the row that names it commits, so every chain row in the snapshot has its
files in the copy. Files written after the snapshot are harmless extras: no row in the
snapshot names them, so verification ignores them; after a restore the daemon captures those
items' evidence again (their rows are not in the snapshot, so they are still at the evidence
stage), writing the same paths.

**PostgreSQL.** pg_dump is run when it is on PATH and the URL says everything libpq needs;
the password reaches it only through ``PGPASSWORD``. Otherwise (or with ``--no-pg-dump``)
the command is printed and kept in the manifest, saying it was not run.

The SQLite copy's chain is verified against the copied evidence before the manifest is
written, so a backup that would not verify says so at once. ``monitor/restore.py`` puts a
backup back.

Exception tree (``vigil restore`` raises these too)::

    BackupError
     ├── DirectoryNotEmpty   the backup directory already holds something
     ├── BackupDamaged       the manifest is missing or unreadable, or a file is missing or changed
     ├── WrongDatabase       a SQLite backup for a PostgreSQL config, or the other way round
     ├── TargetExists        restoring would replace a database or a non-empty directory
     └── DumpFailed          pg_dump failed or timed out

``store.snapshot.SnapshotError``: the SQLite copy could not be taken or is damaged.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path, PurePosixPath

from actions.custody import verify_chain
from actions.policy import UK
from monitor.app import utcnow
from monitor.config import Settings
from monitor.evidence_cmd import SchoolVerify, evidence_root
from monitor.store import Store
from monitor.store.evidence_log import load_chain, load_schools
from monitor.store.snapshot import (
    SnapshotError,
    backup_sqlite,
    pg_plan,
    sqlite_file,
    sqlite_revision,
)

__all__ = [
    "FORMAT",
    "MANIFEST",
    "PG_DUMP",
    "SQLITE_COPY",
    "TEMP_PREFIX",
    "BackupDamaged",
    "BackupError",
    "BackupOutcome",
    "DirectoryNotEmpty",
    "DumpFailed",
    "Manifest",
    "ManifestFile",
    "TargetExists",
    "WrongDatabase",
    "backup_dirs",
    "chain_lines",
    "copy_hashed",
    "create_backup",
    "database_files",
    "hash_file",
]

FORMAT = "vigil-backup/1"
MANIFEST = "manifest.json"
SQLITE_COPY = "database/vigil.db"
PG_DUMP = "database/vigil.dump"
PG_DUMP_TIMEOUT = 3600.0  # seconds; a dump that takes longer is reported as failed
REPORTS_DIR = Path("reports")  # where the executor writes report packs (monitor/app.py)
TEMP_PREFIX = ".tmp-"  # write_atomic's half-written files: never copied
_CHUNK = 1 << 20


class BackupError(Exception):
    """The backup or restore could not be done."""


class DirectoryNotEmpty(BackupError):
    """The backup directory is not empty: a backup is only ever written into a new directory."""


class BackupDamaged(BackupError):
    """The backup does not match its manifest."""


class WrongDatabase(BackupError):
    """The backup is of another kind of database than the config uses."""


class TargetExists(BackupError):
    """Restoring would replace an existing database or directory (use --force)."""


class DumpFailed(BackupError):
    """pg_dump failed."""


@dataclass(frozen=True, kw_only=True)
class ManifestFile:
    """One file of the backup: its path relative to the backup directory, size and SHA-256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """What a backup holds (``manifest.json``)."""

    format: str
    vigil_version: str
    created_at: datetime
    schema_revision: str | None
    database: str  # "sqlite" or "postgresql"
    database_file: str | None  # None: a PostgreSQL backup whose pg_dump was not run
    dump_command: str | None  # PostgreSQL: the pg_dump command (run or not)
    files: tuple[ManifestFile, ...]  # every file but the manifest, the database included

    def to_json(self) -> bytes:
        """The manifest as stored: indented JSON, the time as ISO 8601 UTC."""
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse ``manifest.json``; BackupDamaged if it is not one."""
        try:
            raw = json.loads(data)
            files = tuple(ManifestFile(**f) for f in raw.pop("files"))
            created = datetime.fromisoformat(raw.pop("created_at"))
            manifest = cls(**raw, created_at=created, files=files)
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise BackupDamaged(f"{MANIFEST}: not a Vigil backup manifest ({err})") from None
        if manifest.format != FORMAT:
            raise BackupDamaged(f"{MANIFEST}: format {manifest.format!r}, expected {FORMAT!r}")
        return manifest


@dataclass(frozen=True, kw_only=True)
class BackupOutcome:
    """What ``create_backup`` wrote."""

    directory: Path
    manifest: Manifest
    manifest_sha256: str
    dump_skipped: str | None  # PostgreSQL: why pg_dump was not run
    chains: tuple[SchoolVerify, ...]  # SQLite: the copy's own chain, verified

    @property
    def intact(self) -> bool:
        """True when the copied evidence matches the copied chain."""
        return all(c.report.intact for c in self.chains)

    def lines(self) -> Iterator[str]:
        """The report ``vigil backup`` prints (ids, paths and hashes only)."""
        m = self.manifest
        when = m.created_at.astimezone(UK).strftime("%Y-%m-%d %H:%M:%S %Z")
        size = sum(f.size for f in m.files)
        yield f"backup of {when}, schema {m.schema_revision}, Vigil {m.vigil_version}"
        yield f"{len(m.files)} files, {size} bytes, in {self.directory}"
        if self.dump_skipped is not None:
            yield f"database NOT backed up: pg_dump was not run ({self.dump_skipped}). Run:"
            yield f"  {m.dump_command}"
        yield from chain_lines(self.chains)
        yield f"manifest sha256 {self.manifest_sha256}"


# --- backup ---------------------------------------------------------------------------------


async def create_backup(
    settings: Settings, directory: Path, *, run_pg_dump: bool = True, now: datetime | None = None
) -> BackupOutcome:
    """Back up ``settings``' database, evidence, outbox and report packs into ``directory``.

    ``directory`` must be new or empty. Raises DirectoryNotEmpty, DumpFailed, and
    SnapshotError when the SQLite copy cannot be taken or fails its integrity check.
    """
    now = now or utcnow()
    url = settings.database_url()
    live = sqlite_file(url)
    revision = None if live else await _pg_revision(url)  # reachable before anything is written
    directory = await asyncio.to_thread(_new_directory, directory, live)
    snap = await (
        _sqlite_step(live, directory, settings)
        if live
        else _pg_step(url, directory, run_pg_dump, revision)
    )
    exclude = database_files(live) if live else frozenset()
    files = await asyncio.to_thread(_copy_trees, backup_dirs(settings), directory, exclude)
    chains: tuple[SchoolVerify, ...] = ()
    if live is not None:
        chains = await _verify_copy(directory / SQLITE_COPY, directory / "evidence")
    if snap.file is not None:  # hashed last: the chain check above opened the copy
        files = [await asyncio.to_thread(_entry, directory, snap.file), *files]
    manifest = Manifest(
        format=FORMAT,
        vigil_version=_version(),
        created_at=now,
        schema_revision=snap.revision,
        database="sqlite" if live else "postgresql",
        database_file=snap.file,
        dump_command=snap.command,
        files=tuple(files),
    )
    digest = await asyncio.to_thread(_write_manifest, directory, manifest)
    return BackupOutcome(
        directory=directory,
        manifest=manifest,
        manifest_sha256=digest,
        dump_skipped=snap.skipped,
        chains=chains,
    )


@dataclass(frozen=True, kw_only=True)
class _Snapshot:
    file: str | None  # in the backup; None when pg_dump was not run
    revision: str | None
    command: str | None = None  # the pg_dump command
    skipped: str | None = None  # why pg_dump was not run


async def _sqlite_step(live: Path, directory: Path, settings: Settings) -> _Snapshot:
    revision = await asyncio.to_thread(_snapshot_sqlite, live, directory, settings)
    return _Snapshot(file=SQLITE_COPY, revision=revision)


async def _pg_step(url: str, directory: Path, run_pg_dump: bool, revision: str | None) -> _Snapshot:
    plan = pg_plan(url)
    command = plan.dump_command(directory / PG_DUMP)
    skipped = _why_not_dump(run_pg_dump, plan.problem)
    file = None if skipped else await _dump_pg(url, directory)
    return _Snapshot(file=file, revision=revision, command=command, skipped=skipped)


def _new_directory(directory: Path, live: Path | None) -> Path:
    """Create ``directory`` (owner-only: it will hold safeguarding records), or accept it empty."""
    if live is not None and not live.is_file():
        raise SnapshotError(f"{live}: no SQLite database there")
    directory = directory.resolve()
    if directory.exists() and any(directory.iterdir()):
        raise DirectoryNotEmpty(f"{directory} is not empty; back up into a new directory")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    return directory


def _snapshot_sqlite(live: Path, directory: Path, settings: Settings) -> str | None:
    copy = directory / SQLITE_COPY
    copy.parent.mkdir(mode=0o700)
    backup_sqlite(live, copy, busy_timeout=settings.database.busy_timeout)
    return sqlite_revision(copy)


async def _pg_revision(url: str) -> str | None:
    store = Store.open(url)
    try:
        return await store.schema_revision()
    finally:
        await store.close()


def _why_not_dump(run_pg_dump: bool, problem: str | None) -> str | None:
    if not run_pg_dump:
        return "--no-pg-dump was given"
    if problem is not None:
        return problem
    if shutil.which("pg_dump") is None:
        return "pg_dump is not on PATH"
    return None


async def _dump_pg(url: str, directory: Path) -> str:
    """Run pg_dump into ``directory`` (the password only in its environment)."""
    plan = pg_plan(url)
    (directory / PG_DUMP).parent.mkdir(mode=0o700)
    proc = await asyncio.create_subprocess_exec(
        *plan.dump_argv(directory / PG_DUMP),
        env={**os.environ, **plan.env},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(PG_DUMP_TIMEOUT):
            _, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise DumpFailed(f"pg_dump took longer than {PG_DUMP_TIMEOUT:.0f} s") from None
    if proc.returncode != 0:
        last = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise DumpFailed(f"pg_dump exited with status {proc.returncode}: {last[0]}")
    return PG_DUMP


def backup_dirs(settings: Settings) -> dict[str, Path]:
    """The directories a backup copies, by their name inside the backup."""
    return {
        "evidence": evidence_root(settings),
        "outbox": settings.under_state(settings.email.outbox_dir),
        "reports": settings.under_state(REPORTS_DIR),
    }


def database_files(db: Path) -> frozenset[Path]:
    """The live database's files, never copied as plain files (if a tree holds them)."""
    return frozenset(db.with_name(db.name + suffix) for suffix in ("", "-wal", "-shm", "-journal"))


def _copy_trees(
    trees: dict[str, Path], directory: Path, exclude: frozenset[Path]
) -> list[ManifestFile]:
    files = [
        entry
        for name, root in trees.items()
        for entry in _copy_tree(root, directory, name, exclude)
    ]
    os.sync()  # one flush for every copied file, before the manifest says they are there
    return files


def _copy_tree(
    root: Path, directory: Path, name: str, exclude: frozenset[Path]
) -> Iterator[ManifestFile]:
    for source in _walk(root):
        if source in exclude:
            continue
        rel = PurePosixPath(name, *source.relative_to(root).parts)
        try:
            size, digest = copy_hashed(source, directory / rel)
        except FileNotFoundError:  # removed while we walked (an outbox file sent, say)
            continue
        yield ManifestFile(path=str(rel), size=size, sha256=digest)


def _walk(root: Path) -> Iterator[Path]:
    """Regular files under ``root``, sorted; symlinks and half-written temporaries skipped."""
    for top, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            path = Path(top, name)
            if not name.startswith(TEMP_PREFIX) and path.is_file() and not path.is_symlink():
                yield path


def copy_hashed(source: Path, dest: Path) -> tuple[int, str]:
    """Copy ``source`` to the new file ``dest``; the size and SHA-256 of what was written."""
    digest, size = hashlib.sha256(), 0
    with source.open("rb") as src:
        dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with dest.open("xb") as out:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
    stat = source.stat()
    os.utime(dest, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return size, digest.hexdigest()


async def _verify_copy(db: Path, evidence: Path) -> tuple[SchoolVerify, ...]:
    """Verify each school's chain in the copied database against the copied evidence."""
    store = Store.open(f"sqlite+aiosqlite:///{db}")
    try:
        schools = await load_schools(store)
        return tuple(
            [
                SchoolVerify(
                    slug=s.slug, report=verify_chain(await load_chain(store, s.id), evidence)
                )
                for s in schools
            ]
        )
    finally:
        await store.close()


def _entry(directory: Path, rel: str) -> ManifestFile:
    size, digest = hash_file(directory / rel)
    return ManifestFile(path=rel, size=size, sha256=digest)


def hash_file(path: Path) -> tuple[int, str]:
    """The size and SHA-256 of the file at ``path``."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _write_manifest(directory: Path, manifest: Manifest) -> str:
    data = manifest.to_json()
    with (directory / MANIFEST).open("xb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    return hashlib.sha256(data).hexdigest()


def _version() -> str:
    try:
        return metadata.version("vigil")
    except metadata.PackageNotFoundError:
        return "unknown"


def chain_lines(chains: tuple[SchoolVerify, ...]) -> Iterator[str]:
    """Each chain problem, one summary line per school, then the verdict (as `evidence verify`)."""
    for chain in chains:
        for problem in chain.report.problems:
            yield str(problem)
    for chain in chains:
        yield chain.summary()
    if chains:
        yield "evidence intact" if all(c.report.intact for c in chains) else "EVIDENCE NOT INTACT"
