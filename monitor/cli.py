"""The `vigil` command line: parses arguments and calls the daemon, store and classifiers.

No logic lives here beyond turning errors into exit statuses:
0 success, 1 a runtime failure, 2 bad input (invalid config, malformed classify lines).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from monitor.config import ConfigError, Settings, load_settings
from monitor.logging import configure_logging

__all__ = ["main"]

T = TypeVar("T")
DEFAULT_CONFIG = os.environ.get("VIGIL_CONFIG", "/etc/vigil/config.toml")
config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_CONFIG,
    show_default=True,
    help="The config file ($VIGIL_CONFIG).",
)
zip_out_option = click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The ZIP file to write (never overwritten).",
)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _settings(path: Path) -> Settings:
    """Load config or exit 2 listing every problem as file: key: message."""
    try:
        return load_settings(path)
    except ConfigError as err:
        for problem in err.problems:
            click.echo(problem, err=True)
        raise SystemExit(2) from None


def _logging(settings: Settings | None, level: str | None = None) -> None:
    fmt = settings.daemon.log_format if settings else "auto"
    configure_logging(
        level=level or (settings.daemon.log_level if settings else "warning"),
        json=None if fmt == "auto" else fmt == "json",
        stream=sys.stderr,
    )


@click.group()
@click.version_option(package_name="vigil")
def main() -> None:
    """Vigil: a safeguarding monitor for a school's social media."""


@main.command()
@config_option
@click.option("--once", is_flag=True, help="Poll every source once, drain every stage, and exit.")
def run(config_path: Path, once: bool) -> None:
    """Run the daemon (as the systemd service does)."""
    settings = _settings(config_path)
    _logging(settings)
    from monitor.daemon import Daemon, DatabaseUnreachable, SchemaOutOfDate

    try:
        status = _run(Daemon(settings).run(once=once))
    except (SchemaOutOfDate, DatabaseUnreachable) as err:
        click.echo(f"{settings.path}: database: {err}", err=True)
        raise SystemExit(1) from None
    except ConfigError as err:  # problems only found while building (e.g. a broken lexicon)
        for problem in err.problems:
            click.echo(problem, err=True)
        raise SystemExit(2) from None
    raise SystemExit(status)


@main.command()
@config_option
@click.option("--offline", is_flag=True, help="Validate the file only; make no network calls.")
def check(config_path: Path, offline: bool) -> None:
    """Validate the config and test each source's credentials; list every problem."""
    settings = _settings(config_path)
    _logging(settings, "error")
    from monitor.checks import run_checks

    problems, notes = _run(run_checks(settings, offline=offline))
    for note in notes:
        click.echo(note)
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        raise SystemExit(2)
    click.echo(f"{settings.path}: OK")


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@config_option
def db_upgrade(config_path: Path) -> None:
    """Migrate the database schema to this version (never done automatically)."""
    settings = _settings(config_path)
    _logging(settings)
    from monitor.store.migrate import upgrade_sync

    upgrade_sync(settings.database_url())
    click.echo("database schema is up to date")


@main.command()
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("vigil-demo"),
    show_default=True,
    help="Where the demo keeps its database, evidence and emails.",
)
def demo(state_dir: Path) -> None:
    """Run the whole pipeline on the bundled sample posts and print a summary."""
    configure_logging(level="warning", stream=sys.stderr)
    from monitor.demo import format_summary, run_demo

    try:
        summary = _run(run_demo(state_dir.resolve()))
    except FileExistsError as err:
        click.echo(str(err), err=True)
        raise SystemExit(2) from None
    click.echo(format_summary(summary))


