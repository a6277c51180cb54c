"""`vigil backup` and `vigil restore` on data made by the real pipeline (replay connector).

The backup is taken while another connection keeps committing; the restore goes into a new
state directory and must verify, with the same counts. Tampering, a non-empty backup
directory and existing data are refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shlex
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from monitor import cli
from monitor.backup import (
    FORMAT,
    SQLITE_COPY,
    BackupDamaged,
    DirectoryNotEmpty,
    Manifest,
    TargetExists,
    WrongDatabase,
    create_backup,
)
from monitor.config import Settings
from monitor.daemon import Daemon
from monitor.evidence_cmd import verify_evidence
from monitor.restore import check_backup, restore_backup
from monitor.store import Store
from monitor.store import tables as t
from monitor.store.migrate import head_revision, upgrade
from monitor.store.snapshot import pg_plan
from tests.conftest import PG_ADMIN, Clock
from tests.integration.test_daemon_process import demo_texts

POSTS = 24  # one in three harmful: hides (evidence first) and escalation emails


def _write_posts(path: Path) -> Path:
    clean, flagged = demo_texts()
    with path.open("w", encoding="utf-8") as out:
        for n in range(POSTS):
            text = flagged[n // 3 % len(flagged)] if n % 3 == 0 else clean[n % len(clean)]
            event = {
                "op": "post",
                "platform": "facebook",
                "external_id": f"b-{n}",
                "source": "own",
                "author_handle": f"parent{n}",
                "text": text,
                "created_at": f"2026-11-02T08:{n:02d}:00Z",
                "permalink": f"https://www.facebook.com/oakfieldprimary/posts/1?comment_id={n}",
            }
            out.write(json.dumps(event) + "\n")
    return path


@pytest.fixture
def installation(
    make_settings: Callable[..., Settings], tmp_path: Path, clock: Clock
) -> Callable[..., Settings]:
    """Run the pipeline over the posts into a state directory; return a settings factory."""

    def build(database: dict[str, str] | None = None, state: str = "state") -> Settings:
        return make_settings(
            database=database or {},
            daemon={"state_dir": str(tmp_path / state)},
            sources=[
                {
                    "name": "replay",
                    "platform": "replay",
                    "kind": "own",
                    "options": {
                        "path": str(_write_posts(tmp_path / "posts.jsonl")),
                        "moderation_log": str(tmp_path / "calls.jsonl"),
                    },
                }
            ],
        )

    return build


async def _fill(settings: Settings, clock: Clock) -> None:
    await upgrade(settings.database_url())
    assert await Daemon(settings, clock=clock).run(once=True) == 0
    reports = settings.state_dir / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "case-1-report.txt").write_text("a report pack\n")


async def _counts(settings: Settings) -> tuple[dict[str, Any], int]:
    store = Store.open(settings.database_url())
    try:
        async with store.transaction() as s:
            audit = await s.scalar(select(func.count()).select_from(t.AuditEntry)) or 0
        return await store.summary(), audit
    finally:
        await store.close()


async def _keep_writing(settings: Settings, stop: asyncio.Event) -> int:
    """Commit audit entries one after another until ``stop``: the daemon's writes, in small."""
    store = Store.open(settings.database_url())
    written = 0
    try:
        while not stop.is_set():
            await store.audit(
                school_id=None,
                actor="test",
                event="writer",
                subject_type="test",
                subject_id=written,
                detail={},
                now=Clock().now,
            )
            written += 1
            await asyncio.sleep(0)
    finally:
        await store.close()
    return written


async def test_backup_while_writing_restores_into_a_new_state_dir_and_verifies(
    installation: Callable[..., Settings], tmp_path: Path, clock: Clock
) -> None:
    live = installation()
    await _fill(live, clock)
    before, audit_before = await _counts(live)
    stop = asyncio.Event()
    writer = asyncio.create_task(_keep_writing(live, stop))
    await asyncio.sleep(0)
    try:
        outcome = await create_backup(live, tmp_path / "backup", now=clock.now)
    finally:
        stop.set()
    written = await writer
    assert written > 0
    assert outcome.intact and outcome.chains[0].report.entries == before["evidence"] > 0

    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_bytes())
    paths = {f["path"] for f in manifest["files"]}
    assert manifest["format"] == FORMAT and manifest["database"] == "sqlite"
    assert manifest["schema_revision"] == head_revision()
    assert manifest["created_at"] == clock.now.isoformat() and manifest["vigil_version"]
    assert SQLITE_COPY in paths and "reports/case-1-report.txt" in paths
    assert any(p.startswith("evidence/facebook/") for p in paths)
    assert len([p for p in paths if p.startswith("outbox/")]) == before["escalations"]["sent"] > 0
    backup = tmp_path / "backup"
    on_disk = {str(p.relative_to(backup)) for p in backup.rglob("*") if p.is_file()}
    assert on_disk == paths | {"manifest.json"}  # nothing unlisted, no -wal left behind
    for entry in manifest["files"]:
        data = (tmp_path / "backup" / entry["path"]).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry["size"], entry["sha256"])

    restored = installation(state="restored")
    result = await restore_backup(restored, tmp_path / "backup")
    assert result.intact and result.chains is not None
    assert [c.report.entries for c in result.chains] == [before["evidence"]]
    after, audit_after = await _counts(restored)
    assert after == before  # items, versions, verdicts, cases, actions, evidence, escalations
    assert audit_before <= audit_after <= audit_before + written  # one snapshot, mid-writes
    assert sorted(p.name for p in (restored.state_dir / "outbox").iterdir()) == sorted(
        p.name for p in (live.state_dir / "outbox").iterdir()
    )
    assert "evidence intact" in list(result.lines())


