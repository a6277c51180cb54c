"""`vigil eval`: measure the classifiers against labelled datasets.

Datasets:

- ``school``: the project's own hand-written suite, ``tests/eval/school_suite.jsonl`` (its first
  line is the fictional school's roster); every flag and taxonomy cell is labelled.
- ``davidson``, ``olid``, ``sms``, ``youtube``: public datasets read at run time from the data
  directory (``--data-dir``, else ``$VIGIL_EVAL_DATA``, else ``../shared/data`` beside the repo).
  They are for evaluation only and are never copied into the project.

Each loader yields :class:`Sample` (id, text, expected flags); :func:`evaluate` classifies them
and scores the verdicts into a :class:`Report`. Post text is never printed, only ids.

Exception tree::

    EvaluationError        base
    ├── DatasetMissing     a dataset's files are not where they should be
    ├── DatasetMalformed   a dataset file cannot be read in its documented format
    └── UnknownDataset     a dataset name that is not in DATASETS
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # classifiers pulls in spaCy; load it only when something is classified
    from classifiers import Classifier, ClassifierOptions
    from classifiers.base import Roster

__all__ = [
    "DATASETS",
    "DATA_ENV",
    "FLAGS",
    "SUITE",
    "TARGETS",
    "CellScore",
    "Dataset",
    "DatasetMalformed",
    "DatasetMissing",
    "EvaluationError",
    "FlagScore",
    "Prediction",
    "Report",
    "Run",
    "Sample",
    "Target",
    "UnknownDataset",
    "default_data_dir",
    "evaluate",
    "format_run",
    "load",
    "read_davidson",
    "read_olid",
    "read_school",
    "read_sms",
    "read_suite_roster",
    "read_youtube",
    "run",
    "score",
]

DATA_ENV = "VIGIL_EVAL_DATA"
REPO_ROOT = Path(__file__).resolve().parents[1]
SUITE = REPO_ROOT / "tests" / "eval" / "school_suite.jsonl"
FLAGS = ("abusive", "defamatory", "safeguarding", "spam", "personal_info")
MISSES_SHOWN = 200  # per dataset in --json: ids only, enough to tune by


class EvaluationError(Exception):
    """Evaluation could not run."""


class DatasetMissing(EvaluationError):
    """A dataset's files are not in the data directory."""


class DatasetMalformed(EvaluationError):
    """A dataset file is not in its documented format."""


class UnknownDataset(EvaluationError):
    """No dataset has that name."""


@dataclass(frozen=True, kw_only=True)
class Sample:
    """One labelled text: what a careful reviewer expects the classifier to say."""

    id: str
    text: str
    flags: frozenset[str]
    cells: frozenset[str] = frozenset()
    hard_negative: bool = False
    platform: str | None = None
    source: str = "mention"


@dataclass(frozen=True, kw_only=True)
class Prediction:
    """What the classifier said about one sample."""

    flags: frozenset[str]
    cells: frozenset[str] = frozenset()


# --------------------------------------------------------------------------- loaders


def default_data_dir() -> Path:
    """``$VIGIL_EVAL_DATA``, else ``../shared/data`` relative to the repository root."""
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def _suite_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DatasetMalformed(f"{path}:{number}: not valid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise DatasetMalformed(f"{path}:{number}: expected a JSON object")
            yield number, record


def read_suite_roster(path: Path = SUITE) -> Roster:
    """The roster in the suite's ``{"roster": {...}}`` header line (empty if there is none)."""
    from classifiers.base import Roster

    for number, record in _suite_lines(path):
        school = record.get("roster")
        if not isinstance(school, dict):
            return Roster()
        try:
            return Roster.from_mapping(school)
        except ValueError as err:
            raise DatasetMalformed(f"{path}:{number}: {err}") from None
    return Roster()


def read_school(path: Path) -> Iterator[Sample]:
    """The school suite: one labelled post per line after the roster header."""
    for number, record in _suite_lines(path):
        if "roster" in record:
            continue
        try:
            yield Sample(
                id=str(record["id"]),
                text=str(record["text"]),
                flags=frozenset(record["flags"]),
                cells=frozenset(record.get("cells", ())),
                hard_negative=bool(record.get("hard_negative", False)),
                platform=record.get("platform"),
                source=record.get("source", "mention"),
            )
        except KeyError as err:
            raise DatasetMalformed(f"{path}:{number}: missing {err}") from None


def _csv_rows(path: Path, required: Sequence[str]) -> Iterator[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or ())]
        if missing:
            raise DatasetMalformed(f"{path}: no column(s) {', '.join(missing)}")
        yield from reader