@main.command()
@click.argument("source", type=click.File("r", encoding="utf-8"), default="-")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A config file whose [school] roster the classifiers use.",
)
def classify(source: Any, config_path: Path | None) -> None:
    """Classify JSONL posts (a file or - for stdin) into JSONL verdicts on stdout."""
    settings = _settings(config_path) if config_path else None
    configure_logging(level="warning", stream=sys.stderr)
    from classifiers import build_classifier
    from classifiers.base import Roster
    from monitor.app import build_classifier_for
    from monitor.classify_io import classify_stream

    try:
        classifier = build_classifier_for(settings) if settings else build_classifier(Roster())
    except ConfigError as err:
        for problem in err.problems:
            click.echo(problem, err=True)
        raise SystemExit(2) from None
    report = classify_stream(classifier, source, sys.stdout, sys.stderr)
    if report.malformed:
        raise SystemExit(2)


@main.group()
def sources() -> None:
    """Inspect and resume sources."""


@sources.command("list")
@config_option
def sources_list(config_path: Path) -> None:
    """Health of every source: last poll, last error, pause (no content)."""
    settings = _settings(config_path)
    _logging(settings, "error")
    from monitor.checks import source_health

    for line in _run(source_health(settings)):
        click.echo(line)


@sources.command("resume")
@config_option
@click.argument("name")
def sources_resume(config_path: Path, name: str) -> None:
    """Lift a source's pause (after renewing its credentials)."""
    settings = _settings(config_path)
    _logging(settings, "error")
    from monitor.checks import resume_source

    if not _run(resume_source(settings, name)):
        click.echo(f"no source called {name!r} has been polled yet", err=True)
        raise SystemExit(2)
    click.echo(f"source {name} resumed")


@main.group()
def actions() -> None:
    """Approve, reject or undo actions (the review app will do the same)."""


def _decide(config_path: Path, action_id: int, approve: bool, by: str, reason: str) -> None:
    settings = _settings(config_path)
    _logging(settings, "error")
    from actions.states import ActionError
    from monitor.checks import decide
    from monitor.store import StoreError

    try:
        state = _run(decide(settings, action_id, approve=approve, by=by, reason=reason))
    except (StoreError, ActionError) as err:  # unknown action, or a transition not allowed
        click.echo(str(err), err=True)
        raise SystemExit(2) from None
    click.echo(f"action {action_id} is now {state}")


@actions.command("approve")
@config_option
@click.argument("action_id", type=int)
@click.option("--by", required=True, help="Who approves it (recorded in the audit log).")
@click.option("--reason", default="approved by a moderator", show_default=True)
def actions_approve(config_path: Path, action_id: int, by: str, reason: str) -> None:
    """Approve a proposed action; the daemon carries it out (after evidence, for a hide)."""
    _decide(config_path, action_id, True, by, reason)


@actions.command("reject")
@config_option
@click.argument("action_id", type=int)
@click.option("--by", required=True, help="Who rejects it (recorded in the audit log).")
@click.option("--reason", required=True, help="Why (recorded in the audit log).")
def actions_reject(config_path: Path, action_id: int, by: str, reason: str) -> None:
    """Reject a proposed (or not yet started) action."""
    _decide(config_path, action_id, False, by, reason)


@actions.command("undo")
@config_option
@click.argument("action_id", type=int)
@click.option("--by", required=True, help="Who undoes it (recorded in the audit log).")
@click.option("--reason", required=True, help="Why (recorded in the audit log).")
def actions_undo(config_path: Path, action_id: int, by: str, reason: str) -> None:
    """Undo a hide: adds an approved unhide for the same post."""
    settings = _settings(config_path)
    _logging(settings, "error")
    from monitor.checks import undo
    from monitor.store import StoreError

    try:
        added = _run(undo(settings, action_id, by=by, reason=reason))
    except StoreError as err:
        click.echo(str(err), err=True)
        raise SystemExit(2) from None
    click.echo(f"unhide action {added} added; the daemon will carry it out")


@main.group()
def cases() -> None:
    """Letters and other documents made from a case."""


