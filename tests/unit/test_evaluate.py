"""`vigil eval`: metric maths, the dataset loaders, the CLI, and the school-suite targets.

The loader tests write a few rows of their own in each dataset's real format; no row of the
public datasets is copied here.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from classifiers import Classifier, build_classifier
from classifiers.taxonomy import ALL_CELLS, Cell, Flag
from classifiers.textcat import TRAINING_DIR
from monitor import cli
from monitor import evaluate as ev
from monitor.evaluate import (
    DATASETS,
    SUITE,
    FlagScore,
    Prediction,
    Report,
    Run,
    Sample,
    Target,
    load,
    read_school,
    read_suite_roster,
    score,
)


def _sample(id: str, *flags: str, cells: tuple[str, ...] = (), hard: bool = False) -> Sample:
    return Sample(
        id=id, text=f"text {id}", flags=frozenset(flags), cells=frozenset(cells), hard_negative=hard
    )


def _got(*flags: str, cells: tuple[str, ...] = ()) -> Prediction:
    return Prediction(flags=frozenset(flags), cells=frozenset(cells))


# --------------------------------------------------------------------------- metric maths

# id  expected                    got                         notes
# a   abusive                     abusive                     tp(abusive)
# b   abusive, safeguarding       abusive                     tp(abusive), fn(safeguarding)
# c   safeguarding                safeguarding, spam          tp(safeguarding), fp(spam)
# d   spam                        -                           fn(spam)
# e   - (hard negative)           abusive                     fp(abusive), benign flagged
# f   -                           -                           benign clean
# g   - (hard negative)           -                           benign clean
# h   -                           -                           benign clean
TABLE = [
    (
        _sample("a", "abusive", cells=("content.aggressive",)),
        _got("abusive", cells=("content.aggressive",)),
    ),
    (
        _sample("b", "abusive", "safeguarding", cells=("contact.aggressive",)),
        _got("abusive", cells=("content.aggressive",)),
    ),
    (
        _sample("c", "safeguarding", cells=("contact.aggressive",)),
        _got("safeguarding", "spam", cells=("contact.aggressive",)),
    ),
    (_sample("d", "spam", cells=("content.commercial",)), _got()),
    (_sample("e", hard=True), _got("abusive")),
    (_sample("f"), _got()),
    (_sample("g", hard=True), _got()),
    (_sample("h"), _got()),
]


@pytest.fixture(scope="module")
def table_report() -> Report:
    samples, predictions = zip(*TABLE, strict=True)
    return score(list(samples), list(predictions), dataset="table", seconds=2.0)


@pytest.mark.parametrize(
    ("flag", "tp", "fp", "fn", "precision", "recall", "f1"),
    [
        ("abusive", 2, 1, 0, 2 / 3, 1.0, 0.8),
        ("safeguarding", 1, 0, 1, 1.0, 0.5, 2 / 3),
        ("spam", 0, 1, 1, 0.0, 0.0, 0.0),
        ("defamatory", 0, 0, 0, 0.0, 0.0, 0.0),  # undefined ratios are 0.0
    ],
)
def test_flag_scores(
    table_report: Report,
    flag: str,
    tp: int,
    fp: int,
    fn: int,
    precision: float,
    recall: float,
    f1: float,
) -> None:
    found = table_report.flag(flag)
    assert (found.tp, found.fp, found.fn, found.support) == (tp, fp, fn, tp + fn)
    assert found.precision == pytest.approx(precision)
    assert found.recall == pytest.approx(recall)
    assert found.f1 == pytest.approx(f1)


def test_benign_rate_hard_negatives_and_speed(table_report: Report) -> None:
    assert (table_report.benign, table_report.benign_flagged) == (4, 1)
    assert table_report.benign_fp_rate == pytest.approx(0.25)
    assert (table_report.hard_negatives, table_report.hard_negatives_flagged) == (2, 1)
    assert table_report.samples == 8
    assert table_report.texts_per_second == pytest.approx(4.0)


def test_cell_recall(table_report: Report) -> None:
    cells = {c.cell: (c.found, c.support) for c in table_report.cells}
    assert cells == {
        "contact.aggressive": (1, 2),
        "content.aggressive": (1, 1),
        "content.commercial": (0, 1),
    }


def test_misses_are_ids_and_scored_flags_only(table_report: Report) -> None:
    misses = {m.id: (m.expected, m.got) for m in table_report.misses}
    assert misses == {
        "b": (("abusive", "safeguarding"), ("abusive",)),
        "c": (("safeguarding",), ("safeguarding", "spam")),
        "d": (("spam",), ()),
        "e": ((), ("abusive",)),
    }
    document = json.dumps(table_report.to_json())
    assert not any(sample.text in document for sample, _ in TABLE)  # ids only, never text


def test_only_the_datasets_flags_are_scored() -> None:
    report = score([_sample("x", "spam")], [_got("spam", "abusive")], flags=("spam",))
    assert [f.flag for f in report.flags] == ["spam"]
    assert report.misses == ()
    with pytest.raises(KeyError):
        report.flag("abusive")


def test_f1_is_harmonic_mean() -> None:
    found = FlagScore(flag="spam", tp=6, fp=2, fn=4)
    p, r = 6 / 8, 6 / 10
    assert found.f1 == pytest.approx(2 * p * r / (p + r))


def test_targets_pass_and_fail(table_report: Report) -> None:
    report = replace(table_report, dataset="school")
    targets = (
        Target(dataset="school", metric="recall", flag="abusive", threshold=0.9),
        Target(dataset="school", metric="recall", flag="safeguarding", threshold=0.9),
        Target(dataset="school", metric="benign_fp_rate", threshold=0.25),
        Target(dataset="school", metric="benign_fp_rate", threshold=0.2),
        Target(dataset="sms", metric="f1", flag="spam", threshold=0.85),  # not run: not listed
    )
    result = Run(reports=(report,), targets=targets)
    assert [(t.label, met) for t, _, met in result.results()] == [
        ("recall(abusive) >= 0.90", True),
        ("recall(safeguarding) >= 0.90", False),
        ("benign flagged <= 25%", True),
        ("benign flagged <= 20%", False),
    ]
    assert not result.passed
    table = ev.format_run(result)
    assert "PASS" in table and "FAIL" in table and "targets: 2 pass, 2 fail" in table


# --------------------------------------------------------------------------- loaders


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _ids_and_flags(samples: list[Sample]) -> list[tuple[str, set[str]]]:
    return [(s.id, set(s.flags)) for s in samples]


def test_davidson_loader(tmp_path: Path) -> None:
    _write(
        tmp_path / "davidson-hate-offensive" / "labeled_data.dev.csv",
        ",count,hate_speech,offensive_language,neither,class,tweet\n"
        "7,3,2,1,0,0,a hateful made-up line\n"
        '8,3,0,3,0,1,"a rude, made-up line\nover two lines"\n'
        "9,3,0,0,3,2,a friendly made-up line\n",
    )
    samples = load(DATASETS["davidson"], tmp_path)
    assert _ids_and_flags(samples) == [
        ("davidson:7", {"abusive"}),
        ("davidson:8", {"abusive"}),
        ("davidson:9", set()),
    ]
    assert samples[1].text == "a rude, made-up line\nover two lines"


def test_olid_loader(tmp_path: Path) -> None:
    _write(
        tmp_path / "olid" / "olid-training-v1.0.tsv",
        "id\ttweet\tsubtask_a\tsubtask_b\tsubtask_c\n"
        '101\t@USER what a "lovely" day URL\tNOT\tNULL\tNULL\n'
        "102\t@USER made-up insult\tOFF\tTIN\tIND\n",
    )
    samples = load(DATASETS["olid"], tmp_path)
    assert _ids_and_flags(samples) == [("olid:101", set()), ("olid:102", {"abusive"})]
    assert samples[0].text == '@USER what a "lovely" day URL'


def test_sms_loader(tmp_path: Path) -> None:
    _write(
        tmp_path / "sms-spam-collection" / "SMSSpamCollection.dev.tsv",
        'ham\tsee you at "the" usual place\nspam\tmade-up prize text\tcall now\n',
    )
    samples = load(DATASETS["sms"], tmp_path)
    assert _ids_and_flags(samples) == [("sms:1", set()), ("sms:2", {"spam"})]
    assert samples[1].text == "made-up prize text\tcall now"


def test_youtube_loader_reads_every_file(tmp_path: Path) -> None:
    folder = tmp_path / "youtube-spam-collection"
    header = "COMMENT_ID,AUTHOR,DATE,CONTENT,CLASS\n"
    _write(
        folder / "Youtube01-Psy.dev.csv", header + 'c1,someone,2014-01-01,"great, song\ufeff",0\n'
    )
    _write(folder / "Youtube02-KatyPerry.dev.csv", header + "c2,someone,,check my channel,1\n")
    samples = load(DATASETS["youtube"], tmp_path)
    assert _ids_and_flags(samples) == [
        ("Youtube01-Psy.dev:c1", set()),
        ("Youtube02-KatyPerry.dev:c2", {"spam"}),
    ]
    assert samples[0].text == "great, song"  # the corpus's trailing BOM is dropped


TINY_SUITE = [
    {"roster": {"name": "Test School", "staff": [{"name": "Ann Lee", "role": "dsl"}]}},
    {
        "id": "t1",
        "text": "hello",
        "platform": "x",
        "source": "own",
        "flags": [],
        "cells": [],
        "hard_negative": True,
        "note": "",
    },
    {
        "id": "t2",
        "text": "bad",
        "flags": ["abusive"],
        "cells": ["content.aggressive"],
        "hard_negative": False,
    },
]


def test_school_loader_and_roster(tmp_path: Path) -> None:
    lines = [json.dumps(record) for record in TINY_SUITE]
    suite = _write(tmp_path / "suite.jsonl", "\n".join([lines[0], lines[1], "", lines[2], ""]))
    samples = list(read_school(suite))
    assert [(s.id, s.flags, s.cells, s.hard_negative) for s in samples] == [
        ("t1", frozenset(), frozenset(), True),
        ("t2", frozenset({"abusive"}), frozenset({"content.aggressive"}), False),
    ]
    assert (samples[0].platform, samples[0].source) == ("x", "own")
    roster = read_suite_roster(suite)
    assert roster.school_name == "Test School"
    assert roster.staff[0].name == "Ann Lee" and roster.staff[0].role == "dsl"


def test_missing_and_malformed(tmp_path: Path) -> None:
    with pytest.raises(ev.DatasetMissing, match="SMSSpamCollection"):
        load(DATASETS["sms"], tmp_path)
    _write(tmp_path / "sms-spam-collection" / "SMSSpamCollection.dev.tsv", "maybe\tsomething\n")
    with pytest.raises(ev.DatasetMalformed, match=":1:"):
        load(DATASETS["sms"], tmp_path)


def test_limit_spreads_evenly(tmp_path: Path) -> None:
    rows = "".join(f"{'spam' if n % 2 else 'ham'}\tmade-up text {n}\n" for n in range(10))
    _write(tmp_path / "sms-spam-collection" / "SMSSpamCollection.dev.tsv", rows)
    assert [s.id for s in load(DATASETS["sms"], tmp_path, limit=4)] == [
        "sms:1",
        "sms:3",
        "sms:6",
        "sms:8",
    ]


# --------------------------------------------------------------------------- the suite itself


def _suite() -> list[Sample]:
    return list(read_school(SUITE))


def test_suite_is_big_and_covers_every_flag_and_cell() -> None:
    samples = _suite()
    assert len(samples) >= 320
    assert len({s.id for s in samples}) == len(samples)
    assert sum(not s.flags for s in samples) >= 140
    assert sum(s.hard_negative for s in samples) >= 60
    flags, cells = Counter[str](), Counter[str]()
    for s in samples:
        flags.update(s.flags)
        cells.update(s.cells)
        assert not (s.hard_negative and s.flags), s.id
        assert bool(s.flags) == bool(s.cells), s.id
        assert s.source in ("own", "mention"), s.id
    assert set(flags) == {f.value for f in Flag}
    assert {Cell.parse(c) for c in cells} == set(ALL_CELLS)
    assert min(cells.values()) >= 8


EVAL_DIR = SUITE.parent
LABELLED_FILES = sorted([*EVAL_DIR.glob("school_*.jsonl"), *TRAINING_DIR.glob("*.jsonl")], key=str)


@pytest.mark.parametrize("path", LABELLED_FILES, ids=lambda p: p.name)
def test_every_labelled_file_is_well_formed(path: Path) -> None:
    """The suite, the sealed and benign sets and the training files all follow the format's
    rules (checked without anyone having to read the sealed set's posts)."""
    samples = list(read_school(path))
    assert samples, path
    assert len({s.id for s in samples}) == len(samples)
    for s in samples:
        assert s.text.strip(), s.id
        assert bool(s.flags) == bool(s.cells), s.id
        assert not (s.hard_negative and s.flags), s.id
        assert s.flags <= {f.value for f in Flag}, s.id
        assert {Cell.parse(c) for c in s.cells} <= set(ALL_CELLS), s.id
    if path.name.startswith("school_benign"):
        assert not any(s.flags for s in samples)


def test_suite_roster_is_the_fictional_school() -> None:
    roster = read_suite_roster(SUITE)
    assert roster.school_name == "Hillcrest Academy"
    assert {s.role for s in roster.staff} >= {"head", "dsl", "deputy_dsl", "governor"}


# --------------------------------------------------------------------------- CLI, real classifier


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    """The real classifier with the suite's roster, built once for this module."""
    return build_classifier(read_suite_roster(SUITE))


@pytest.fixture
def fast_build(classifier: Classifier, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(ev, "_build", lambda _suite, _options: classifier)
    yield


@pytest.mark.usefixtures("fast_build")
def test_cli_school_json(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli.main, ["eval", "--dataset", "school", "--data-dir", str(tmp_path), "--json"]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    school = document["datasets"]["school"]
    assert school["samples"] == len(_suite())
    assert set(school["flags"]) == {f.value for f in Flag}
    assert set(school["cells"]) == {str(c) for c in ALL_CELLS}
    assert {"precision", "recall", "f1", "support"} <= set(school["flags"]["abusive"])
    assert [t["target"] for t in document["targets"]] == [
        "recall(safeguarding) >= 0.95",
        "recall(abusive) >= 0.90",
        "recall(defamatory) >= 0.90",
        "benign flagged <= 3%",
    ]
    assert document["missing"] == {}


@pytest.mark.usefixtures("fast_build")
def test_cli_reports_missing_datasets_without_failing(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli.main, ["eval", "--dataset", "sms", "--dataset", "youtube", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "sms: MISSING" in result.stdout and "youtube: MISSING" in result.stdout


def test_cli_scores_another_suite_file(tmp_path: Path) -> None:
    """--suite scores a school's own labelled posts (or a held-out set) with its own roster."""
    suite = tmp_path / "mine.jsonl"
    lines = [
        {"roster": {"name": "Elm Street School", "aliases": ["Elm Street"], "staff": []}},
        {"id": "m-1", "text": "I will stab you after school", "flags": ["abusive"],
         "cells": ["conduct.aggressive"]},
        {"id": "m-2", "text": "Sports day is on Friday, bring a hat", "flags": [], "cells": []},
    ]  # fmt: skip
    suite.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    result = CliRunner().invoke(
        cli.main, ["eval", "--dataset", "school", "--suite", str(suite), "--json"]
    )
    assert result.exit_code == 0, result.output
    school = json.loads(result.stdout)["datasets"]["school"]
    assert school["samples"] == 2
    assert school["flags"]["abusive"]["recall"] == 1.0
    assert school["benign_flagged"] == 0


def test_cli_unknown_dataset_is_bad_input() -> None:
    result = CliRunner().invoke(cli.main, ["eval", "--dataset", "nope"])
    assert result.exit_code == 2
    assert "unknown dataset" in result.stderr


def test_school_suite_meets_issue_targets(classifier: Classifier) -> None:
    """ACCEPTANCE (issue 4): the real classifier on the school suite meets the issue's targets.

    recall >= 0.95 safeguarding, >= 0.90 abusive and defamatory; benign flagged <= 3 %.
    """
    report = ev.evaluate(classifier, _suite(), dataset="school")
    measured = {
        "safeguarding": report.flag("safeguarding").recall,
        "abusive": report.flag("abusive").recall,
        "defamatory": report.flag("defamatory").recall,
        "benign_fp_rate": report.benign_fp_rate,
    }
    assert measured["safeguarding"] >= 0.95, measured
    assert measured["abusive"] >= 0.90, measured
    assert measured["defamatory"] >= 0.90, measured
    assert measured["benign_fp_rate"] <= 0.03, measured


@pytest.mark.parametrize("name", ["school_benign.jsonl", "school_benign2.jsonl"])
def test_benign_development_sets_stay_under_the_target(name: str) -> None:
    """Guard: the two benign development sets (656 hard negatives between them) stay under the
    issue's 3 % with their own schools' rosters, so a new lexicon phrase or a retrained model
    that starts flagging ordinary posts fails here."""
    path = EVAL_DIR / name
    report = ev.evaluate(build_classifier(read_suite_roster(path)), list(read_school(path)))
    assert report.benign_fp_rate <= 0.03, report.misses