def read_davidson(path: Path) -> Iterator[Sample]:
    """Davidson et al.: class 0 (hate) or 1 (offensive) → abusive; 2 (neither) → no flag."""
    for row in _csv_rows(path, ("", "class", "tweet")):
        abusive = row["class"].strip() in ("0", "1")
        yield Sample(id=f"davidson:{row['']}", text=row["tweet"], flags=_flags(abusive, "abusive"))


def read_olid(path: Path) -> Iterator[Sample]:
    """OLID level A: OFF → abusive; NOT → no flag."""
    with path.open(encoding="utf-8") as handle:
        header = handle.readline().rstrip("\n").split("\t")
        if header[:3] != ["id", "tweet", "subtask_a"]:
            raise DatasetMalformed(f"{path}: expected columns id, tweet, subtask_a")
        for number, line in enumerate(handle, start=2):
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3 or parts[2] not in ("OFF", "NOT"):
                raise DatasetMalformed(f"{path}:{number}: expected id, tweet and OFF|NOT")
            yield Sample(
                id=f"olid:{parts[0]}", text=parts[1], flags=_flags(parts[2] == "OFF", "abusive")
            )


def read_sms(path: Path) -> Iterator[Sample]:
    """SMS Spam Collection: ``label<TAB>text``, spam → spam; ham → no flag."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            label, tab, text = line.rstrip("\n").partition("\t")
            if not tab or label not in ("ham", "spam"):
                raise DatasetMalformed(f"{path}:{number}: expected ham|spam, a tab, the text")
            yield Sample(id=f"sms:{number}", text=text, flags=_flags(label == "spam", "spam"))


def read_youtube(path: Path) -> Iterator[Sample]:
    """YouTube Spam Collection: CLASS 1 → spam; 0 → no flag (CONTENT is the text)."""
    for row in _csv_rows(path, ("COMMENT_ID", "CONTENT", "CLASS")):
        text = row["CONTENT"].rstrip("\ufeff")  # the corpus leaves a BOM on some comments
        spam = row["CLASS"].strip() == "1"
        yield Sample(
            id=f"{path.stem}:{row['COMMENT_ID']}",
            text=text,
            flags=_flags(spam, "spam"),
            platform="youtube",
            source="own",
        )


def _flags(positive: bool, flag: str) -> frozenset[str]:
    return frozenset({flag}) if positive else frozenset()


@dataclass(frozen=True, kw_only=True)
class Dataset:
    """A named dataset: where its files are, how to read one, and which flags it labels."""

    name: str
    description: str
    flags: tuple[str, ...]  # only these are scored: the others are not labelled here
    files: Callable[[Path], tuple[Path, ...]]  # data dir → its files
    read: Callable[[Path], Iterator[Sample]]


def _in(folder: str, pattern: str) -> Callable[[Path], tuple[Path, ...]]:
    def files(data_dir: Path) -> tuple[Path, ...]:
        found = tuple(sorted((data_dir / folder).glob(pattern)))
        return found or (data_dir / folder / pattern,)

    return files


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            name="school",
            description="Hillcrest Academy suite (tests/eval)",
            flags=FLAGS,
            files=lambda _data_dir: (SUITE,),
            read=read_school,
        ),
        Dataset(
            name="davidson",
            description="Davidson 2017, offensive-or-hate vs neither → abusive",
            flags=("abusive",),
            files=_in("davidson-hate-offensive", "labeled_data.dev.csv"),
            read=read_davidson,
        ),
        Dataset(
            name="olid",
            description="OLID v1.0 training, subtask A OFF → abusive",
            flags=("abusive",),
            files=_in("olid", "olid-training-v1.0.tsv"),
            read=read_olid,
        ),
        Dataset(
            name="sms",
            description="SMS Spam Collection dev, spam → spam",
            flags=("spam",),
            files=_in("sms-spam-collection", "SMSSpamCollection.dev.tsv"),
            read=read_sms,
        ),
        Dataset(
            name="youtube",
            description="YouTube Spam Collection dev (5 files), CLASS 1 → spam",
            flags=("spam",),
            files=_in("youtube-spam-collection", "Youtube0*.dev.csv"),
            read=read_youtube,
        ),
    )
}


def load(dataset: Dataset, data_dir: Path, limit: int | None = None) -> list[Sample]:
    """Every sample of ``dataset`` (or ``limit`` of them, evenly spread).

    Raises DatasetMissing when any of its files is absent.
    """
    paths = dataset.files(data_dir)
    absent = [str(p) for p in paths if not p.is_file()]
    if absent:
        raise DatasetMissing(f"{dataset.name}: not found: {', '.join(absent)}")
    samples = [s for path in paths for s in dataset.read(path)]
    if limit is not None and limit < len(samples):
        samples = [samples[i * len(samples) // limit] for i in range(limit)]
    return samples


# --------------------------------------------------------------------------- metrics


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


@dataclass(frozen=True, kw_only=True)
class FlagScore:
    """One flag's confusion counts; undefined ratios are 0.0."""

    flag: str
    tp: int
    fp: int
    fn: int

    @property
    def support(self) -> int:
        """How many samples expect this flag."""
        return self.tp + self.fn

    @property
    def precision(self) -> float:
        """Share of this flag's predictions that were expected."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        """Share of expected occurrences that were predicted."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall."""
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)