@cases.command("letter")
@config_option
@click.argument("case_id", type=int)
@click.option("--parent", required=True, help="How to address the parent, e.g. 'Mr and Mrs Smith'.")
@click.option("--from", "sender", required=True, help="Who signs the letter.")
@click.option("--role", default="Headteacher", show_default=True, help="The signatory's role.")
@click.option(
    "--complaints", default=None, help="Where the complaints procedure is (a web address)."
)
@click.option("--html", is_flag=True, help="Print the HTML version instead of plain text.")
def cases_letter(
    config_path: Path,
    case_id: int,
    parent: str,
    sender: str,
    role: str,
    complaints: str | None,
    html: bool,
) -> None:
    """Print a letter asking a parent to take a post down and come in to talk (editable)."""
    settings = _settings(config_path)
    _logging(settings, "error")
    from monitor.checks import parent_letter
    from monitor.store import StoreError

    try:
        text = _run(
            parent_letter(
                settings,
                case_id,
                parent=parent,
                sender=sender,
                role=role,
                complaints=complaints,
                html=html,
            )
        )
    except StoreError as err:
        click.echo(str(err), err=True)
        raise SystemExit(2) from None
    click.echo(text)


@cases.command("hold")
@config_option
@click.argument("case_id", type=int)
@click.option("--reason", required=True, help="Why it must be kept (recorded in the audit log).")
def cases_hold(config_path: Path, case_id: int, reason: str) -> None:
    """Put a case on legal hold: never purged, whatever its age, until released."""
    settings = _settings(config_path)
    _logging(settings, "error")
    from monitor.retention_cmd import hold_case
    from monitor.store import StoreError

    try:
        _run(hold_case(settings, case_id, reason=reason, actor=_cli_actor()))
    except (StoreError, ValueError) as err:  # unknown, already held or purged; empty reason
        click.echo(str(err), err=True)
        raise SystemExit(2) from None
    click.echo(f"case {case_id} is on legal hold")


@cases.command("release")
@config_option
@click.argument("case_id", type=int)
def cases_release(config_path: Path, case_id: int) -> None:
    """Release a case's legal hold: its retention period applies again."""
    settings = _settings(config_path)
    _logging(settings, "error")
    from monitor.retention_cmd import release_case
    from monitor.store import StoreError

    try:
        _run(release_case(settings, case_id, actor=_cli_actor()))
    except StoreError as err:  # unknown case, or not on hold
        click.echo(str(err), err=True)
        raise SystemExit(2) from None
    click.echo(f"case {case_id} is no longer on legal hold")


@main.command()
@config_option
@click.option("--dry-run", is_flag=True, help="List what would go (ids, counts); change nothing.")
def purge(config_path: Path, dry_run: bool) -> None:
    """Delete what the [retention] periods say is no longer needed, now (the daemon does it
    daily), and audit it. Prints ids and counts, never post text."""
    settings = _settings(config_path)
    _logging(settings, "error")
    from monitor import retention_cmd

    click.echo(retention_cmd.periods_line(settings))
    if dry_run:
        plan = _run(retention_cmd.dry_run(settings))
        click.echo("dry run, nothing changed; a purge now would remove:")
        for line in retention_cmd.plan_lines(plan):
            click.echo(f"  {line}")
        return
    outcome = _run(retention_cmd.purge_now(settings, actor=_cli_actor()))
    click.echo("purged:")
    for line in retention_cmd.plan_lines(outcome.plan):
        click.echo(f"  {line}")
    click.echo(f"files deleted: {outcome.files_deleted}; left behind: {outcome.files_failed}")
    if outcome.files_failed:
        raise SystemExit(1)


@main.command("export")
@config_option
@click.option("--author", required=True, help="The author's handle (any platform; @ optional).")
@zip_out_option
def export(config_path: Path, author: str, out: Path) -> None:
    """Subject access request: everything held about one author's posts, as a ZIP (audited)."""
    settings = _settings(config_path)
    _logging(settings, "error")
    from monitor.sar_export import export_author

    try:
        outcome = _run(export_author(settings, author, out, actor=_cli_actor()))
    except FileExistsError:
        click.echo(f"{out} already exists; choose another --out (never overwritten)", err=True)
        raise SystemExit(2) from None
    except ValueError as err:  # an empty handle
        click.echo(str(err), err=True)
        raise SystemExit(2) from None
    missing = f", {outcome.files_missing} missing" if outcome.files_missing else ""
    click.echo(
        f"{outcome.items} item(s), {outcome.files_included} evidence file(s){missing}; "
        "review it before disclosing"
    )
    click.echo(f"wrote {outcome.path} ({outcome.size} bytes) sha256 {outcome.sha256}")


