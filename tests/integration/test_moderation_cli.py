"""Moderator decisions from the command line: approve a hide, reject, undo with an unhide."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner

from monitor import cli
from monitor.app import build_app
from monitor.config import Settings
from monitor.daemon import Daemon
from monitor.store import ActionRecord
from monitor.store.migrate import upgrade
from tests.conftest import Clock

INSULT = "You are a worthless fat pig and everyone hates you"  # abusive, medium: hide waits


def write_config(tmp_path: Path, posts: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(f"""
[school]
name = "Oakfield Primary School"
[[school.staff]]
name = "Priya Shah"
role = "dsl"
email = "dsl@oakfield.example.sch.uk"
[[sources]]
name = "replay"
platform = "replay"
kind = "own"
options = {{ path = "{posts}", moderation_log = "{tmp_path / "calls.jsonl"}" }}
[daemon]
state_dir = "{tmp_path / "state"}"
""")
    return config


async def case_actions(settings: Settings) -> list[ActionRecord]:
    app = await build_app(settings)
    try:
        return await app.store.case_actions(1)
    finally:
        await app.close()


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, list(args))
    return result.exit_code, result.output + result.stderr


def test_a_moderator_approves_a_hide_then_undoes_it(tmp_path: Path, clock: Clock) -> None:
    """Synchronous, like the CLI: each command runs its own event loop."""
    posts = tmp_path / "posts.jsonl"
    posts.write_text(
        json.dumps(
            {
                "op": "post",
                "platform": "facebook",
                "external_id": "c1",
                "text": INSULT,
                "created_at": "2026-11-02T09:00:00Z",
            }
        )
        + "\n"
    )
    config = write_config(tmp_path, posts)
    from monitor.config import load_settings

    settings = load_settings(config)
    asyncio.run(upgrade(settings.database_url()))
    asyncio.run(Daemon(settings, clock=clock).run(once=True))
    hide = next(a for a in asyncio.run(case_actions(settings)) if a.kind == "hide")
    assert hide.state == "proposed"

    code, out = invoke(
        "actions", "reject", "999", "--config", str(config), "--by", "ms.shah", "--reason", "typo"
    )
    assert code == 2 and "999" in out
    code, out = invoke(
        "actions", "approve", str(hide.id), "--config", str(config), "--by", "ms.shah"
    )
    assert code == 0 and "approved" in out
    asyncio.run(Daemon(settings, clock=clock).run(once=True))
    code, out = invoke(
        "actions",
        "undo",
        str(hide.id),
        "--config",
        str(config),
        "--by",
        "ms.shah",
        "--reason",
        "on reflection it is fair comment",
    )
    assert code == 0, out
    asyncio.run(Daemon(settings, clock=clock).run(once=True))
    calls = [
        json.loads(line)["call"] for line in (tmp_path / "calls.jsonl").read_text().splitlines()
    ]
    assert calls == ["hide", "unhide"]
    code, out = invoke("actions", "approve", str(hide.id), "--config", str(config), "--by", "x")
    assert code == 2 and "done" in out  # a done action cannot be approved again


def test_a_parent_letter_is_filled_from_the_case_without_the_post(
    tmp_path: Path, clock: Clock
) -> None:
    posts = tmp_path / "posts.jsonl"
    posts.write_text(
        json.dumps(
            {
                "op": "post",
                "platform": "facebook",
                "external_id": "c1",
                "text": INSULT,
                "created_at": "2026-11-02T09:00:00Z",
            }
        )
        + "\n"
    )
    config = write_config(tmp_path, posts)
    from monitor.config import load_settings

    settings = load_settings(config)
    asyncio.run(upgrade(settings.database_url()))
    asyncio.run(Daemon(settings, clock=clock).run(once=True))
    code, out = invoke(
        "cases",
        "letter",
        "1",
        "--config",
        str(config),
        "--parent",
        "Mr Smith",
        "--from",
        "Sarah Whitfield",
    )
    assert code == 0, out
    assert "Mr Smith" in out and "Sarah Whitfield" in out and "Oakfield Primary School" in out
    assert "worthless" not in out and "pig" not in out  # never repeats the post
    code, out = invoke(
        "cases", "letter", "99", "--config", str(config), "--parent", "X", "--from", "Y"
    )
    assert code == 2 and "no case" in out
