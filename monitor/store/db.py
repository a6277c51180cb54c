"""Engine and session factory: SQLite (WAL, foreign keys, busy timeout, IMMEDIATE) or PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession

__all__ = [
    "UNREACHABLE",
    "WRITE_OPTION",
    "AsyncSession",
    "create_engine",
    "is_sqlite",
    "make_sessionmaker",
]

# Errors that mean "the database cannot be reached", for callers that wait and retry.
UNREACHABLE: tuple[type[BaseException], ...] = (OSError, OperationalError, InterfaceError)
WRITE_OPTION = "vigil_write"  # execution option marking a transaction that will write


def is_sqlite(url: str) -> bool:
    """True for any SQLite URL."""
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(
    url: str, *, busy_timeout: float = 30.0, pool_size: int = 5, echo: bool = False
) -> AsyncEngine:
    """An async engine; SQLite gets WAL, foreign keys, a busy timeout and IMMEDIATE writes."""
    if is_sqlite(url):
        return _sqlite_engine(url, busy_timeout=busy_timeout, echo=echo)
    return create_async_engine(url, pool_size=pool_size, pool_pre_ping=True, echo=echo)


def _sqlite_engine(url: str, *, busy_timeout: float, echo: bool) -> AsyncEngine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, echo=echo, connect_args={"timeout": busy_timeout})
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below own transactions, so they can be IMMEDIATE:
        # a deferred transaction that reads then writes can fail with SQLITE_BUSY mid-way.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front; readers start deferred, so under WAL a
        # read never waits for a batch that is being classified or captured.
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit (we convert rows to dataclasses)."""
    return async_sessionmaker(engine, expire_on_commit=False)
