"""Evidence captures per second: Chromium (page pool, context or browser per card) vs Pillow.

Run:  .venv/bin/python bench/evidence.py [--cards 40] [--concurrency 2]
Each capture = render the card + write raw.json, metadata.json and card.png (fsynced) into the
hash chain, as the pipeline does. Post texts vary in length (40 chars to 4 kB). Needs the
system Chromium at /usr/bin/chromium (or --chromium).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from actions.evidence import GENESIS_HASH, EvidenceSubject, EvidenceWriter  # noqa: E402
from actions.render import (  # noqa: E402
    CardContent,
    CardRenderer,
    ChromiumRenderer,
    PillowRenderer,
    render_card,
)

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
FONT = DEJAVU if DEJAVU.exists() else None
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def subject(i: int) -> EvidenceSubject:
    words = "Mr Smith is a disgrace and everyone at the school gate knows it 😡 "
    return EvidenceSubject(
        school="Oakfield Primary", platform="facebook", external_id=f"c{i}", version=1,
        author_handle=f"@parent{i}", author_name="A Parent", author_id=str(1000 + i),
        text=words * (1 + (i * 7) % 60), permalink=f"https://www.facebook.com/p/{i}",
        created_at=NOW, parent_text="Photos from the Year 5 trip" if i % 2 else None,
        raw_json=f'{{"id": "{i}"}}', verdict_summary="flags: abusive; severity: high",
        child_imagery=False,
    )  # fmt: skip


async def run(
    name: str,
    make: Callable[[], Awaitable[CardRenderer]],
    items: list[EvidenceSubject],
    concurrency: int,
    per_card_renderer: bool = False,
) -> None:
    root = Path(tempfile.mkdtemp(prefix="vigil-bench-"))
    writer = EvidenceWriter(root, font_path=FONT)
    renderer = None if per_card_renderer else await make()
    if renderer is not None:  # warm up: browser launch is reported separately
        started = time.perf_counter()
        await render_card(renderer, CardContent.from_subject(items[0], captured_at=NOW))
        print(f"{name:34s} first card (incl. launch) {time.perf_counter() - started:6.2f} s")
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(subject: EvidenceSubject) -> None:
        async with gate:
            began = time.perf_counter()
            own = renderer or await make()
            card = await render_card(own, CardContent.from_subject(subject, captured_at=NOW))
            if renderer is None:
                await own.close()
            await asyncio.to_thread(
                writer.capture, subject, captured_at=NOW, prev_hash=GENESIS_HASH,
                card=card.png, renderer=card.renderer,
            )  # fmt: skip
            latencies.append(time.perf_counter() - began)

    started = time.perf_counter()
    await asyncio.gather(*(one(s) for s in items))
    elapsed = time.perf_counter() - started
    if renderer is not None:
        await renderer.close()
    report(name, len(items), elapsed, latencies)


def report(name: str, count: int, elapsed: float, latencies: list[float]) -> None:
    latencies.sort()
    p95 = latencies[max(0, int(len(latencies) * 0.95) - 1)]
    print(
        f"{name:34s} {count / elapsed:6.1f} captures/s   "
        f"median {statistics.median(latencies) * 1000:6.0f} ms   p95 {p95 * 1000:6.0f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cards", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--chromium", type=Path, default=Path("/usr/bin/chromium"))
    args = parser.parse_args()
    items = [subject(i) for i in range(args.cards)]

    async def pool() -> CardRenderer:
        return ChromiumRenderer(executable_path=args.chromium, concurrency=args.concurrency)

    async def contexts() -> CardRenderer:
        return ChromiumRenderer(
            executable_path=args.chromium, concurrency=args.concurrency, reuse_pages=False
        )

    async def pillow() -> CardRenderer:
        return PillowRenderer(font_path=FONT)

    print(f"{args.cards} captures, concurrency {args.concurrency}")
    await run("chromium, reused browser + page pool", pool, items, args.concurrency)
    await run("chromium, reused browser, new context", contexts, items, args.concurrency)
    few = items[: max(4, args.cards // 8)]
    await run("chromium, new browser per card", pool, few, args.concurrency, True)
    await run("pillow", pillow, items, args.concurrency)


if __name__ == "__main__":
    asyncio.run(main())