@main.group()
def items() -> None:
    """Items that need a person's help."""


@items.command("requeue")
@config_option
def items_requeue(config_path: Path) -> None:
    """Send items held after repeated failures back through the stage they failed at."""
    settings = _settings(config_path)
    _logging(settings, "error")
    from monitor.checks import requeue_held

    count = _run(requeue_held(settings))
    click.echo(f"{count} held item(s) sent back through the pipeline")


@main.command()
@config_option
def web(config_path: Path) -> None:
    """Serve the review app (and acknowledgement links, /healthz) on its own, on web.host:web.port.

    For when `[web] serve = false` keeps it out of `vigil run`.
    """
    settings = _settings(config_path)
    _logging(settings)
    import uvicorn

    from monitor.web import create_app
    from monitor.web.server import uvicorn_options

    uvicorn.run(create_app(settings), **uvicorn_options(settings))  # type: ignore[arg-type]


@main.group()
def escalations() -> None:
    """DSL escalations."""


@escalations.command("ack")
@config_option
@click.argument("escalation_id", type=int)
@click.option("--by", required=True, help="Who is acknowledging (recorded in the audit log).")
def escalations_ack(config_path: Path, escalation_id: int, by: str) -> None:
    """Acknowledge an escalation (as its email link does), so it is not re-sent to deputies."""
    settings = _settings(config_path)
    _logging(settings, "error")
    from monitor.store import StoreError

    try:
        result = _run(_acknowledge(settings, escalation_id, by))
    except (StoreError, ValueError) as err:  # unknown escalation, or an empty name
        click.echo(str(err), err=True)
        raise SystemExit(2) from None
    at = f"{result.acknowledged_at:%Y-%m-%d %H:%M} UTC"
    if result.newly:
        click.echo(f"escalation {escalation_id} acknowledged by {result.acknowledged_by} at {at}")
    else:
        click.echo(
            f"escalation {escalation_id} was already acknowledged by "
            f"{result.acknowledged_by} at {at}"
        )


async def _acknowledge(settings: Settings, escalation_id: int, by: str) -> Any:
    from datetime import UTC, datetime

    from monitor.store import Store
    from monitor.store.escalations import acknowledge

    store = Store.open(settings.database_url())
    try:
        return await acknowledge(store, escalation_id, by, datetime.now(UTC), via="cli")
    finally:
        await store.close()


@main.group()
def evidence() -> None:
    """Verify the evidence hash chain; export a case's evidence for police, LADO or CEOP."""


@evidence.command("verify")
@config_option
@click.option("--school", default=None, help="Verify only this school (its slug).")
def evidence_verify(config_path: Path, school: str | None) -> None:
    """Check every school's chain and files; exit 1 if anything was changed or removed."""
    settings = _settings(config_path)
    _logging(settings, "error")
    from monitor.evidence_cmd import UnknownSchool, verify_evidence

    try:
        results = _run(verify_evidence(settings, school=school))
    except UnknownSchool:
        click.echo(f"no school with slug {school!r}", err=True)
        raise SystemExit(2) from None
    for result in results:
        for problem in result.report.problems:
            click.echo(str(problem))
    for result in results:
        click.echo(result.summary())
    if any(not r.report.intact for r in results):
        raise SystemExit(1)
    click.echo("evidence intact")


