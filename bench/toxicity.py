"""Detoxify throughput: texts/s in batches (default 32) against one text at a time.

Run:  .venv/bin/python bench/toxicity.py [--texts 512] [--batch 32] [--threads 1]
      .venv/bin/python bench/toxicity.py --checkpoint PREPARED.ckpt --config-dir DIR

Without --checkpoint it builds the tests' tiny random BERT (2 layers, hidden 32), which measures
the batching overhead and little else: real-model numbers need the real weights, prepared with
`vigil models prepare` (a BERT-base-sized model does tens of texts/s on 2 cores). Needs the
Detoxify extra. Prints numbers and the ratio; nothing is asserted.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from classifiers.base import Input  # noqa: E402
from classifiers.toxicity import DetoxifyDetector  # noqa: E402


def texts(count: int, words: list[str], seed: int = 7) -> list[str]:
    """Post-like texts of 3 to 40 words, the same every run."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(words, k=rng.randint(3, 40))) for _ in range(count)]


def rate(detector: DetoxifyDetector, items: list[Input], batched: bool) -> float:
    """Texts per second, after one warm-up pass on a few items."""
    detector.detect_many(items[:4])
    started = time.perf_counter()
    if batched:
        detector.detect_many(items)
    else:
        for item in items:
            detector.detect(item)
    return len(items) / (time.perf_counter() - started)


def run(checkpoint: Path, config_dir: Path, args: argparse.Namespace, words: list[str]) -> None:
    """Load, measure both ways, print."""
    started = time.perf_counter()
    batched = DetoxifyDetector(
        checkpoint=checkpoint, config_dir=config_dir, batch_size=args.batch, threads=args.threads
    )
    load = time.perf_counter() - started
    single = DetoxifyDetector(
        checkpoint=checkpoint, config_dir=config_dir, batch_size=1, threads=args.threads
    )
    items = [Input(text=t) for t in texts(args.texts, words)]
    one = rate(single, items[: max(32, args.texts // 4)], batched=False)
    many = rate(batched, items, batched=True)
    print(f"model         {checkpoint.name} (labels: {', '.join(batched.labels)})")
    print(f"load          {load:.2f} s (torch threads: {args.threads})")
    print(f"one at a time {one:8.0f} texts/s")
    print(f"batch of {args.batch:<4} {many:8.0f} texts/s")
    print(f"ratio         {many / one:8.1f}x  (target >= 5x)")


def main() -> None:
    """Parse arguments; use the tiny test model unless a real prepared one is named."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint `vigil models prepare` wrote")
    parser.add_argument("--config-dir", type=Path, help="its local Hugging Face directory")
    args = parser.parse_args()
    from tests.unit.test_toxicity import WORDS, build_tiny_model

    words = list(WORDS)
    if args.checkpoint and args.config_dir:
        run(args.checkpoint, args.config_dir, args, words)
        return
    from monitor.models import prepare_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        config_dir, raw = build_tiny_model(Path(tmp))
        prepared = prepare_checkpoint(raw, config_dir, Path(tmp) / "tiny.prepared.ckpt")
        print("tiny random BERT (2 layers, hidden 32): real-model numbers need the real weights")
        run(prepared.out, config_dir, args, words)


if __name__ == "__main__":
    main()
