"""Personal information: contacts, addresses, handles, pupils with year groups and routines."""

from __future__ import annotations

import pytest

from classifiers import (
    Classifier,
    ClassifierOptions,
    Flag,
    Input,
    Roster,
    StaffMember,
    Tag,
    build_classifier,
)

ROSTER = Roster(
    school_name="Oakfield Primary School",
    school_aliases=("Oakfield", "OPS", "Oakfield Primary"),
    published_contacts=("01632 960123", "office@oakfield.example.sch.uk", "Mill Lane, EB4 7QT"),
    staff=(StaffMember(name="David Hughes", aliases=("Mr Hughes",), role="teacher"),),
)


@pytest.fixture(scope="module")
def pii() -> Classifier:
    return build_classifier(ROSTER, ClassifierOptions(enabled_detectors=("personal_info",)))


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("call me on 07700 900123", "07700 900123"),
        ("call me on 07700900123 tonight", "07700900123"),
        ("ring 07700-900-123", "07700-900-123"),
        ("whatsapp +44 7700 900123", "+44 7700 900123"),
        ("or +44 (0)7700 900123", "+44 (0)7700 900123"),
        ("his home number is 01632 960999", "01632 960999"),
        ("london office 020 7946 0018", "020 7946 0018"),
        ("email jo.bloggs@example.com please", "jo.bloggs@example.com"),
        ("she lives at 12 Mill Lane", "12 Mill Lane"),
        ("he lives at 22 larch avenue near the park", "22 larch avenue"),
        ("postcode EB4 2LP", "EB4 2LP"),
        ("my snap is lily_x09", "lily_x09"),
        ("add me on insta: @tilly.b2015", "@tilly.b2015"),
        ("Lily Smith in Year 3 has lost her blue scooter", "Lily Smith in Year 3"),
    ],
)
def test_personal_information_is_found(pii: Classifier, text: str, found: str) -> None:
    verdict = pii.classify(Input(text=text))
    assert Flag.PERSONAL_INFO in verdict.flags
    start = text.index(found)
    assert (start, start + len(found)) in [r.span for r in verdict.reasons]


@pytest.mark.parametrize(
    "text",
    [
        "Ring the office on 01632 960123 or email office@oakfield.example.sch.uk",
        "Office: 01632-960123",
        "Office: +44 1632 960123",
        "Find us on Mill Lane, EB4 7QT",
        "Year 6 won the football 3-1 on Saturday",
        "Thanks Mr Hughes and Year 4 for a lovely assembly",
        # Praise by name and year group, with no location or routine, is not personal
        # information, at any age (tests/eval/README.md's label rule).
        "Lily Smith in Year 3 won the prize",
        "well done to Year 6's Jack",
        "Hat-trick for Jack in Year 6 on Saturday!",
        "Whichever Year 6 lad helped the lady with her bags, your parents should be proud",
        "Shout out to Dylan (Y11) who stayed late every night this week to help build the set",
        "Great Year 11 workshop from Brook today",
        "has anyone seen Year 6's Jack",
        "Doors open at 3.15pm, tickets £2.50",
        "Follow us on @OakfieldPrimary for updates",
        "Our number is 1234 and the score was 07 to 3",
    ],
)
def test_not_personal_information(pii: Classifier, text: str) -> None:
    assert pii.classify(Input(text=text)).flags == frozenset()


@pytest.mark.parametrize(
    "text",
    [
        "Lily in Year 3 walks home alone at 3.15",
        "Jack from 4B waits at the bus stop every morning",
        "im 10 and in year 5, my house is the yellow one on mill lane",
    ],
)
def test_child_location_or_routine_is_safeguarding(pii: Classifier, text: str) -> None:
    verdict = pii.classify(Input(text=text))
    assert {Flag.PERSONAL_INFO, Flag.SAFEGUARDING} <= verdict.flags
    assert Tag.CHILD_AT_RISK in verdict.tags
    for reason in verdict.reasons:
        assert reason.text == text[reason.span[0] : reason.span[1]]


def test_named_child_without_routine_is_personal_info_only(pii: Classifier) -> None:
    verdict = pii.classify(Input(text="Maisie Turner in Year 1 lost her blue scooter"))
    assert verdict.flags == {Flag.PERSONAL_INFO}


def test_self_declared_young_age_is_tagged_under_13(pii: Classifier) -> None:
    verdict = pii.classify(Input(text="im in year 6 and i love the disco"))
    assert verdict.flags == frozenset()
    assert Tag.UNDER_13 in verdict.tags
