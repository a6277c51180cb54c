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
