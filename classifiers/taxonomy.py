"""The 3 × 4 taxonomy grid, the flags moderators think in, and severities.

Rows are the seed policy's areas (contact, conduct, content); columns its types (commercial,
aggressive, sexual, values). A cell is named ``area.type``, e.g. ``contact.sexual``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

__all__ = ["ALL_CELLS", "Area", "Cell", "Flag", "Severity", "Tag", "Type"]


class Area(StrEnum):
    """Who is acting on whom."""

    CONTACT = "contact"  # adult-initiated, child as target
    CONDUCT = "conduct"  # child or peer as actor
    CONTENT = "content"  # child as recipient


class Type(StrEnum):
    """What kind of harm."""

    COMMERCIAL = "commercial"
    AGGRESSIVE = "aggressive"
    SEXUAL = "sexual"
    VALUES = "values"


@dataclass(frozen=True, order=True)
class Cell:
    """One cell of the grid."""

    area: Area
    type: Type

    def __str__(self) -> str:
        return f"{self.area.value}.{self.type.value}"

    @classmethod
    def parse(cls, name: str) -> Cell:
        """Parse ``"area.type"``; raise ValueError naming the bad part."""
        area, _, kind = name.strip().lower().partition(".")
        try:
            return cls(Area(area), Type(kind))
        except ValueError:
            raise ValueError(
                f"unknown taxonomy cell {name!r} (expected e.g. 'contact.sexual')"
            ) from None


ALL_CELLS: tuple[Cell, ...] = tuple(Cell(a, t) for a in Area for t in Type)


class Flag(StrEnum):
    """What the queue shows: the reason a post needs a person's attention."""

    ABUSIVE = "abusive"
    DEFAMATORY = "defamatory"
    SAFEGUARDING = "safeguarding"
    SPAM = "spam"
    PERSONAL_INFO = "personal_info"


class Severity(IntEnum):
    """Misuse ranges from inappropriate to criminal; order matters."""

    NONE = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        """Lower-case name used in JSON and config (``"high"``)."""
        return self.name.lower()

    @classmethod
    def parse(cls, name: str) -> Severity:
        """Parse a lower-case severity name."""
        try:
            return cls[name.strip().upper()]
        except KeyError:
            raise ValueError(
                f"unknown severity {name!r} (expected none, low, medium, high or critical)"
            ) from None


class Tag(StrEnum):
    """Finer routing facts the policy needs beyond flags and cells."""

    CHILD_SEXUAL_IMAGERY = "child_sexual_imagery"  # IWF/CEOP route, never handle media
    ALLEGATION_AGAINST_STAFF = "allegation_against_staff"  # LADO
    CHILD_AT_RISK = "child_at_risk"
    SELF_HARM = "self_harm"
    RADICALISATION = "radicalisation"  # Prevent duty
    THREAT = "threat"  # police
    HATE = "hate"  # extreme offence: never tolerated
    FAIR_CRITICISM = "fair_criticism"  # never hidden automatically
    UNDER_13 = "under_13"