async def test_a_tampered_or_missing_file_is_refused_naming_it(
    installation: Callable[..., Settings], tmp_path: Path, clock: Clock
) -> None:
    live = installation()
    await _fill(live, clock)
    backup = tmp_path / "backup"
    await create_backup(live, backup)
    card = next(backup.glob("evidence/**/card.png"))
    card.write_bytes(card.read_bytes()[:-1] + b"\x00")
    raw = next(backup.glob("evidence/**/raw.json"))
    raw.unlink()
    restored = installation(state="restored")
    with pytest.raises(BackupDamaged) as err:
        await restore_backup(restored, backup)
    message = str(err.value)
    assert f"{card.relative_to(backup)}: changed" in message
    assert f"{raw.relative_to(backup)}: missing" in message
    assert not restored.state_dir.exists()  # nothing was touched


async def test_a_manifest_entry_outside_the_backup_is_refused(
    installation: Callable[..., Settings], tmp_path: Path, clock: Clock
) -> None:
    live = installation()
    await _fill(live, clock)
    backup = tmp_path / "backup"
    await create_backup(live, backup)
    path = backup / "manifest.json"
    manifest = Manifest.from_json(path.read_bytes())
    first = manifest.files[1]
    files = (*manifest.files, replace(first, path="evidence/../../outside"))
    path.write_bytes(replace(manifest, files=files).to_json())
    with pytest.raises(BackupDamaged, match=r"'evidence/\.\./\.\./outside': not a valid"):
        check_backup(backup)
    path.write_text("{not json")
    with pytest.raises(BackupDamaged, match="not a Vigil backup manifest"):
        check_backup(backup)


async def test_backup_refuses_a_non_empty_directory(
    installation: Callable[..., Settings], tmp_path: Path, clock: Clock
) -> None:
    live = installation()
    await _fill(live, clock)
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "old.txt").write_text("keep me")
    with pytest.raises(DirectoryNotEmpty):
        await create_backup(live, tmp_path / "backup")
    assert [p.name for p in (tmp_path / "backup").iterdir()] == ["old.txt"]


async def test_restore_refuses_existing_data_unless_forced_then_moves_it_aside(
    installation: Callable[..., Settings], tmp_path: Path, clock: Clock
) -> None:
    live = installation()
    await _fill(live, clock)
    await create_backup(live, tmp_path / "backup")
    with pytest.raises(TargetExists, match=r"vigil\.db"):
        await restore_backup(live, tmp_path / "backup")
    result = await restore_backup(live, tmp_path / "backup", force=True, now=clock.now)
    assert result.intact
    stamp = clock.now.strftime("%Y%m%dT%H%M%SZ")
    assert live.state_dir / f"vigil.db.pre-restore-{stamp}" in result.moved_aside
    assert live.state_dir / f"evidence.pre-restore-{stamp}" in result.moved_aside
    assert all(p.exists() for p in result.moved_aside)  # moved, never deleted


async def test_a_sqlite_backup_is_not_restored_onto_postgresql(
    installation: Callable[..., Settings], tmp_path: Path, clock: Clock
) -> None:
    live = installation()
    await _fill(live, clock)
    await create_backup(live, tmp_path / "backup")
    other = installation(database={"url": "postgresql+asyncpg://u@127.0.0.1/x"}, state="pg")
    with pytest.raises(WrongDatabase):
        await restore_backup(other, tmp_path / "backup")


def _config_file(settings: Settings, path: Path) -> Path:
    path.write_text(
        f"""\
[school]
name = "{settings.school.name}"

[daemon]
state_dir = "{settings.state_dir}"

[email]
sender = "vigil@oakfield.example.sch.uk"
admin = ["it@oakfield.example.sch.uk"]
""",
        encoding="utf-8",
    )
    return path


