"""Agreement floor between the classifier and the demo dataset's expected labels.

The floors are what the classifier achieved when this test was written, minus a margin, so a
lexicon change that loses recall, or flags a hard negative, fails here.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from classifiers import (
    Classifier,
    Flag,
    Input,
    Tag,
    Verdict,
    build_classifier,
)
from tests.conftest import demo_roster

ROOT = Path(__file__).resolve().parents[2]
POSTS = ROOT / "monitor" / "demo" / "posts.jsonl"
LABELS = ROOT / "tests" / "fixtures" / "demo_labels.jsonl"

ROSTER = demo_roster()
# Measured: recall abusive 0.92, defamatory/personal_info/safeguarding/spam 1.00;
# precision >= 0.93 for every flag; 0 of 46 hard negatives flagged.
RECALL_FLOOR = {
    "abusive": 0.85,
    "defamatory": 0.9,
    "personal_info": 0.9,
    "safeguarding": 0.9,
    "spam": 0.9,
}
PRECISION_FLOOR = 0.85

pytestmark = pytest.mark.skipif(
    not (POSTS.exists() and LABELS.exists()), reason="demo dataset not present"
)


@dataclass(frozen=True, kw_only=True)
class Case:
    key: str
    text: str
    expected: frozenset[str]
    label: dict[str, Any]
    verdict: Verdict
    edited: bool


def _cases(classifier: Classifier) -> list[Case]:
    rows = [json.loads(line) for line in POSTS.read_text(encoding="utf-8").splitlines() if line]
    labels = {
        (lab["platform"], lab["external_id"]): lab
        for lab in map(json.loads, LABELS.read_text(encoding="utf-8").splitlines())
    }
    edits = {(r["platform"], r["external_id"]): r["text"] for r in rows if r["op"] == "edit"}
    cases = []
    for row in (r for r in rows if r["op"] == "post"):
        key = (row["platform"], row["external_id"])
        label = labels[key]
        item = Input(text=row["text"], source_kind=row["source"], platform=row["platform"])
        cases.append(_case(classifier, key, item, label, label["flags"], edited=False))
        if key in edits and "edited_flags" in label:
            edit = Input(text=edits[key], source_kind=row["source"], platform=row["platform"])
            cases.append(_case(classifier, key, edit, label, label["edited_flags"], edited=True))
    return cases


def _case(
    classifier: Classifier,
    key: tuple[str, str],
    item: Input,
    label: dict[str, Any],
    flags: list[str],
    *,
    edited: bool,
) -> Case:
    return Case(
        key="/".join(key),
        text=item.text,
        expected=frozenset(flags),
        label=label,
        verdict=classifier.classify(item),
        edited=edited,
    )


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    return _cases(build_classifier(ROSTER))


def _got(case: Case) -> frozenset[str]:
    return frozenset(f.value for f in case.verdict.flags)


def test_every_hard_negative_is_unflagged(cases: list[Case]) -> None:
    flagged = [c.key for c in cases if c.label["hard_negative"] and not c.edited and _got(c)]
    assert flagged == []


@pytest.mark.parametrize("flag", sorted(RECALL_FLOOR))
def test_recall_and_precision_per_flag(cases: list[Case], flag: str) -> None:
    counts: Counter[str] = Counter()
    for case in cases:
        hit, want = flag in _got(case), flag in case.expected
        counts["tp" if hit and want else "fp" if hit else "fn" if want else "tn"] += 1
    recall = counts["tp"] / max(1, counts["tp"] + counts["fn"])
    precision = counts["tp"] / max(1, counts["tp"] + counts["fp"])
    assert recall >= RECALL_FLOOR[flag], counts
    assert precision >= PRECISION_FLOOR, counts


@pytest.mark.parametrize("tag", ["child_sexual_imagery", "allegation_against_staff"])
def test_routing_tags_are_found(cases: list[Case], tag: str) -> None:
    wanted = [c for c in cases if not c.edited and tag in c.label.get("tags", [])]
    assert wanted
    assert all(Tag(tag) in c.verdict.tags for c in wanted), [c.key for c in wanted]


def test_child_sexual_imagery_is_critical(cases: list[Case]) -> None:
    for case in cases:
        if Tag.CHILD_SEXUAL_IMAGERY in case.verdict.tags:
            assert case.verdict.severity.label == "critical"
            assert Flag.SAFEGUARDING in case.verdict.flags


def test_reasons_are_slices_of_the_original_text(cases: list[Case]) -> None:
    for case in cases:
        for reason in case.verdict.reasons:
            assert case.text[reason.span[0] : reason.span[1]] == reason.text
