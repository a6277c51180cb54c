"""Database snapshots for ``vigil backup``: SQLite's online backup API and pg_dump's command.

- **SQLite.** ``backup_sqlite`` copies the live database with sqlite3's backup API in a single
  step, that is inside one read transaction. Under WAL a reader never blocks the daemon's
  writers, and the copy is exactly the database as of one commit: a transaction still open
  while it runs is not in it. The copy is then checked with ``PRAGMA integrity_check``.
- **PostgreSQL.** ``pg_plan`` turns the SQLAlchemy URL into a ``pg_dump`` command line plus
  libpq environment variables. The password goes only into ``PGPASSWORD`` for the child
  process: never on the command line (``ps`` shows it to every user) and never in anything
  printed. URL options libpq has no equivalent for make the plan not ``runnable``, and the
  caller prints the command instead of running it.

Exception tree::

    SnapshotError          the snapshot could not be taken or is damaged
"""

from __future__ import annotations

import shlex
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

__all__ = [
    "PgPlan",
    "SnapshotError",
    "backup_sqlite",
    "pg_plan",
    "sqlite_file",
    "sqlite_revision",
]

# asyncpg URL query options that libpq understands under another name; anything else in the
# query makes the dump command unsafe to guess.
_SSL_MODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})


class SnapshotError(Exception):
    """The database snapshot could not be taken, or the copy is damaged."""


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for PostgreSQL or an in-memory database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def backup_sqlite(source: Path, dest: Path, *, busy_timeout: float = 30.0) -> None:
    """Copy the database at ``source`` to the new file ``dest``, consistently, while it is in use.

    Raises SnapshotError when ``source`` does not exist or the copy fails its integrity check.
    """
    if not source.is_file():
        raise SnapshotError(f"{source}: no SQLite database there")
    if dest.exists():
        raise SnapshotError(f"{dest} already exists")
    src = sqlite3.connect(f"file:{source}?mode=rw", uri=True, timeout=busy_timeout)
    try:
        copy = sqlite3.connect(dest)
        try:
            # pages=-1: one step, so one read transaction and one consistent snapshot; copying
            # in several steps would restart whenever another connection commits.
            src.backup(copy, pages=-1)
            result = copy.execute("PRAGMA integrity_check").fetchall()
        finally:
            copy.close()
    finally:
        src.close()
    if result != [("ok",)]:
        raise SnapshotError(f"{dest}: integrity check failed: {result[:5]}")


def sqlite_revision(path: Path) -> str | None:
    """The Alembic revision recorded in the SQLite file at ``path`` (None before any upgrade)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:  # no alembic_version table: never upgraded
        return None
    finally:
        conn.close()
    return None if row is None else str(row[0])


@dataclass(frozen=True, kw_only=True)
class PgPlan:
    """How to reach one PostgreSQL database with libpq's tools, without exposing its password."""

    options: tuple[str, ...]  # --host/--port/--username/--dbname
    env: Mapping[str, str] = field(repr=False)  # PGPASSWORD, PGSSLMODE: for the child only
    problem: str | None = None  # why the tools cannot be run for you; None when they can

    @property
    def runnable(self) -> bool:
        """True when the URL says everything libpq needs."""
        return self.problem is None

    def dump_argv(self, out: Path) -> list[str]:
        """``pg_dump`` writing a custom-format archive (the one pg_restore reads) to ``out``.

        ``--no-password``: run for you, it must fail rather than wait for a prompt.
        """
        return [*self._dump(out)[:1], "--no-password", *self._dump(out)[1:]]

    def dump_command(self, out: Path) -> str:
        """The ``pg_dump`` command for a person to run, as a shell line (it may prompt)."""
        return shlex.join(self._dump(out))

    def _dump(self, out: Path) -> list[str]:
        return ["pg_dump", "--format=custom", f"--file={out}", *self.options]

    def restore_command(self, dump: Path) -> str:
        """The ``pg_restore`` command that puts ``dump`` back, as a shell line."""
        return shlex.join(
            ["pg_restore", "--clean", "--if-exists", "--no-owner", *self.options, str(dump)]
        )


def pg_plan(url: str) -> PgPlan:
    """The libpq options and environment for the PostgreSQL database at ``url``."""
    parsed = make_url(url)
    options = [f"--dbname={parsed.database or ''}"]
    env: dict[str, str] = {}
    query = dict(parsed.query)
    host = parsed.host or _one(query.pop("host", None))
    for flag, value in (("--host", host), ("--port", parsed.port), ("--username", parsed.username)):
        if value:
            options.insert(-1, f"{flag}={value}")
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    problem = _ssl_env(query, env)
    if query and problem is None:
        problem = f"the database URL has options pg_dump cannot be given: {', '.join(query)}"
    return PgPlan(options=tuple(options), env=env, problem=problem)


def _ssl_env(query: dict[str, str | tuple[str, ...]], env: dict[str, str]) -> str | None:
    """Move ``ssl``/``sslmode`` out of ``query`` into PGSSLMODE; a problem if libpq lacks it."""
    for key in ("sslmode", "ssl"):
        value = _one(query.pop(key, None))
        if value is None:
            continue
        if value not in _SSL_MODES:
            return f"the database URL's {key}={value} has no pg_dump equivalent"
        env["PGSSLMODE"] = value
    return None


def _one(value: str | tuple[str, ...] | None) -> str | None:
    if isinstance(value, tuple):
        return value[0] if value else None
    return value
