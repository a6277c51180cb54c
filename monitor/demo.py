"""`vigil demo`: the whole pipeline on the bundled sample data, in a fresh state directory."""

from __future__ import annotations

import json
import shutil
import tomllib
from collections.abc import Mapping
from datetime import datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any

from monitor.app import App, build_app
from monitor.config import Settings, parse_settings
from monitor.store.migrate import upgrade

__all__ = ["DEMO_MARKER", "demo_settings", "format_summary", "prepare_state_dir", "run_demo"]

DEMO_MARKER = ".vigil-demo"
STEP = timedelta(hours=3)


def bundled(name: str) -> Path:
    """A file shipped in ``monitor/demo``."""
    return Path(str(files("monitor").joinpath("demo", name)))


def prepare_state_dir(state_dir: Path) -> None:
    """Empty a previous demo directory, or create a new one; never touch anything else."""
    if state_dir.exists() and any(state_dir.iterdir()):
        if not (state_dir / DEMO_MARKER).exists():
            raise FileExistsError(f"{state_dir} is not empty and is not a Vigil demo directory")
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / DEMO_MARKER).write_text(
        "created by `vigil demo`; safe to delete\n", encoding="utf-8"
    )


def demo_settings(state_dir: Path, posts: Path | None = None) -> Settings:
    """The demo config with its state directory and replay file filled in."""
    path = bundled("config.toml")
    data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    data.setdefault("daemon", {})["state_dir"] = str(state_dir)
    for source in data["sources"]:
        options = source.setdefault("options", {})
        options["path"] = str(posts or bundled("posts.jsonl"))
        options["moderation_log"] = str(state_dir / "platform-calls.jsonl")
    return parse_settings(data, path=path)


class SimulatedClock:
    """The demo's clock: starts at the first recorded post and is moved on by ``replay``."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def recorded_span(posts: Path) -> tuple[datetime, datetime]:
    """The first and last ``at`` times in a replay file."""
    times = [
        datetime.fromisoformat(json.loads(line)["at"].replace("Z", "+00:00"))
        for line in posts.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    return min(times), max(times)


async def run_demo(state_dir: Path) -> dict[str, Any]:
    """Migrate, replay every demo post through every stage, and return the store's summary."""
    prepare_state_dir(state_dir)
    settings = demo_settings(state_dir)
    await upgrade(settings.database_url())
    first, last = recorded_span(bundled("posts.jsonl"))
    clock = SimulatedClock(first)
    app = await build_app(settings, clock=clock)
    try:
        await replay(app, clock, until=last)
        summary = await app.store.summary()
    finally:
        await app.close()
    outbox = settings.under_state(settings.email.outbox_dir)
    summary["paths"] = {
        "state_dir": str(state_dir),
        "database": settings.database_url(),
        "evidence": str(settings.under_state(settings.evidence.dir)),
        "outbox": str(outbox),
        "platform_calls": str(state_dir / "platform-calls.jsonl"),
    }
    summary["emails"] = sorted(p.name for p in outbox.glob("*.eml")) if outbox.exists() else []
    return summary


async def replay(app: App, clock: SimulatedClock, *, until: datetime) -> int:
    """Play the recorded weeks in ``STEP`` steps: poll, then drain every stage, each step.

    The daemon interleaves polling and the pipeline the same way over time, so a post edited
    after it was classified is classified again as a new version.
    """
    rounds = 0
    while True:
        await app.run_once()
        rounds += 1
        if clock.now > until:
            return rounds
        clock.now += STEP


def _lines(title: str, counts: Mapping[str, int]) -> list[str]:
    rows = [f"{title}:"]
    rows += [f"  {key:<28} {value:>5}" for key, value in sorted(counts.items())] or ["  (none)"]
    return rows


def _email_kinds(names: list[str]) -> dict[str, int]:
    """Outbox files by kind, from their Message-ID-based names."""
    kinds = {
        "DSL escalations": 0,
        "re-sent to deputy DSLs": 0,
        "daily digests": 0,
        "admin alerts": 0,
    }
    for name in names:
        if name.startswith("digest-"):
            kinds["daily digests"] += 1
        elif name.startswith("alert-"):
            kinds["admin alerts"] += 1
        elif "-resend" in name:
            kinds["re-sent to deputy DSLs"] += 1
        else:
            kinds["DSL escalations"] += 1
    return kinds


def format_summary(summary: Mapping[str, Any]) -> str:
    """The demo summary as the terminal shows it."""
    flagged = summary["states"].get("flagged", 0)
    out = [
        "Vigil demo — Oakfield Primary School (fictional), bundled sample posts",
        f"items: {summary['items']} ({summary['versions']} versions incl. edits, "
        f"{summary['gone']} deleted "
        f"by their authors); verdicts: {summary['verdicts']}; flagged now: {flagged}; "
        f"cases: {summary['cases']}",
        *_lines("flagged verdicts per flag", summary["flags"]),
        *_lines(
            f"flagged verdicts per taxonomy cell ({len(summary['cells'])} distinct cells)",
            summary["cells"],
        ),
        *_lines("actions (kind:state)", summary["actions"]),
        *_lines("escalations", summary["escalations"]),
        f"evidence entries (hash-chained): {summary['evidence']}",
        *_lines("emails written (outbox)", _email_kinds(summary["emails"])),
        "",
        "where things are:",
    ]
    out += [f"  {key:<15} {value}" for key, value in summary["paths"].items()]
    return "\n".join(out)
