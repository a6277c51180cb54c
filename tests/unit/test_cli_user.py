"""`vigil user add|passwd|disable|list` against a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner
from sqlalchemy import select

from monitor import cli
from monitor.store import Store
from monitor.store import tables as t
from monitor.store.users import UserRecord, find_user
from monitor.web import auth
from monitor.web.auth import verify_password

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real argon2id, cheap parameters: the commands hash and the tests verify quickly."""
    monkeypatch.setattr(
        auth, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f"""
[school]
name = "Oakfield Primary School"
[daemon]
state_dir = "{tmp_path / "state"}"
[database]
url = "{database_url}"
""")
    return path


def invoke(config: Path, *args: str, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, ["user", *args, "--config", str(config)], input=input)
    return result.exit_code, result.output + result.stderr


def add(
    config: Path, username: str, role: str = "moderator", password: str = PASSWORD
) -> tuple[int, str]:
    return invoke(
        config,
        "add",
        username,
        "--role",
        role,
        "--name",
        f"{username.title()} Person",
        "--email",
        f"{username}@oakfield.example.sch.uk",
        "--password-stdin",
        input=password + "\n",
    )


def lookup(database_url: str, username: str) -> tuple[UserRecord, str | None] | None:
    async def go() -> tuple[UserRecord, str | None] | None:
        store = Store.open(database_url)
        try:
            return await find_user(store, username)
        finally:
            await store.close()

    return asyncio.run(go())


def audit_events(database_url: str) -> list[tuple[str, str, str]]:
    async def go() -> list[tuple[str, str, str]]:
        store = Store.open(database_url)
        try:
            async with store.engine.connect() as conn:
                query = select(t.AuditEntry.event, t.AuditEntry.actor, t.AuditEntry.detail)
                rows = await conn.execute(query.order_by(t.AuditEntry.id))
                return [(event, actor, detail) for event, actor, detail in rows.all()]
        finally:
            await store.close()

    return asyncio.run(go())


def test_add_then_list(config: Path, database_url: str) -> None:
    assert add(config, "priya", "dsl") == (0, "user priya added (dsl)\n")
    found = lookup(database_url, "priya")
    assert found is not None
    user, password_hash = found
    assert user.role == "dsl" and user.display_name == "Priya Person" and len(user.school_ids) == 1
    assert password_hash is not None and password_hash.startswith("$argon2id$")
    assert verify_password(password_hash, PASSWORD)
    code, out = invoke(config, "list")
    assert code == 0
    assert out == "priya\tdsl\tactive\tPriya Person\tpriya@oakfield.example.sch.uk\n"
    ((event, actor, detail),) = audit_events(database_url)
    assert event == "user_added" and actor.startswith("cli") and "argon2" not in detail
    assert json.loads(detail)["username"] == "priya"


def test_add_prompts_twice_without_echo(config: Path, database_url: str) -> None:
    code, out = invoke(
        config,
        "add",
        "sam",
        "--role",
        "admin",
        "--name",
        "Sam",
        "--email",
        "sam@oakfield.example.sch.uk",
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert code == 0 and "user sam added (admin)" in out
    assert PASSWORD not in out  # hidden input is never echoed
    found = lookup(database_url, "sam")
    assert found is not None and verify_password(found[1] or "", PASSWORD)


def test_duplicate_username_exits_2_with_a_clear_message(config: Path, database_url: str) -> None:
    assert add(config, "priya")[0] == 0
    code, out = add(config, "Priya", "dsl")
    assert code == 2 and "a user called 'priya' already exists" in out
    found = lookup(database_url, "priya")
    assert found is not None and found[0].role == "moderator"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "owner"], "Invalid value for '--role'"),
        (["--email", "not-an-email"], "is not an email address"),
        (["--name", "   "], "display name is empty"),
    ],
)
def test_bad_input_exits_2(config: Path, args: list[str], message: str) -> None:
    base = {"--role": "dsl", "--name": "Priya", "--email": "p@oakfield.example.sch.uk"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    flat = [part for pair in base.items() for part in pair]
    code, out = invoke(config, "add", "priya", *flat, "--password-stdin", input=PASSWORD + "\n")
    assert code == 2 and message in out


def test_weak_password_is_refused(config: Path, database_url: str) -> None:
    code, out = add(config, "priya", password="short")
    assert code == 2 and "password refused: use at least 12 characters" in out
    assert lookup(database_url, "priya") is None


def test_passwd_changes_the_password(config: Path, database_url: str) -> None:
    add(config, "priya")
    new = "a different long password"
    code, out = invoke(config, "passwd", "priya", "--password-stdin", input=new + "\n")
    assert code == 0 and "password for priya changed" in out
    found = lookup(database_url, "priya")
    assert found is not None and verify_password(found[1] or "", new)
    assert not verify_password(found[1] or "", PASSWORD)
    code, out = invoke(config, "passwd", "nobody", "--password-stdin", input=new + "\n")
    assert code == 2 and "no user called 'nobody'" in out


def test_disable_then_list_shows_it(config: Path, database_url: str) -> None:
    add(config, "priya", "dsl")
    add(config, "mo")
    assert invoke(config, "disable", "priya") == (0, "user priya disabled\n")
    found = lookup(database_url, "priya")
    assert found is not None and found[0].disabled
    code, out = invoke(config, "list")
    assert code == 0
    assert [line.split("\t")[:3] for line in out.splitlines()] == [
        ["mo", "moderator", "active"],
        ["priya", "dsl", "disabled"],
    ]
    code, out = invoke(config, "disable", "nobody")
    assert code == 2 and "no user called 'nobody'" in out
    events = [event for event, _actor, _detail in audit_events(database_url)]
    assert events == ["user_added", "user_added", "user_disabled"]
