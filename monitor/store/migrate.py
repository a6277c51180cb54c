"""Schema migrations with Alembic, driven from code (``vigil db upgrade``), no alembic.ini."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

__all__ = ["alembic_config", "head_revision", "upgrade", "upgrade_sync"]

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at our migrations and ``url``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logging"] = False
    return config


def upgrade_sync(url: str, revision: str = "head") -> None:
    """Upgrade the schema at ``url``; call from synchronous code only."""
    command.upgrade(alembic_config(url), revision)


async def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the schema at ``url`` (Alembic runs its own loop, so in a worker thread)."""
    await asyncio.to_thread(upgrade_sync, url, revision)


def head_revision() -> str:
    """The newest migration shipped with this version of Vigil."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head
