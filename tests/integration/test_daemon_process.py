"""`vigil run` as a real process: SIGKILL mid-replay loses and repeats nothing; SIGTERM drains.

These start the installed `vigil` command, so they test what systemd runs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import DEMO_POSTS, FIXTURES, ROSTER_TOML

VIGIL = [sys.executable, "-m", "monitor"]
TIMEOUT = 120.0


def demo_texts() -> tuple[list[str], list[str]]:
    """The demo's post texts, split into (expected clean, expected flagged) by their labels."""
    labels = {
        (r["platform"], r["external_id"]): r
        for r in map(json.loads, (FIXTURES / "demo_labels.jsonl").read_text().splitlines())
    }
    clean, flagged = [], []
    for event in map(json.loads, DEMO_POSTS.read_text().splitlines()):
        label = labels.get((event["platform"], event["external_id"]))
        if event["op"] == "post" and label is not None:
            (flagged if label["flags"] else clean).append(event["text"])
    return clean, flagged


def write_posts(path: Path, count: int) -> None:
    """``count`` posts, one in twenty of them harmful, each with its own id.

    Mostly benign, as a real feed is; the harmful ones still reach every stage.
    """
    clean, flagged = demo_texts()
    with path.open("w", encoding="utf-8") as out:
        for n in range(count):
            text = flagged[n // 20 % len(flagged)] if n % 20 == 0 else clean[n % len(clean)]
            minute, day = n % 60, 1 + n // 1000
            out.write(
                json.dumps(
                    {
                        "op": "post",
                        "platform": "facebook",
                        "external_id": f"crash-{n}",
                        "source": "own",
                        "author_handle": f"parent{n % 97}",
                        "text": text,
                        "created_at": f"2026-11-0{day}T{n // 60 % 24:02d}:{minute:02d}:00Z",
                        "permalink": f"https://www.facebook.com/oakfieldprimary/posts/1?comment_id={n}",
                    }
                )
                + "\n"
            )


def write_config(
    tmp_path: Path,
    posts: Path,
    *,
    web_port: int | None = None,
    database_url: str | None = None,
    **daemon: object,
) -> Path:
    """A replay config; ``database_url`` for PostgreSQL (default: SQLite in the state dir)."""
    state = tmp_path / "state"
    database = f'[database]\nurl = "{database_url}"\n' if database_url else ""
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in daemon.items())
    web = f"serve = true\nport = {web_port}" if web_port else "serve = false"
    config = tmp_path / "config.toml"
    config.write_text(f"""
{ROSTER_TOML}
[[school.staff]]
name = "Priya Shah"
role = "dsl"
email = "dsl@oakfield.example.sch.uk"

[[sources]]
name = "replay"
platform = "replay"
kind = "own"
interval = 60
max_items_per_poll = 100000
options = {{ path = "{posts}", page_size = 100, moderation_log = "{tmp_path / "calls.jsonl"}" }}

{database}
[evidence]
renderer = "pillow"

[web]
{web}

[daemon]
state_dir = "{state}"
batch_size = 50
log_format = "json"
{extra}
""")
    return config


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def healthz(port: int) -> int:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code
    except httpx.HTTPError:
        return 0


def vigil(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*VIGIL, *args], capture_output=True, text=True, timeout=TIMEOUT, check=False, **kwargs
    )  # type: ignore[call-overload,no-any-return]


def count(db: Path, sql: str) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:  # table not there yet, or locked: not yet
        return 0


def wait_for(predicate: Callable[[], bool], proc: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(
                f"vigil exited ({proc.returncode}) before {what}: "
                f"{proc.stderr.read() if proc.stderr else ''}"
            )
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def kill_when(config: Path, predicate: Callable[[], bool], what: str) -> None:
    proc = subprocess.Popen(
        [*VIGIL, "run", "--once", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(predicate, proc, what)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)  # reap it and close the pipe
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_sigkill_mid_replay_loses_nothing_and_repeats_nothing(tmp_path: Path) -> None:
    posts = tmp_path / "posts.jsonl"
    write_posts(posts, 2000)
    config = write_config(tmp_path, posts)
    assert vigil("db", "upgrade", "--config", str(config)).returncode == 0
    db = tmp_path / "state" / "vigil.db"
    # once while ingesting, once while classifying, once while acting
    kill_when(config, lambda: count(db, "SELECT count(*) FROM items") >= 500, "ingest under way")
    kill_when(
        config,
        lambda: count(db, "SELECT count(*) FROM verdicts") >= 300,
        "classification under way",
    )
    kill_when(
        config,
        lambda: count(db, "SELECT count(*) FROM actions WHERE state = 'done'") >= 20,
        "actions under way",
    )
    finished = vigil("run", "--once", "--config", str(config))
    assert finished.returncode == 0, finished.stderr

    with sqlite3.connect(db) as conn:
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        assert one("SELECT count(*) FROM items") == 2000
        assert one("SELECT count(*) FROM verdicts") == 2000  # each post classified exactly once
        assert one("SELECT count(*) FROM items WHERE stage != 'done'") == 0
        assert (
            one(
                "SELECT count(*) FROM "
                "(SELECT item_id, kind FROM actions GROUP BY 1, 2 HAVING count(*) > 1)"
            )
            == 0
        )
        assert (
            one("SELECT count(*) FROM actions WHERE state IN ('running', 'approved', 'failed')")
            == 0
        )
        escalations = one("SELECT count(*) FROM escalations WHERE state = 'sent'")
        assert escalations == one("SELECT count(*) FROM actions WHERE kind = 'escalate'") > 0
        flagged = one("SELECT count(*) FROM items WHERE state = 'flagged'")
        assert one("SELECT count(*) FROM evidence") == flagged > 0
    emails = list((tmp_path / "state" / "outbox").glob("*.eml"))
    assert len(emails) == escalations  # no email written twice


@pytest.mark.slow
def test_sigterm_drains_and_tells_systemd(tmp_path: Path) -> None:
    posts = tmp_path / "posts.jsonl"
    write_posts(posts, 200)
    port = free_port()
    config = write_config(tmp_path, posts, web_port=port, tick=0.2, shutdown_grace=5)
    assert vigil("db", "upgrade", "--config", str(config)).returncode == 0
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify_path = tmp_path / "notify.sock"
    notify.bind(str(notify_path))
    notify.settimeout(TIMEOUT)
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path)}
    proc = subprocess.Popen(
        [*VIGIL, "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        messages = [notify.recv(4096).decode()]
        assert "READY=1" in messages[0]
        db = tmp_path / "state" / "vigil.db"
        wait_for(
            lambda: count(db, "SELECT count(*) FROM items WHERE stage = 'done'") == 200,
            proc,
            "every item through the pipeline",
        )
        # `vigil run` serves the web app on the same loop and store
        wait_for(lambda: healthz(port) == 200, proc, "the web app answering /healthz")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        notify.close()
    assert proc.returncode == 0, stderr
    events = [json.loads(line)["event"] for line in stderr.splitlines() if line.startswith("{")]
    assert "daemon_ready" in events and events[-1] == "daemon_stopped"
    assert "daemon_stopping" in events