@dataclass(frozen=True, kw_only=True)
class CellScore:
    """How many of the samples expecting a taxonomy cell got it."""

    cell: str
    found: int
    support: int

    @property
    def recall(self) -> float:
        """found / support."""
        return _ratio(self.found, self.support)


@dataclass(frozen=True, kw_only=True)
class Miss:
    """A sample whose scored flags differ from what was expected (ids only, never text)."""

    id: str
    expected: tuple[str, ...]
    got: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Report:
    """Scores of one classifier on one dataset."""

    dataset: str
    samples: int
    flags: tuple[FlagScore, ...]
    cells: tuple[CellScore, ...] = ()
    benign: int = 0  # samples expecting no flag
    benign_flagged: int = 0  # ...that got any flag
    hard_negatives: int = 0
    hard_negatives_flagged: int = 0
    seconds: float = 0.0
    misses: tuple[Miss, ...] = ()

    @property
    def benign_fp_rate(self) -> float:
        """Share of samples with no expected flag that got any flag."""
        return _ratio(self.benign_flagged, self.benign)

    @property
    def texts_per_second(self) -> float:
        """Classification throughput (0.0 if not timed)."""
        return self.samples / self.seconds if self.seconds > 0 else 0.0

    def flag(self, name: str) -> FlagScore:
        """The score for flag ``name``; KeyError if it was not scored."""
        for found in self.flags:
            if found.flag == name:
                return found
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        """The ``vigil eval --json`` object for this dataset."""
        return {
            "dataset": self.dataset,
            "samples": self.samples,
            "seconds": round(self.seconds, 3),
            "texts_per_second": round(self.texts_per_second, 1),
            "flags": {
                f.flag: {
                    "support": f.support,
                    "tp": f.tp,
                    "fp": f.fp,
                    "fn": f.fn,
                    "precision": round(f.precision, 4),
                    "recall": round(f.recall, 4),
                    "f1": round(f.f1, 4),
                }
                for f in self.flags
            },
            "benign": self.benign,
            "benign_flagged": self.benign_flagged,
            "benign_fp_rate": round(self.benign_fp_rate, 4),
            "hard_negatives": self.hard_negatives,
            "hard_negatives_flagged": self.hard_negatives_flagged,
            "cells": {
                c.cell: {"support": c.support, "found": c.found, "recall": round(c.recall, 4)}
                for c in self.cells
            },
            "misses": [
                {"id": m.id, "expected": list(m.expected), "got": list(m.got)}
                for m in self.misses[:MISSES_SHOWN]
            ],
        }


def _flag_scores(
    pairs: Sequence[tuple[Sample, Prediction]], flags: Sequence[str]
) -> tuple[FlagScore, ...]:
    scores = []
    for flag in flags:
        expected = [flag in s.flags for s, _ in pairs]
        got = [flag in p.flags for _, p in pairs]
        scores.append(
            FlagScore(
                flag=flag,
                tp=sum(e and g for e, g in zip(expected, got, strict=True)),
                fp=sum(g and not e for e, g in zip(expected, got, strict=True)),
                fn=sum(e and not g for e, g in zip(expected, got, strict=True)),
            )
        )
    return tuple(scores)


def _cell_scores(pairs: Sequence[tuple[Sample, Prediction]]) -> tuple[CellScore, ...]:
    cells = sorted({c for s, _ in pairs for c in s.cells})
    return tuple(
        CellScore(
            cell=cell,
            support=sum(cell in s.cells for s, _ in pairs),
            found=sum(cell in s.cells and cell in p.cells for s, p in pairs),
        )
        for cell in cells
    )


