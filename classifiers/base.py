"""Classifier inputs, signals and verdicts, and the detector protocol.

Exception tree::

    ClassifierError        base
    └── NotConfigured      a detector cannot run with the config or files it was given

This module imports nothing of ours outside ``classifiers`` (see DESIGN.md, "Packages").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from classifiers.taxonomy import Cell, Flag, Severity, Tag

__all__ = [
    "ClassifierError",
    "Detector",
    "Input",
    "NotConfigured",
    "Roster",
    "Signal",
    "StaffMember",
    "Verdict",
]


class ClassifierError(Exception):
    """Classification failed."""


class NotConfigured(ClassifierError):
    """This detector cannot run with the configuration or files it was given."""


@dataclass(frozen=True, kw_only=True)
class StaffMember:
    """A named adult at the school, from the config roster."""

    name: str
    aliases: tuple[str, ...] = ()
    role: str = ""  # "head", "dsl", "deputy_dsl", "governor" have meaning; anything else is allowed


@dataclass(frozen=True, kw_only=True)
class Roster:
    """The school as the classifiers need to know it."""

    school_name: str = ""
    school_aliases: tuple[str, ...] = ()
    published_contacts: tuple[str, ...] = ()
    staff: tuple[StaffMember, ...] = ()

    @classmethod
    def from_mapping(cls, school: Mapping[str, Any]) -> Roster:
        """The ``{"name", "aliases", "published_contacts", "staff"}`` header of a labelled file.

        Raises ValueError when a staff entry has no name.
        """
        try:
            staff = tuple(
                StaffMember(
                    name=s["name"], aliases=tuple(s.get("aliases", ())), role=s.get("role", "")
                )
                for s in school.get("staff", ())
            )
        except (KeyError, TypeError, AttributeError):
            raise ValueError("each roster staff entry needs a name") from None
        return cls(
            school_name=school.get("name", ""),
            school_aliases=tuple(school.get("aliases", ())),
            published_contacts=tuple(school.get("published_contacts", ())),
            staff=staff,
        )


@dataclass(frozen=True, kw_only=True)
class Input:
    """One text to classify, with the little context the detectors may use."""

    text: str
    source_kind: str = "mention"  # "own" | "mention"
    platform: str | None = None
    author: str | None = None
    url: str | None = None
    has_media: bool = False


@dataclass(frozen=True, kw_only=True)
class Signal:
    """One detector's finding: which flag/cell, how bad, and which span of the text."""

    detector: str
    flag: Flag | None
    cell: Cell | None
    severity: Severity
    span: tuple[int, int]
    text: str
    score: float | None = None
    tags: frozenset[Tag] = frozenset()
    rule: str = ""  # lexicon entry or rule id, for explaining and suppressing

    def reason_json(self) -> dict[str, Any]:
        """The ``reasons`` entry of the ``vigil classify`` contract."""
        return {
            "detector": self.detector,
            "flag": self.flag.value if self.flag else None,
            "cell": str(self.cell) if self.cell else None,
            "span": [self.span[0], self.span[1]],
            "text": self.text,
        }


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """Everything the classifiers concluded about one text."""

    flags: frozenset[Flag] = frozenset()
    cells: frozenset[Cell] = frozenset()
    severity: Severity = Severity.NONE
    scores: Mapping[str, float] = field(default_factory=dict)
    reasons: tuple[Signal, ...] = ()
    tags: frozenset[Tag] = frozenset()

    @property
    def flagged(self) -> bool:
        """True when any flag is set."""
        return bool(self.flags)

    def to_json(self) -> dict[str, Any]:
        """The ``vigil classify`` output fields (without ``id``)."""
        return {
            "flags": sorted(f.value for f in self.flags),
            "cells": sorted(str(c) for c in self.cells),
            "severity": self.severity.label,
            "scores": {k: round(v, 4) for k, v in sorted(self.scores.items())},
            "reasons": [s.reason_json() for s in self.reasons],
            "tags": sorted(t.value for t in self.tags),
        }


class Detector(Protocol):
    """A small component with one method; raises NotConfigured in ``__init__`` if it can't run."""

    name: str

    def detect(self, item: Input) -> Sequence[Signal]:
        """Return every signal found in ``item``; plain synchronous code."""
        ...
