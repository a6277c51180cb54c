"""Three `vigil run` processes on one PostgreSQL database while 5,000 posts are replayed.

The installed command, as systemd runs it, three times over one database and one state
directory. Only one process at a time polls the source (advisory lock); all three claim
classify, decide, evidence and action work with ``FOR UPDATE SKIP LOCKED``. At the end every
post was classified exactly once, every action ran once, every escalation email went out
once, and the evidence chain verifies. The throughput it prints is the sizing guidance in
docs/architecture.md ("Several processes").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.integration.test_daemon_process import write_config, write_posts

VIGIL = [sys.executable, "-m", "monitor"]
POSTS = 5000
PROCESSES = 3
TIMEOUT = 150.0  # seconds for the whole replay; it takes about 40 on 2 cores


@dataclass(frozen=True, kw_only=True)
class Throughput:
    """How fast the processes got through the posts, from the first post stored to the last done."""

    seconds: float
    classified: tuple[int, ...]  # by process, from each one's items_classified log lines
    cpu_seconds: float  # user + system time of all the daemons, start-up included

    @property
    def total(self) -> float:
        """Posts per second, all processes together."""
        return sum(self.classified) / self.seconds

    def describe(self) -> str:
        """One line for the test output."""
        each = ", ".join(f"{n / self.seconds:.0f}" for n in self.classified)
        return (
            f"{len(self.classified)} process(es), {sum(self.classified)} posts in "
            f"{self.seconds:.1f} s: {self.total:.0f} posts/s in all; per process {each} posts/s; "
            f"{self.cpu_seconds:.0f} CPU-s ({sum(self.classified) / self.cpu_seconds:.0f} posts "
            "per CPU-second, start-up included)"
        )


def query(url: str, sql: str) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            return list(await conn.fetch(sql))
        finally:
            await conn.close()

    return asyncio.run(go())


def one(url: str, sql: str) -> int:
    return int(query(url, sql)[0][0])


def settled(url: str) -> bool:
    """Every post stored and done, and no action or escalation left to run."""
    return (
        one(
            url,
            f"""SELECT (SELECT count(*) FROM items WHERE stage = 'done') = {POSTS}
             AND NOT EXISTS (SELECT 1 FROM actions
                             WHERE state IN ('approved', 'running', 'failed'))
             AND NOT EXISTS (SELECT 1 FROM escalations WHERE state = 'queued')""",
        )
        == 1
    )


def events(log: Path, name: str) -> list[dict[str, Any]]:
    lines = (json.loads(x) for x in log.read_text().splitlines() if x.startswith("{"))
    return [e for e in lines if e.get("event") == name]


def run_processes(tmp_path: Path, url: str, processes: int) -> Throughput:
    """Start ``processes`` daemons, wait until the replay is settled, stop them with SIGTERM."""
    posts = tmp_path / "posts.jsonl"
    write_posts(posts, POSTS)
    config = write_config(tmp_path, posts, database_url=url, tick=0.2)
    upgrade = subprocess.run(
        [*VIGIL, "db", "upgrade", "--config", str(config)], capture_output=True, check=False
    )
    assert upgrade.returncode == 0, upgrade.stderr
    logs = [tmp_path / f"vigil-{n}.log" for n in range(processes)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with contextlib.ExitStack() as files:
        procs = [
            subprocess.Popen(
                [*VIGIL, "run", "--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=files.enter_context(log.open("wb")),  # a file: nobody has to drain it
            )
            for log in logs
        ]
        try:
            first = wait_until(lambda: one(url, "SELECT count(*) FROM items") > 0, procs)
            done = wait_until(lambda: settled(url), procs)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            codes = [proc.wait(timeout=60) for proc in procs]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert codes == [0] * processes, [log.read_text()[-2000:] for log in logs]
    classified = tuple(
        sum(int(e["count"]) for e in events(log, "items_classified")) for log in logs
    )
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return Throughput(seconds=done - first, classified=classified, cpu_seconds=cpu)


def wait_until(predicate: Callable[[], bool], procs: list[subprocess.Popen[bytes]]) -> float:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        exited = [p.returncode for p in procs if p.poll() is not None]
        assert not exited, f"a vigil process exited early with {exited}"
        time.sleep(0.1)  # real processes: polling them is the only way to wait
    raise AssertionError("timed out waiting for the replay to settle")


@pytest.mark.slow
@pytest.mark.postgres
def test_three_processes_share_the_work_and_do_everything_once(
    tmp_path: Path, postgres_url: str
) -> None:
    url = postgres_url
    throughput = run_processes(tmp_path, url, PROCESSES)
    print(f"\nthroughput: {throughput.describe()}")

    # every post classified exactly once, and by the processes together
    assert one(url, "SELECT count(*) FROM items") == POSTS
    assert one(url, "SELECT count(*) FROM item_versions") == POSTS
    assert one(url, "SELECT count(*) FROM verdicts") == POSTS
    assert sum(throughput.classified) == POSTS  # no batch classified twice, even uncommitted
    assert all(n > 0 for n in throughput.classified), throughput.classified

    # every action at most once: one row per (item, kind), one run each, one platform call each
    assert (
        one(
            url,
            "SELECT count(*) FROM (SELECT 1 FROM actions GROUP BY item_id, kind "
            "HAVING count(*) > 1) AS d",
        )
        == 0
    )
    assert (
        one(
            url,
            "SELECT count(*) FROM (SELECT 1 FROM action_transitions "
            "WHERE to_state = 'running' GROUP BY action_id HAVING count(*) > 1) AS d",
        )
        == 0
    )
    hides = one(url, "SELECT count(*) FROM actions WHERE kind = 'hide' AND state = 'done'")
    calls = [json.loads(x) for x in (tmp_path / "calls.jsonl").read_text().splitlines()]
    hidden = Counter(c["external_id"] for c in calls if c["call"] == "hide")
    assert len(hidden) == hides > 0 and set(hidden.values()) == {1}
    flagged = one(url, "SELECT count(*) FROM items WHERE state = 'flagged'")
    assert one(url, "SELECT count(*) FROM evidence") == flagged > 0

    # every escalation emailed once: one outbox file each, each sent by one process only
    sent = one(url, "SELECT count(*) FROM escalations WHERE state = 'sent'")
    assert sent == one(url, "SELECT count(*) FROM actions WHERE kind = 'escalate'") > 0
    emails = sorted((tmp_path / "state" / "outbox").glob("*.eml"))
    ids = [message_from_bytes(p.read_bytes(), policy=policy.default)["Message-ID"] for p in emails]
    assert len(emails) == len(set(ids)) == sent
    sends = Counter(
        e["escalation_id"]
        for log in tmp_path.glob("vigil-*.log")
        for e in events(log, "escalation_sent")
    )
    assert len(sends) == sent and set(sends.values()) == {1}

    # the chain, appended to by three processes, verifies
    verify = subprocess.run(
        [*VIGIL, "evidence", "verify", "--config", str(tmp_path / "config.toml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0 and "evidence intact" in verify.stdout, verify.stdout
