"""`vigil classify`: JSONL in, one JSONL verdict per input line out, in the same order.

Input lines: ``{"id": ..., "text": ..., optional "platform", "author", "url", "source"}``.
A malformed line is reported on stderr with its line number and skipped; the others are still
classified, and the exit status is then 2.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from classifiers import Classifier
from classifiers.base import Input

__all__ = ["CONTRACT_KEYS", "ClassifyReport", "classify_stream"]

CONTRACT_KEYS = ("flags", "cells", "severity", "scores", "reasons")
_SOURCES = ("own", "mention")


@dataclass(frozen=True, kw_only=True)
class ClassifyReport:
    """How a run went: lines classified and lines rejected."""

    classified: int
    malformed: int


def _parse(line: str, number: int) -> tuple[Any, Input]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"not valid JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(record, dict):
        raise ValueError("expected a JSON object")
    if "id" not in record:
        raise ValueError('missing "id"')
    text = record.get("text")
    if not isinstance(text, str):
        raise ValueError('"text" must be a string')
    source = record.get("source", "mention")
    if source not in _SOURCES:
        raise ValueError('"source" must be "own" or "mention"')
    optional = {k: record.get(k) for k in ("platform", "author", "url")}
    for key, value in optional.items():
        if value is not None and not isinstance(value, str):
            raise ValueError(f'"{key}" must be a string')
    return record["id"], Input(
        text=text,
        source_kind=source,
        platform=optional["platform"],
        author=optional["author"],
        url=optional["url"],
    )


def _batches(
    lines: Iterable[str], size: int, errors: TextIO
) -> Iterator[tuple[list[tuple[Any, Input]], int]]:
    batch: list[tuple[Any, Input]] = []
    malformed = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            batch.append(_parse(line, number))
        except ValueError as err:
            errors.write(f"line {number}: {err}\n")
            malformed += 1
        if len(batch) >= size:
            yield batch, malformed
            batch, malformed = [], 0
    yield batch, malformed


def classify_stream(
    classifier: Classifier,
    lines: Iterable[str],
    out: TextIO,
    errors: TextIO,
    *,
    batch_size: int = 256,
) -> ClassifyReport:
    """Classify every well-formed line of ``lines`` into ``out``; report problems to ``errors``."""
    classified = malformed = 0
    for batch, bad in _batches(lines, batch_size, errors):
        malformed += bad
        verdicts = classifier.classify_many([item for _, item in batch]) if batch else []
        for (item_id, _), verdict in zip(batch, verdicts, strict=True):
            data = verdict.to_json()
            record = {"id": item_id, **{k: data[k] for k in CONTRACT_KEYS}}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        classified += len(batch)
    out.flush()
    return ClassifyReport(classified=classified, malformed=malformed)
