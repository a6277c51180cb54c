"""Time from a post being flagged to its DSL escalation accepted by an SMTP server.

Run:  .venv/bin/python bench/escalation.py [--posts 20]
A real aiosmtpd server on loopback receives the mail; the clock starts when an item's
verdict is recorded (flagged) and stops when the server has accepted its escalation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor.app import build_app  # noqa: E402
from monitor.config import parse_settings  # noqa: E402
from monitor.logging import configure_logging  # noqa: E402
from monitor.store.migrate import upgrade  # noqa: E402

TEXT = "how old are you? this is our little secret, add me on snap"


class Inbox:
    """Records when each message arrived."""

    def __init__(self) -> None:
        self.arrived: list[float] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.arrived.append(time.perf_counter())
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def measure(posts: int) -> list[float]:
    state = Path(tempfile.mkdtemp())
    feed = state / "feed.jsonl"
    feed.write_text(
        "".join(
            json.dumps(
                {
                    "op": "post",
                    "platform": "facebook",
                    "external_id": f"p{n}",
                    "created_at": "2026-11-02T09:00:00Z",
                    "text": f"{TEXT} ({n})",
                }
            )
            + "\n"
            for n in range(posts)
        )
    )
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings = parse_settings(
        {
            "school": {
                "name": "Oakfield Primary School",
                "staff": [{"name": "P Shah", "role": "dsl", "email": "dsl@oakfield.example"}],
            },
            "daemon": {"state_dir": str(state)},
            "evidence": {"renderer": "pillow"},
            "email": {"smtp_host": "127.0.0.1", "smtp_port": port, "starttls": False},
            "sources": [
                {"name": "r", "platform": "replay", "kind": "own", "options": {"path": str(feed)}}
            ],
        },
        path=state / "config.toml",
    )
    await upgrade(settings.database_url())
    app = await build_app(settings)
    try:
        await app.poll_all()
        await app.pipeline.classify_batch()
        flagged = time.perf_counter()
        await app.pipeline.drain()
    finally:
        await app.close()
        controller.stop()
    return [arrived - flagged for arrived in inbox.arrived]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=20)
    args = parser.parse_args()
    configure_logging(level="error")
    latencies = asyncio.run(measure(args.posts))
    print(f"{len(latencies)} escalations accepted by SMTP after the batch was flagged:")
    first, median = min(latencies) * 1000, statistics.median(latencies) * 1000
    print(f"  first {first:.0f} ms, median {median:.0f} ms, last {max(latencies) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
