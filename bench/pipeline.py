"""Throughput benchmarks: the classifier alone, and posts through the whole pipeline on SQLite.

Run:  .venv/bin/python bench/pipeline.py [--posts 2000]
Prints numbers and ratios; nothing here is asserted by the tests (speed is measured, not timed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from classifiers import ClassifierOptions, build_classifier  # noqa: E402
from classifiers.base import Input  # noqa: E402
from monitor.app import build_app, roster_from  # noqa: E402
from monitor.config import Settings, parse_settings  # noqa: E402
from monitor.demo import bundled  # noqa: E402
from monitor.logging import configure_logging  # noqa: E402
from monitor.store.migrate import upgrade  # noqa: E402

LABELS = ROOT / "tests" / "fixtures" / "demo_labels.jsonl"


def demo_posts() -> list[dict[str, object]]:
    """The demo's post events with their expected flags."""
    labels = {
        (r["platform"], r["external_id"]): r
        for r in map(json.loads, LABELS.read_text().splitlines())
    }
    events = [json.loads(line) for line in bundled("posts.jsonl").read_text().splitlines()]
    return [
        {**e, "flags": labels[(e["platform"], e["external_id"])]["flags"]}
        for e in events
        if e["op"] == "post"
    ]


def write_feed(path: Path, count: int, flagged_share: float) -> None:
    """``count`` posts drawn from the demo, ``flagged_share`` of them harmful."""
    posts = demo_posts()
    clean = [p for p in posts if not p["flags"]]
    harmful = [p for p in posts if p["flags"]]
    every = max(1, round(1 / flagged_share)) if flagged_share else 0
    with path.open("w") as out:
        for n in range(count):
            base = harmful[n % len(harmful)] if every and n % every == 0 else clean[n % len(clean)]
            out.write(
                json.dumps({**base, "op": "post", "external_id": f"bench-{n}", "flags": None})
                + "\n"
            )


def bench_classifier(
    texts: list[str], rounds: int = 5, detectors: tuple[str, ...] | None = None
) -> float:
    options = (
        ClassifierOptions() if detectors is None else ClassifierOptions(enabled_detectors=detectors)
    )
    classifier = build_classifier(
        roster_from(settings_for(Path(tempfile.mkdtemp()), Path("/dev/null"))), options
    )
    inputs = [Input(text=t) for t in texts]
    classifier.classify_many(inputs[:10])  # warm up spaCy
    start = time.perf_counter()
    for _ in range(rounds):
        classifier.classify_many(inputs)
    return len(inputs) * rounds / (time.perf_counter() - start)


def settings_for(state: Path, feed: Path) -> Settings:
    import tomllib

    data = tomllib.loads(bundled("config.toml").read_text())
    data["daemon"] = {"state_dir": str(state)}
    data["sources"][0]["options"] = {"path": str(feed), "page_size": 200}
    data["sources"][0]["max_items_per_poll"] = 1_000_000
    return parse_settings(data, path=bundled("config.toml"))


async def bench_pipeline(count: int, flagged_share: float) -> tuple[float, float, dict[str, float]]:
    state = Path(tempfile.mkdtemp())
    feed = state / "feed.jsonl"
    write_feed(feed, count, flagged_share)
    settings = settings_for(state, feed)
    await upgrade(settings.database_url())
    app = await build_app(settings)
    stages: dict[str, float] = {}
    try:
        start = time.perf_counter()
        await app.poll_all()
        stages["ingest"] = time.perf_counter() - start
        for name, step in (
            ("classify", app.pipeline.classify_batch),
            ("decide", app.pipeline.decide_batch),
            ("evidence", app.pipeline.evidence_batch),
            ("act", app.executor.run_batch),
        ):
            t0 = time.perf_counter()
            while await step():
                pass
            stages[name] = time.perf_counter() - t0
        total = time.perf_counter() - start
        flagged = (await app.store.summary())["states"].get("flagged", 0)
    finally:
        await app.close()
    return count / total, flagged, stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--flagged-share", type=float, default=0.05)
    args = parser.parse_args()
    configure_logging(level="error")
    texts = [str(p["text"]) for p in demo_posts()]
    per_second = bench_classifier(texts)
    print(f"classifier: {per_second:,.0f} texts/s on {len(texts)} demo posts (one core)")
    for detectors in (("rules",), ("rules", "people", "personal_info"), ("textcat",)):
        rate = bench_classifier(texts, detectors=detectors)
        print(f"  {'+'.join(detectors)}: {rate:,.0f} texts/s")
    rate, flagged, stages = asyncio.run(bench_pipeline(args.posts, args.flagged_share))
    print(
        f"pipeline (SQLite): {args.posts} posts, {flagged} flagged, {rate:,.0f} posts/s end to end"
    )
    for name, seconds in stages.items():
        print(f"  {name:<9} {seconds:6.2f} s")
    print(f"ratio: end-to-end / classifier-only = {rate / per_second:.2f}")


if __name__ == "__main__":
    main()