@evidence.command("export")
@config_option
@click.argument("case_id", type=int)
@zip_out_option
def evidence_export(config_path: Path, case_id: int, out: Path) -> None:
    """Write a case's evidence, chain of custody and HTML summary to a ZIP."""
    settings = _settings(config_path)
    _logging(settings, "error")
    from monitor.evidence_cmd import UnknownCase, export_case

    try:
        outcome = _run(export_case(settings, case_id, out))
    except UnknownCase:
        click.echo(f"no case with id {case_id}", err=True)
        raise SystemExit(2) from None
    except FileExistsError:
        click.echo(f"{out} already exists; choose another --out (never overwritten)", err=True)
        raise SystemExit(2) from None
    for problem in outcome.problems:
        click.echo(f"warning: {problem}", err=True)
    withheld = f", {outcome.files_withheld} withheld" if outcome.files_withheld else ""
    missing = f", {outcome.files_missing} missing" if outcome.files_missing else ""
    click.echo(
        f"case {case_id}: {outcome.entries} evidence entr{'y' if outcome.entries == 1 else 'ies'}, "
        f"{outcome.files_included} file(s) included{withheld}{missing}; "
        f"{'intact' if not outcome.problems else 'NOT INTACT (see summary.html)'}"
    )
    click.echo(f"wrote {outcome.path} ({outcome.size} bytes) sha256 {outcome.sha256}")


@main.command()
@config_option
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--pg-dump/--no-pg-dump",
    "run_pg_dump",
    default=True,
    show_default=True,
    help="PostgreSQL: run pg_dump if it is on PATH, or only print its command.",
)
def backup(config_path: Path, directory: Path, run_pg_dump: bool) -> None:
    """Back up the database, evidence, outbox and report packs into a new DIRECTORY.

    Safe while Vigil runs. Exit 1 if the copy's evidence chain does not verify, or the
    PostgreSQL database could not be dumped (unless --no-pg-dump).
    """
    settings = _settings(config_path)
    _logging(settings, "error")
    from monitor.backup import BackupError, DirectoryNotEmpty, create_backup
    from monitor.store import UNREACHABLE
    from monitor.store.snapshot import SnapshotError

    try:
        outcome = _run(create_backup(settings, directory, run_pg_dump=run_pg_dump))
    except DirectoryNotEmpty as err:
        click.echo(str(err), err=True)
        raise SystemExit(2) from None
    except (BackupError, SnapshotError) as err:
        click.echo(f"backup failed: {err}", err=True)
        raise SystemExit(1) from None
    except UNREACHABLE as err:  # the database, or DIRECTORY (OSError)
        click.echo(f"backup failed: {err}", err=True)
        raise SystemExit(1) from None
    for line in outcome.lines():
        click.echo(line)
    if not outcome.intact or (outcome.dump_skipped and run_pg_dump):
        raise SystemExit(1)


@main.command()
@config_option
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Move the existing database and files aside first.")
def restore(config_path: Path, directory: Path, force: bool) -> None:
    """Check a backup's hashes, restore it (Vigil stopped), and verify the evidence chain.

    Exit 2 if the backup does not match its manifest or would replace existing data (without
    --force), 1 if the restored evidence does not verify.
    """
    settings = _settings(config_path)
    _logging(settings, "error")
    from monitor.backup import BackupError
    from monitor.restore import restore_backup

    try:
        outcome = _run(restore_backup(settings, directory, force=force))
    except BackupError as err:
        click.echo(f"not restored: {err}", err=True)
        raise SystemExit(2) from None
    except OSError as err:
        click.echo(f"restore failed part-way: {err}", err=True)
        raise SystemExit(1) from None
    for line in outcome.lines():
        click.echo(line)
    if not outcome.intact:
        raise SystemExit(1)


@main.group()
def models() -> None:
    """Local model files: the trained text classifier and Detoxify (nothing is downloaded)."""