def _misses(pairs: Sequence[tuple[Sample, Prediction]], flags: Sequence[str]) -> tuple[Miss, ...]:
    scored = frozenset(flags)
    return tuple(
        Miss(id=s.id, expected=tuple(sorted(s.flags & scored)), got=tuple(sorted(p.flags & scored)))
        for s, p in pairs
        if s.flags & scored != p.flags & scored
    )


def score(
    samples: Sequence[Sample],
    predictions: Sequence[Prediction],
    *,
    dataset: str = "",
    flags: Sequence[str] = FLAGS,
    seconds: float = 0.0,
) -> Report:
    """Score ``predictions`` against ``samples`` (same order); only ``flags`` are scored.

    The benign false-positive rate counts any flag at all on a sample that expects none.
    """
    pairs = list(zip(samples, predictions, strict=True))
    benign = [p for s, p in pairs if not s.flags]
    hard = [p for s, p in pairs if s.hard_negative]
    return Report(
        dataset=dataset,
        samples=len(pairs),
        flags=_flag_scores(pairs, flags),
        cells=_cell_scores(pairs),
        benign=len(benign),
        benign_flagged=sum(bool(p.flags) for p in benign),
        hard_negatives=len(hard),
        hard_negatives_flagged=sum(bool(p.flags) for p in hard),
        seconds=seconds,
        misses=_misses(pairs, flags),
    )


def evaluate(
    classifier: Classifier,
    samples: Sequence[Sample],
    *,
    dataset: str = "",
    flags: Sequence[str] = FLAGS,
) -> Report:
    """Classify every sample (timed) and score the verdicts."""
    from classifiers.base import Input

    items = [Input(text=s.text, source_kind=s.source, platform=s.platform) for s in samples]
    started = time.perf_counter()
    verdicts = classifier.classify_many(items)
    seconds = time.perf_counter() - started
    predictions = [
        Prediction(
            flags=frozenset(f.value for f in v.flags), cells=frozenset(str(c) for c in v.cells)
        )
        for v in verdicts
    ]
    return score(samples, predictions, dataset=dataset, flags=flags, seconds=seconds)


# --------------------------------------------------------------------------- targets and runs


@dataclass(frozen=True, kw_only=True)
class Target:
    """One of the issue's acceptance targets: a metric of one dataset against a threshold."""

    dataset: str
    metric: str  # "recall" | "f1" | "benign_fp_rate"
    threshold: float
    flag: str = ""

    @property
    def label(self) -> str:
        """E.g. ``recall(safeguarding) >= 0.95``."""
        if self.metric == "benign_fp_rate":
            return f"benign flagged <= {self.threshold:.0%}"
        return f"{self.metric}({self.flag}) >= {self.threshold:.2f}"

    def value(self, report: Report) -> float:
        """The measured value of this target's metric."""
        if self.metric == "benign_fp_rate":
            return report.benign_fp_rate
        found: float = getattr(report.flag(self.flag), self.metric)
        return found

    def met(self, report: Report) -> bool:
        """True when the measured value satisfies the threshold."""
        if self.metric == "benign_fp_rate":
            return self.value(report) <= self.threshold
        return self.value(report) >= self.threshold


TARGETS: tuple[Target, ...] = (
    Target(dataset="school", metric="recall", flag="safeguarding", threshold=0.95),
    Target(dataset="school", metric="recall", flag="abusive", threshold=0.90),
    Target(dataset="school", metric="recall", flag="defamatory", threshold=0.90),
    Target(dataset="school", metric="benign_fp_rate", threshold=0.03),
    Target(dataset="davidson", metric="f1", flag="abusive", threshold=0.85),
    Target(dataset="sms", metric="f1", flag="spam", threshold=0.85),
    Target(dataset="youtube", metric="f1", flag="spam", threshold=0.85),
)


@dataclass(frozen=True, kw_only=True)
class Run:
    """The reports of one ``vigil eval``, and the datasets that could not be read."""

    reports: tuple[Report, ...]
    missing: tuple[tuple[str, str], ...] = ()  # (dataset, why)
    targets: tuple[Target, ...] = TARGETS

    def results(self) -> list[tuple[Target, float, bool]]:
        """(target, value, met) for every target whose dataset was evaluated."""
        by_name = {r.dataset: r for r in self.reports}
        return [
            (t, t.value(by_name[t.dataset]), t.met(by_name[t.dataset]))
            for t in self.targets
            if t.dataset in by_name
        ]

    @property
    def passed(self) -> bool:
        """True when every evaluated target is met."""
        return all(met for _, _, met in self.results())

    def to_json(self) -> dict[str, Any]:
        """The whole ``vigil eval --json`` document."""
        return {
            "datasets": {r.dataset: r.to_json() for r in self.reports},
            "missing": {name: why for name, why in self.missing},
            "targets": [
                {"dataset": t.dataset, "target": t.label, "value": round(v, 4), "pass": met}
                for t, v, met in self.results()
            ],
        }