def test_the_commands_back_up_refuse_and_restore(
    installation: Callable[..., Settings], tmp_path: Path, clock: Clock
) -> None:
    live = installation()
    asyncio.run(_fill(live, clock))
    config = _config_file(live, tmp_path / "live.toml")
    runner = CliRunner()
    made = runner.invoke(cli.main, ["backup", str(tmp_path / "b"), "--config", str(config)])
    assert made.exit_code == 0, made.output
    assert "evidence intact" in made.output and "manifest sha256" in made.output
    again = runner.invoke(cli.main, ["backup", str(tmp_path / "b"), "--config", str(config)])
    assert again.exit_code == 2 and "not empty" in again.output

    refused = runner.invoke(cli.main, ["restore", str(tmp_path / "b"), "--config", str(config)])
    assert refused.exit_code == 2 and "--force" in refused.output
    target = _config_file(installation(state="new"), tmp_path / "new.toml")
    done = runner.invoke(cli.main, ["restore", str(tmp_path / "b"), "--config", str(target)])
    assert done.exit_code == 0, done.output
    assert "restored the database" in done.output and "evidence intact" in done.output


def test_pg_plan_keeps_the_password_out_of_the_command_line() -> None:
    plan = pg_plan("postgresql+asyncpg://vigil:s%3Dcret@db.example:5433/vigil?ssl=require")
    argv = plan.dump_argv(Path("/b/database/vigil.dump"))
    shown = plan.dump_command(Path("/b/database/vigil.dump"))
    assert plan.runnable and plan.env == {"PGPASSWORD": "s=cret", "PGSSLMODE": "require"}
    assert "--no-password" in argv and "--host=db.example" in argv and "--port=5433" in argv
    assert all("cret" not in text for text in (*argv, shown, repr(plan)))
    assert shown.startswith("pg_dump --format=custom --file=/b/database/vigil.dump")
    restore = plan.restore_command(Path("/b/database/vigil.dump"))
    assert restore.startswith("pg_restore --clean --if-exists --no-owner") and "cret" not in restore
    odd = pg_plan("postgresql+asyncpg://vigil@db/vigil?command_timeout=5")
    assert not odd.runnable and "command_timeout" in str(odd.problem)


# --- PostgreSQL -------------------------------------------------------------------------------


@pytest.fixture
def second_postgres_url() -> Iterator[str]:
    """Another fresh, empty PostgreSQL database to restore into."""
    name = f"vigil_test_{uuid.uuid4().hex[:12]}"

    async def sql(statement: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(sql(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def pg_live(
    installation: Callable[..., Settings], postgres_url: str, clock: Clock
) -> AsyncIterator[Settings]:
    live = installation(database={"url": postgres_url})
    await _fill(live, clock)
    yield live


@pytest.mark.postgres
async def test_postgresql_backup_runs_pg_dump_and_restore_prints_pg_restore(
    pg_live: Settings,
    installation: Callable[..., Settings],
    second_postgres_url: str,
    tmp_path: Path,
) -> None:
    before, _ = await _counts(pg_live)
    outcome = await create_backup(pg_live, tmp_path / "backup")
    assert outcome.dump_skipped is None
    assert outcome.manifest.database_file == "database/vigil.dump"
    assert outcome.manifest.schema_revision == head_revision()

    restored = installation(database={"url": second_postgres_url}, state="restored")
    result = await restore_backup(restored, tmp_path / "backup")
    assert result.chains is None and result.pg_restore is not None
    assert "NOT restored" in "\n".join(result.lines())
    # the operator's step, exactly as printed
    argv = shlex.split(result.pg_restore)
    ran = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, check=False)
    assert ran.returncode == 0, ran.stderr
    chains = await verify_evidence(restored)
    assert [c.report.entries for c in chains] == [before["evidence"]] and chains[0].report.intact
    assert (await _counts(restored))[0] == before


@pytest.mark.postgres
async def test_postgresql_backup_without_pg_dump_prints_the_command(
    pg_live: Settings, tmp_path: Path
) -> None:
    outcome = await create_backup(pg_live, tmp_path / "backup", run_pg_dump=False)
    assert outcome.manifest.database_file is None
    assert outcome.dump_skipped == "--no-pg-dump was given"
    text = "\n".join(outcome.lines())
    assert "database NOT backed up" in text and "pg_dump --format=custom" in text
    assert not (tmp_path / "backup" / "database").exists()
    assert any(f.path.startswith("evidence/") for f in outcome.manifest.files)