@models.command("prepare")
@click.option(
    "--checkpoint",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The Detoxify checkpoint to read. It is a pickle, and unpickling can run code: "
    "name only a file you trust (e.g. one you downloaded from Detoxify's releases yourself).",
)
@click.option(
    "--config-dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The local Hugging Face directory: config.json (num_labels as the checkpoint) "
    "and the tokenizer files.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the prepared checkpoint (never overwritten).",
)
def models_prepare(checkpoint: Path, config_dir: Path, out: Path) -> None:
    """Re-save a Detoxify checkpoint to load from a local directory, never the Hugging Face hub.

    Checkpoints are pickles: this loads only the file you name, and you must trust it.
    """
    configure_logging(level="warning", stream=sys.stderr)
    from monitor.models import PrepareError, prepare_checkpoint

    try:
        prepared = prepare_checkpoint(checkpoint, config_dir, out)
    except PrepareError as err:
        click.echo(str(err), err=True)
        raise SystemExit(2) from None
    click.echo(prepared.summary())


@models.command("train")
@click.option(
    "--data",
    "data",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A labelled file in the school-suite format; repeat for several. "
    "Default: every classifiers/training/*.jsonl.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The model directory to write (default: the model shipped with Vigil).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Training seed.")
@click.option(
    "--if-stale",
    is_flag=True,
    help="Do nothing when the model was already trained on exactly these files and seed.",
)
def models_train(data: tuple[Path, ...], out: Path | None, seed: int, if_stale: bool) -> None:
    """Train the text classifier (detector "textcat") from labelled school posts."""
    configure_logging(level="warning", stream=sys.stderr)
    from classifiers import textcat

    target = out or textcat.BUILTIN_MODEL
    try:
        posts = textcat.build(data, target, seed=seed, if_stale=if_stale)
    except textcat.TrainingError as err:
        click.echo(str(err), err=True)
        raise SystemExit(2) from None
    if posts is None:
        click.echo(f"up to date: {target}")
        return
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    flagged = sum(1 for p in posts if p.flags)
    files = f"{len(data)} files" if data else "the shipped training files"
    click.echo(
        f"trained on {len(posts)} posts ({flagged} flagged) from {files}: "
        f"{target} ({size / 1e6:.1f} MB)"
    )


@main.command("eval")
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    help="school, davidson, olid, sms or youtube; repeat for several. Default: all available.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the public datasets are ($VIGIL_EVAL_DATA; default: ../shared/data "
    "beside the repository).",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N texts each.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of tables.")
@click.option("--strict", is_flag=True, help="Exit 1 if any target fails.")
@click.option(
    "--suite",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A school suite file in the same format to use for 'school' (default: "
    "tests/eval/school_suite.jsonl), e.g. a held-out set or your own school's labelled posts.",
)
def eval_(
    datasets: tuple[str, ...],
    data_dir: Path | None,
    limit: int | None,
    as_json: bool,
    strict: bool,
    suite: Path | None,
) -> None:
    """Measure the classifiers on labelled datasets: per-flag precision/recall/F1 and targets."""
    configure_logging(level="warning", stream=sys.stderr)
    import json

    from monitor.evaluate import SUITE, EvaluationError, format_run, run

    try:
        result = run(datasets, data_dir=data_dir, limit=limit, suite=suite or SUITE)
    except EvaluationError as err:  # an unknown dataset name, or a malformed file
        click.echo(str(err), err=True)
        raise SystemExit(2) from None
    click.echo(json.dumps(result.to_json(), indent=2) if as_json else format_run(result))
    if strict and not result.passed:
        raise SystemExit(1)


@main.group()
def user() -> None:
    """Review-app users: add, change a password, disable, list."""


password_stdin_option = click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of stdin instead of prompting.",
)