def run(
    names: Iterable[str] = (),
    *,
    data_dir: Path | None = None,
    limit: int | None = None,
    suite: Path = SUITE,
    classifier: Classifier | None = None,
    options: ClassifierOptions | None = None,
) -> Run:
    """Evaluate the named datasets (all when none); a missing dataset is listed, not fatal.

    Unless ``classifier`` is given, it is built once with the suite's roster (the fictional
    school, as a school's installation runs with its own) and ``options`` (default: the
    built-in detectors).
    """
    chosen = list(dict.fromkeys(names)) or list(DATASETS)
    unknown = [n for n in chosen if n not in DATASETS]
    if unknown:
        raise UnknownDataset(
            f"unknown dataset(s) {', '.join(unknown)} (known: {', '.join(DATASETS)})"
        )
    data_dir = data_dir or default_data_dir()
    reports: list[Report] = []
    missing: list[tuple[str, str]] = []
    for name in chosen:
        dataset = _with_suite(DATASETS[name], suite)
        try:
            samples = load(dataset, data_dir, limit)
        except DatasetMissing as err:
            missing.append((name, str(err)))
            continue
        classifier = classifier or _build(
            suite, options
        )  # only once something is there to classify
        reports.append(evaluate(classifier, samples, dataset=name, flags=dataset.flags))
    return Run(reports=tuple(reports), missing=tuple(missing))


def _with_suite(dataset: Dataset, suite: Path) -> Dataset:
    if dataset.name != "school" or suite == SUITE:
        return dataset
    return Dataset(
        name=dataset.name,
        description=dataset.description,
        flags=dataset.flags,
        files=lambda _data_dir: (suite,),
        read=dataset.read,
    )


def _build(suite: Path, options: ClassifierOptions | None) -> Classifier:
    from classifiers import ClassifierOptions, build_classifier
    from classifiers.base import Roster

    roster = read_suite_roster(suite) if suite.is_file() else Roster()
    return build_classifier(roster, options or ClassifierOptions())


# --------------------------------------------------------------------------- the table


def _flag_lines(report: Report) -> list[str]:
    lines = [f"  {'flag':<14}{'support':>8}{'precision':>11}{'recall':>8}{'f1':>8}"]
    lines += [
        f"  {f.flag:<14}{f.support:>8}{f.precision:>11.3f}{f.recall:>8.3f}{f.f1:>8.3f}"
        for f in report.flags
    ]
    return lines


def _cell_lines(report: Report) -> list[str]:
    if not report.cells:
        return []
    lines = ["  cell recall:"]
    lines += [f"    {c.cell:<20}{c.found:>4}/{c.support:<4}{c.recall:>7.3f}" for c in report.cells]
    return lines


def _report_lines(report: Report, results: Sequence[tuple[Target, float, bool]]) -> list[str]:
    lines = [
        f"{report.dataset}: {report.samples} texts in {report.seconds:.2f} s "
        f"({report.texts_per_second:,.0f} texts/s)",
        *_flag_lines(report),
        f"  benign flagged: {report.benign_flagged}/{report.benign} ({report.benign_fp_rate:.1%})"
        + (
            f"; hard negatives flagged: {report.hard_negatives_flagged}/{report.hard_negatives}"
            if report.hard_negatives
            else ""
        ),
        *_cell_lines(report),
    ]
    lines += [
        f"  target {t.label:<32}{v:>7.3f}  {'PASS' if met else 'FAIL'}"
        for t, v, met in results
        if t.dataset == report.dataset
    ]
    return lines


def format_run(result: Run) -> str:
    """The human-readable table printed by ``vigil eval``."""
    results = result.results()
    lines: list[str] = []
    for report in result.reports:
        lines += [*_report_lines(report, results), ""]
    lines += [f"{name}: MISSING ({why})" for name, why in result.missing]
    failed = sum(not met for _, _, met in results)
    lines.append(f"targets: {len(results) - failed} pass, {failed} fail")
    return "\n".join(lines)
