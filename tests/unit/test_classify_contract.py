"""The `vigil classify` contract: JSONL in, one JSONL verdict per well-formed line out, in order."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import classifiers
from classifiers import Classifier, ClassifierOptions, Roster
from monitor import cli
from tests.conftest import ROSTER_TOML

ROOT = Path(__file__).resolve().parents[2]
DEMO_POSTS = ROOT / "monitor" / "demo" / "posts.jsonl"

KEYS = ["id", "flags", "cells", "severity", "scores", "reasons"]
REASON_KEYS = {"detector", "flag", "cell", "span", "text"}
FLAGS = {"abusive", "defamatory", "safeguarding", "spam", "personal_info"}
SEVERITIES = {"none", "low", "medium", "high", "critical"}
CELL = re.compile(r"^(contact|conduct|content)\.(commercial|aggressive|sexual|values)$")


DEFAMATION = "Mr Hughes stole from the PTA fund"

_BUILT: dict[tuple[Roster, ClassifierOptions], Classifier] = {}
_real_build = classifiers.build_classifier


def _cached_build(roster: Roster, options: ClassifierOptions | None = None) -> Classifier:
    """The real classifier, built once per roster and options for the whole module."""
    options = options or ClassifierOptions()
    key = (roster, options)
    if key not in _BUILT:
        _BUILT[key] = _real_build(roster, options)
    return _BUILT[key]


@pytest.fixture(autouse=True)
def _fast_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(classifiers, "build_classifier", _cached_build)


def classify(text: str, *args: str) -> Result:
    return CliRunner().invoke(cli.main, ["classify", *args, "-"], input=text)


def jsonl(*records: Any) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def records(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def demo_texts() -> list[str]:
    events = [
        json.loads(line)
        for line in DEMO_POSTS.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    return [e["text"] for e in events if isinstance(e.get("text"), str)]


def assert_contract(record: dict[str, Any], text: str) -> None:
    """One output record obeys the documented contract for input ``text``."""
    assert list(record) == KEYS
    flags, cells, severity = record["flags"], record["cells"], record["severity"]
    assert flags == sorted(flags) and len(set(flags)) == len(flags)
    assert set(flags) <= FLAGS
    assert cells == sorted(cells) and all(CELL.match(c) for c in cells)
    assert severity in SEVERITIES
    assert (severity == "none") == (not flags)
    assert isinstance(record["scores"], dict)
    for flag, score in record["scores"].items():
        assert flag in FLAGS and isinstance(score, int | float) and 0.0 <= score <= 1.0
    if flags:
        assert record["reasons"]
    for reason in record["reasons"]:
        assert set(reason) == REASON_KEYS
        assert isinstance(reason["detector"], str) and reason["detector"]
        assert reason["flag"] is None or reason["flag"] in flags
        assert reason["cell"] is None or reason["cell"] in cells
        start, end = reason["span"]
        assert isinstance(start, int) and isinstance(end, int)
        assert 0 <= start <= end <= len(text)
        assert reason["text"] == text[start:end]


def test_one_line_per_input_line_in_order_obeying_the_contract() -> None:
    texts = demo_texts()
    assert len(texts) > 100
    result = classify(jsonl(*({"id": f"post-{i}", "text": t} for i, t in enumerate(texts))))
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    out = records(result)
    assert [r["id"] for r in out] == [f"post-{i}" for i in range(len(texts))]
    for record, text in zip(out, texts, strict=True):
        assert_contract(record, text)
    flagged = {f for r in out for f in r["flags"]}
    assert flagged >= {"abusive", "safeguarding", "spam", "personal_info"}


def test_ids_of_any_json_type_are_preserved() -> None:
    ids: list[Any] = [7, "fb_c_1", None, 2.5, True, [1, "a"], {"platform": "x", "n": 3}, 0, ""]
    result = classify(jsonl(*({"id": i, "text": "you idiot"} for i in ids)))
    assert result.exit_code == 0, result.stderr
    assert [r["id"] for r in records(result)] == ids


def test_spans_count_code_points_not_bytes() -> None:
    text = "😀😀 café — you absolute idiot"
    result = classify(jsonl({"id": 1, "text": text}))
    [record] = records(result)
    assert_contract(record, text)
    assert "abusive" in record["flags"]
    assert any(r["text"] == "idiot" for r in record["reasons"])


def test_optional_fields_are_accepted() -> None:
    line = {
        "id": 1,
        "text": "Thanks for the newsletter",
        "platform": "facebook",
        "author": "jo.mills.7",
        "url": "https://www.facebook.com/oakfieldprimary/posts/1",
        "source": "own",
    }
    result = classify(jsonl(line, {**line, "id": 2, "source": "mention"}))
    assert result.exit_code == 0, result.stderr
    assert [r["id"] for r in records(result)] == [1, 2]


def test_malformed_lines_are_reported_by_number_and_the_rest_classified() -> None:
    lines = [
        json.dumps({"id": 1, "text": "you idiot"}),
        "{not json",
        json.dumps({"text": "no id here"}),
        json.dumps({"id": 4, "text": 42}),
        json.dumps({"id": 5, "text": "hello", "source": "private"}),
        json.dumps(["id", "text"]),
        json.dumps({"id": 7, "text": "hello", "platform": 3}),
        json.dumps({"id": 8, "text": "see you at sports day"}),
    ]
    result = classify("\n".join(lines) + "\n")
    assert result.exit_code == 2
    assert [r["id"] for r in records(result)] == [1, 8]
    errors = result.stderr.splitlines()
    assert [e.split(":")[0] for e in errors] == [
        "line 2",
        "line 3",
        "line 4",
        "line 5",
        "line 6",
        "line 7",
    ]
    assert errors[0].startswith("line 2: not valid JSON")
    assert errors[1] == 'line 3: missing "id"'
    assert errors[2] == 'line 4: "text" must be a string'
    assert errors[3] == 'line 5: "source" must be "own" or "mention"'
    assert errors[4] == "line 6: expected a JSON object"
    assert errors[5] == 'line 7: "platform" must be a string'
    assert "no id here" not in result.stderr


def test_blank_lines_are_ignored_but_counted() -> None:
    text = "\n   \n" + json.dumps({"id": 1, "text": "hello"}) + "\n\n\t\n{bad\n\n"
    result = classify(text)
    assert result.exit_code == 2
    assert [r["id"] for r in records(result)] == [1]
    assert result.stderr.startswith("line 6: not valid JSON")


def test_crlf_input_and_no_final_newline() -> None:
    text = json.dumps({"id": 1, "text": "hi"}) + "\r\n" + json.dumps({"id": 2, "text": "you idiot"})
    result = classify(text)
    assert result.exit_code == 0, result.stderr
    assert [r["id"] for r in records(result)] == [1, 2]


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_empty_input_gives_empty_output_and_exit_0(text: str) -> None:
    result = classify(text)
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr == ""


def test_roster_from_config_enables_defamation_of_named_staff(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(ROSTER_TOML, encoding="utf-8")
    line = jsonl({"id": "d", "text": DEFAMATION})

    without = records(classify(line))
    assert_contract(without[0], DEFAMATION)
    assert "defamatory" not in without[0]["flags"]

    result = classify(line, "--config", str(config))
    assert result.exit_code == 0, result.stderr
    [record] = records(result)
    assert_contract(record, DEFAMATION)
    assert "defamatory" in record["flags"]
    reason = next(r for r in record["reasons"] if r["flag"] == "defamatory")
    assert "Mr Hughes" in reason["text"]


def test_a_bad_config_is_refused_before_reading_input(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[school]\nname = "Oakfield"\ncolour = "blue"\n', encoding="utf-8")
    result = classify(jsonl({"id": 1, "text": "hi"}), "--config", str(config))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"{config}: school.colour: unknown key (misspelt?)"]


@pytest.mark.slow
def test_real_process_reads_stdin(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(ROSTER_TOML, encoding="utf-8")
    lines = [
        json.dumps({"id": 1, "text": DEFAMATION}),
        "",
        "not json",
        json.dumps({"id": "two", "text": "Lovely assembly today"}),
    ]
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "classify", "--config", str(config), "-"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["line 3: not valid JSON (Expecting value at column 1)"]
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["id"] for r in out] == [1, "two"]
    assert_contract(out[0], DEFAMATION)
    assert_contract(out[1], "Lovely assembly today")
    assert "defamatory" in out[0]["flags"]
    assert out[1]["flags"] == []