@user.command("add")
@config_option
@click.argument("username")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["moderator", "dsl", "admin"]),
    help="moderator: non-safeguarding cases; dsl: everything; admin: users, sources, settings.",
)
@click.option("--name", "display_name", required=True, help="The name shown in the app.")
@click.option("--email", required=True, help="The user's email address.")
@password_stdin_option
def user_add(
    config_path: Path,
    username: str,
    role: str,
    display_name: str,
    email: str,
    password_stdin: bool,
) -> None:
    """Add a user of the review app, in the configured school."""
    settings = _settings(config_path)
    _logging(settings, "error")
    from monitor.store import StoreError
    from monitor.store.users import Role

    password_hash = _new_password_hash(password_stdin)
    try:
        added = _run(_add_user(settings, username, Role(role), display_name, email, password_hash))
    except (StoreError, ValueError) as err:  # a taken username, or a malformed field
        click.echo(str(err), err=True)
        raise SystemExit(2) from None
    click.echo(f"user {added.username} added ({added.role})")


@user.command("passwd")
@config_option
@click.argument("username")
@password_stdin_option
def user_passwd(config_path: Path, username: str, password_stdin: bool) -> None:
    """Set a user's password; it signs them out everywhere."""
    settings = _settings(config_path)
    _logging(settings, "error")
    from monitor.store.users import set_password

    password_hash = _new_password_hash(password_stdin)
    _change_user(settings, set_password, username, password_hash)
    click.echo(f"password for {username} changed; their sessions have ended")


@user.command("disable")
@config_option
@click.argument("username")
def user_disable(config_path: Path, username: str) -> None:
    """Disable a user: they can no longer sign in, and their sessions end."""
    settings = _settings(config_path)
    _logging(settings, "error")
    from monitor.store.users import disable_user

    _change_user(settings, disable_user, username)
    click.echo(f"user {username} disabled")


@user.command("list")
@config_option
def user_list(config_path: Path) -> None:
    """Every user: username, role, status, name and email."""
    settings = _settings(config_path)
    _logging(settings, "error")
    for record in _run(_list_users(settings)):
        status = "disabled" if record.disabled else "active"
        click.echo(
            f"{record.username}\t{record.role}\t{status}\t{record.display_name}\t{record.email}"
        )


def _new_password_hash(from_stdin: bool) -> str:
    """Read a new password (stdin, or prompted twice unseen), check and hash it; exit 2 if weak."""
    from monitor.web.auth import hash_password, password_problem

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    problem = password_problem(password)
    if problem is not None:
        click.echo(f"password refused: {problem}", err=True)
        raise SystemExit(2)
    return hash_password(password)


def _cli_actor() -> str:
    """Who ran the command, for the audit log."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name (e.g. a uid without a passwd entry)
        return "cli"


async def _add_user(
    settings: Settings,
    username: str,
    role: Any,
    display_name: str,
    email: str,
    password_hash: str,
) -> Any:
    from datetime import UTC, datetime

    from monitor.store import Store
    from monitor.store.users import add_user

    store = Store.open(settings.database_url())
    try:
        now = datetime.now(UTC)
        school_id = await store.ensure_school(settings.school.slug, settings.school.name, now)
        return await add_user(
            store,
            username=username,
            display_name=display_name,
            email=email,
            role=role,
            password_hash=password_hash,
            school_ids=[school_id],
            actor=_cli_actor(),
            now=now,
        )
    finally:
        await store.close()


def _change_user(settings: Settings, change: Any, username: str, *args: str) -> None:
    """Run ``change(store, username, *args, actor=..., now=...)``; exit 2 for an unknown user."""
    from monitor.store import StoreError

    try:
        _run(_change_user_in_store(settings, change, username, *args))
    except StoreError as err:
        click.echo(str(err), err=True)
        raise SystemExit(2) from None


async def _change_user_in_store(settings: Settings, change: Any, username: str, *args: str) -> None:
    from datetime import UTC, datetime

    from monitor.store import Store

    store = Store.open(settings.database_url())
    try:
        await change(store, username, *args, actor=_cli_actor(), now=datetime.now(UTC))
    finally:
        await store.close()


async def _list_users(settings: Settings) -> Any:
    from monitor.store import Store
    from monitor.store.users import list_users

    store = Store.open(settings.database_url())
    try:
        return await list_users(store)
    finally:
        await store.close()
