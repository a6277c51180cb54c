"""The trained text classifier: training, loading, signals, configuration and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from classifiers import ClassifierOptions, Flag, Input, NotConfigured, Roster, build_classifier
from classifiers.taxonomy import Severity
from classifiers.textcat import (
    LabelledText,
    TextcatDetector,
    TrainingError,
    read_labelled,
    train,
)
from monitor import cli

THREAT = "i will batter that lad at the gates"
BENIGN = "sports day is on friday, bring a hat and water"


def _posts() -> list[LabelledText]:
    harmful = [
        (THREAT, {"abusive", "safeguarding"}, {"contact.aggressive"}),
        ("gonna batter him after school at the gates", {"abusive"}, {"conduct.aggressive"}),
        ("free followers click my link now", {"spam"}, {"content.commercial"}),
        ("cheap followers and likes click now", {"spam"}, {"content.commercial"}),
    ]  # fmt: skip
    benign = [
        BENIGN,
        "well done to year 6 on the spelling bee",
        "the car park is closed on monday for resurfacing",
        "please return library books by friday",
    ]
    posts = [LabelledText(text=t, flags=frozenset(f), cells=frozenset(c)) for t, f, c in harmful]
    posts += [LabelledText(text=t, flags=frozenset(), cells=frozenset()) for t in benign]
    return posts * 5


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("textcat") / "model"
    return train(_posts(), out, epochs=10, ngram_length=2**10)


def test_a_trained_model_flags_what_it_learned(model_dir: Path) -> None:
    detector = TextcatDetector(model_dir)
    signals = detector.detect(Input(text=THREAT))
    flags = {s.flag for s in signals}
    assert Flag.ABUSIVE in flags
    for signal in signals:
        assert signal.span == (0, len(THREAT)) and signal.text == THREAT
        assert signal.rule == f"textcat.{signal.flag}"
        assert signal.severity is (Severity.LOW if signal.flag is Flag.SPAM else Severity.MEDIUM)
        assert signal.score is not None and 0.5 <= signal.score <= 1.0
    assert detector.detect(Input(text=BENIGN)) == []


def test_detect_many_matches_detect_one_by_one(model_dir: Path) -> None:
    detector = TextcatDetector(model_dir)
    items = [Input(text=THREAT), Input(text=BENIGN), Input(text="free followers now")]
    assert detector.detect_many(items) == [detector.detect(i) for i in items]


def test_thresholds_change_what_is_flagged(model_dir: Path) -> None:
    strict = TextcatDetector(model_dir, thresholds={"abusive": 1.0, "safeguarding": 1.0})
    assert Flag.ABUSIVE not in {s.flag for s in strict.detect(Input(text=THREAT))}


@pytest.mark.parametrize(
    ("thresholds", "message"),
    [({"rude": 0.5}, "unknown flags"), ({"spam": 0.0}, r"\(0, 1\]")],
)
def test_bad_thresholds_are_refused(
    model_dir: Path, thresholds: dict[str, float], message: str
) -> None:
    with pytest.raises(NotConfigured, match=message):
        TextcatDetector(model_dir, thresholds=thresholds)


def test_a_missing_model_says_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(NotConfigured, match="vigil models train"):
        TextcatDetector(tmp_path / "nothing")


def test_training_is_deterministic(tmp_path: Path) -> None:
    first = train(_posts(), tmp_path / "a", epochs=3, ngram_length=2**10)
    second = train(_posts(), tmp_path / "b", epochs=3, ngram_length=2**10)
    for path in sorted(first.rglob("*")):
        if path.is_file():
            assert path.read_bytes() == (second / path.relative_to(first)).read_bytes(), path


def test_training_needs_flagged_posts(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="no labelled posts"):
        train([LabelledText(text="hi", flags=frozenset(), cells=frozenset())], tmp_path / "m")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", ":2: not JSON"),
        ('{"id": "x"}', ":2: a post needs a 'text'"),
        ('{"text": "a", "flags": ["rude"]}', ":2: unknown labels"),
    ],
)
def test_a_bad_training_file_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "posts.jsonl"
    path.write_text('{"roster": {"name": "X"}}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(TrainingError, match=message):
        read_labelled([path])


def test_build_classifier_uses_or_skips_the_detector(model_dir: Path, tmp_path: Path) -> None:
    roster = Roster(school_name="Elm Street School")
    enabled = build_classifier(
        roster, ClassifierOptions(enabled_detectors=("textcat",), textcat_model=model_dir)
    )
    assert enabled.enabled == ("textcat",)
    assert Flag.ABUSIVE in enabled.classify(Input(text=THREAT)).flags
    missing = build_classifier(
        roster,
        ClassifierOptions(enabled_detectors=("textcat",), textcat_model=tmp_path / "none"),
    )
    assert missing.enabled == () and missing.skipped[0][0] == "textcat"


def test_cli_trains_a_model_from_named_files(tmp_path: Path) -> None:
    data = tmp_path / "posts.jsonl"
    lines = [{"roster": {"name": "Elm Street School"}}] + [
        {"id": str(i), "text": p.text, "flags": sorted(p.flags), "cells": sorted(p.cells)}
        for i, p in enumerate(_posts())
    ]
    data.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    out = tmp_path / "model"
    result = CliRunner().invoke(
        cli.main, ["models", "train", "--data", str(data), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "trained on 40 posts (20 flagged) from 1 files" in result.stdout
    again = ["models", "train", "--data", str(data), "--out", str(out), "--if-stale"]
    result = CliRunner().invoke(cli.main, again)
    assert result.exit_code == 0 and "up to date" in result.stdout
    assert (out / "meta.json").is_file()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{nope\n", encoding="utf-8")
    result = CliRunner().invoke(
        cli.main, ["models", "train", "--data", str(bad), "--out", str(out)]
    )
    assert result.exit_code == 2 and "bad.jsonl:1: not JSON" in result.stderr
