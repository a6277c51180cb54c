"""Vigil's classifiers: lexicon rules, named-person/defamation and personal-information
detectors, combined into one Verdict per text.

    classifier = build_classifier(roster, ClassifierOptions())
    verdict = classifier.classify(Input(text="..."))

Plain synchronous code; spaCy (a blank English pipeline, no model download) is loaded once
per Classifier. Detectors that cannot run raise NotConfigured and are listed in
``Classifier.skipped`` with the reason, for startup logging.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from classifiers.base import (
    ClassifierError,
    Detector,
    Input,
    NotConfigured,
    Roster,
    Signal,
    StaffMember,
    Verdict,
)
from classifiers.combine import combine
from classifiers.normalise import Parser
from classifiers.people import PeopleDetector
from classifiers.personal_info import PersonalInfoDetector
from classifiers.rules import RulesDetector
from classifiers.taxonomy import ALL_CELLS, Area, Cell, Flag, Severity, Tag, Type
from classifiers.textcat import TextcatDetector
from classifiers.toxicity import DetoxifyDetector

__all__ = [
    "ALL_CELLS",
    "DETECTORS",
    "Area",
    "Cell",
    "Classifier",
    "ClassifierError",
    "ClassifierOptions",
    "Detector",
    "Flag",
    "Input",
    "NotConfigured",
    "Roster",
    "Severity",
    "Signal",
    "StaffMember",
    "Tag",
    "Type",
    "Verdict",
    "build_classifier",
]


@dataclass(frozen=True, kw_only=True)
class ClassifierOptions:
    """What the school can change: its own lexicons, rules switched off, detectors enabled."""

    extra_lexicon_files: tuple[Path, ...] = ()  # school's own TOML lexicons, built-in format
    suppress_rules: tuple[str, ...] = ()  # lexicon entry ids (fnmatch globs) to switch off
    enabled_detectors: tuple[str, ...] = ("rules", "people", "personal_info", "textcat")
    # Detoxify (extra `vigil[detoxify]`): local, prepared files only; see classifiers.toxicity.
    detoxify_model: str = "original-small"
    detoxify_checkpoint: Path | None = None
    detoxify_config_dir: Path | None = None
    detoxify_batch_size: int = 32
    # (label, threshold) pairs over the defaults; pairs, not a dict, so options stay hashable
    detoxify_thresholds: tuple[tuple[str, float], ...] = ()
    detoxify_threads: int = 1  # torch threads; the daemon shares a small machine
    # The trained text classifier (classifiers.textcat); None: the model shipped with Vigil.
    textcat_model: Path | None = None
    textcat_thresholds: tuple[tuple[str, float], ...] = ()  # (flag, threshold) over defaults


DetectorFactory = Callable[[Roster, ClassifierOptions, Parser], Detector]


def _rules(roster: Roster, options: ClassifierOptions, parser: Parser) -> Detector:
    return RulesDetector(
        parser=parser,
        extra_lexicon_files=options.extra_lexicon_files,
        suppress_rules=options.suppress_rules,
        school_names=(roster.school_name, *roster.school_aliases),
        school_contacts=roster.published_contacts,
    )


def _people(roster: Roster, options: ClassifierOptions, parser: Parser) -> Detector:
    return PeopleDetector(roster, parser=parser)


def _personal_info(roster: Roster, options: ClassifierOptions, parser: Parser) -> Detector:
    return PersonalInfoDetector(roster)


def _detoxify(roster: Roster, options: ClassifierOptions, parser: Parser) -> Detector:
    return DetoxifyDetector(
        model=options.detoxify_model,
        checkpoint=options.detoxify_checkpoint,
        config_dir=options.detoxify_config_dir,
        batch_size=options.detoxify_batch_size,
        thresholds=dict(options.detoxify_thresholds),
        threads=options.detoxify_threads,
    )


def _textcat(roster: Roster, options: ClassifierOptions, parser: Parser) -> Detector:
    return TextcatDetector(
        options.textcat_model, thresholds=dict(options.textcat_thresholds), roster=roster
    )


DETECTORS: dict[str, DetectorFactory] = {
    "rules": _rules,
    "people": _people,
    "personal_info": _personal_info,
    "detoxify": _detoxify,
    "textcat": _textcat,
}


class Classifier:
    """The enabled detectors plus the combiner; safe to reuse for many texts."""

    def __init__(
        self, detectors: Sequence[Detector], skipped: Sequence[tuple[str, str]] = ()
    ) -> None:
        self._detectors = tuple(detectors)
        self.enabled: tuple[str, ...] = tuple(d.name for d in self._detectors)
        self.skipped: tuple[tuple[str, str], ...] = tuple(skipped)

    def classify(self, item: Input) -> Verdict:
        """Run every enabled detector on ``item`` and combine their signals."""
        return combine(s for detector in self._detectors for s in detector.detect(item))

    def classify_many(self, items: Sequence[Input]) -> list[Verdict]:
        """Classify each item in order; a detector with ``detect_many`` gets them all at once."""
        found: list[list[Signal]] = [[] for _ in items]
        for detector in self._detectors:
            for bucket, signals in zip(found, _detect_many(detector, items), strict=True):
                bucket.extend(signals)
        return [combine(signals) for signals in found]


def _detect_many(detector: Detector, items: Sequence[Input]) -> list[Sequence[Signal]]:
    """A batching detector's ``detect_many`` (e.g. Detoxify), else ``detect`` item by item."""
    many = getattr(detector, "detect_many", None)
    if many is None:
        return [detector.detect(item) for item in items]
    batched: list[Sequence[Signal]] = many(items)
    return batched


def build_classifier(
    roster: Roster, options: ClassifierOptions = ClassifierOptions()
) -> Classifier:
    """Build the enabled detectors once; a detector that cannot run is skipped with its reason."""
    parser = Parser()
    detectors: list[Detector] = []
    skipped: list[tuple[str, str]] = []
    for name in options.enabled_detectors:
        factory = DETECTORS.get(name)
        if factory is None:
            skipped.append((name, f"unknown detector (known: {', '.join(sorted(DETECTORS))})"))
            continue
        try:
            detectors.append(factory(roster, options, parser))
        except NotConfigured as err:
            skipped.append((name, str(err)))
    return Classifier(detectors, skipped)
