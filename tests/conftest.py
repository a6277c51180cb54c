"""Shared fixtures: settings factories, a migrated store on SQLite or PostgreSQL, clocks."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import structlog

from classifiers import textcat
from classifiers.base import Roster
from monitor.app import roster_from
from monitor.config import Settings, parse_settings
from monitor.demo import demo_settings
from monitor.logging import NOISY_LOGGERS
from monitor.store import Store
from monitor.store.migrate import upgrade


def pytest_sessionstart(session: pytest.Session) -> None:
    """The default classifier includes the trained model: build it once if missing or stale."""
    textcat.build(if_stale=True)


PG_ADMIN = os.environ.get("VIGIL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
DEMO_POSTS = ROOT / "monitor" / "demo" / "posts.jsonl"

# The roster exactly in the format the issue fixes (the evaluation uses it).
ROSTER_TOML = """\
[school]
name = "Oakfield Primary School"
aliases = ["Oakfield", "OPS"]
published_contacts = ["01632 960123", "office@oakfield.example.sch.uk"]
[[school.staff]]
name = "David Hughes"
aliases = ["Mr Hughes"]
role = "teacher"      # any string; "head", "dsl", "deputy_dsl", "governor" have meaning
"""


def demo_roster() -> Roster:
    """The demo school's roster, read from the bundled demo config (one source of truth)."""
    return roster_from(demo_settings(Path("/nonexistent-state")))


ROSTER: dict[str, Any] = {
    "name": "Oakfield Primary School",
    "aliases": ["Oakfield", "OPS", "Oakfield Primary"],
    "published_contacts": ["01632 960123", "office@oakfield.example.sch.uk"],
    "staff": [
        {"name": "Sarah Whitfield", "aliases": ["Mrs Whitfield"], "role": "head"},
        {
            "name": "Priya Shah",
            "aliases": ["Ms Shah"],
            "role": "dsl",
            "email": "dsl@oakfield.example.sch.uk",
        },
        {"name": "David Hughes", "aliases": ["Mr Hughes"], "role": "teacher"},
    ],
}


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Put the root logger, library loggers and structlog back as they were after each test.

    Commands under test configure logging for real; without this one test's handler (and
    its closed stream) would leak into the next.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    library_levels = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    config = structlog.get_config()
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, library_level in library_levels.items():
        logging.getLogger(name).setLevel(library_level)
    structlog.reset_defaults()
    structlog.configure(**config)


class Clock:
    """A controllable clock: tests move time instead of sleeping."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Build Settings from overrides of a minimal valid config (state in tmp_path)."""

    def make(**sections: Any) -> Settings:
        data: dict[str, Any] = {
            "school": ROSTER,
            "daemon": {"state_dir": str(tmp_path / "state"), "tick": 0.05},
            "email": {
                "sender": "vigil@oakfield.example.sch.uk",
                "admin": ["it@oakfield.example.sch.uk"],
            },
            # Pillow cards keep the pipeline tests fast; tests/integration/test_chromium_card.py
            # drives the real browser.
            "evidence": {"renderer": "pillow"},
            # Daemon tests do not need the review app on a fixed port; its own tests enable it.
            "web": {"serve": False},
        }
        for key, value in sections.items():
            data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
        return parse_settings(data, path=tmp_path / "config.toml")

    return make


def _run_sql(statement: str) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(PG_ADMIN)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(go())


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"vigil_test_{uuid.uuid4().hex[:12]}"
    _run_sql(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        _run_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database URL, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'vigil.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    asyncio.run(upgrade(url))
    return url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = Store.open(database_url)
    try:
        yield store
    finally:
        await store.close()
