"""Named people and defamation: allegations vs fair criticism."""

from __future__ import annotations

import pytest

from classifiers import (
    Cell,
    Classifier,
    ClassifierOptions,
    Flag,
    Input,
    Severity,
    Tag,
    build_classifier,
)
from tests.conftest import demo_roster

ROSTER = demo_roster()


@pytest.fixture(scope="module")
def people() -> Classifier:
    return build_classifier(ROSTER, ClassifierOptions(enabled_detectors=("people",)))


@pytest.mark.parametrize(
    ("text", "severity", "staff_harm"),
    [
        ("Mrs Price has been stealing from the PTA for years", Severity.HIGH, False),
        ("Everyone knows Mr Doyle is a nonce", Severity.HIGH, True),
        ("The head turned up drunk at sports day", Severity.MEDIUM, False),
        ("Mrs Okafor isn't even a qualified teacher", Severity.MEDIUM, False),
        ("Oakfield fiddled their SATs results last year", Severity.MEDIUM, False),
        ("Mr Lloyd is having an affair with a parent", Severity.MEDIUM, False),
        ("the caretaker touched my daughter", Severity.HIGH, True),
        ("Mr Hughes hits the children when nobody is looking", Severity.HIGH, True),
        ("Mrs Whitfield runs Oakfield. She covered up the whole thing.", Severity.HIGH, False),
        ("I heard a rumour that Mr Hughes hit a child?", Severity.MEDIUM, True),
        ("Apparently the head has been fiddling the books", Severity.MEDIUM, False),
        ("David Hughes is a liar", Severity.MEDIUM, False),
    ],
)
def test_allegations_are_defamatory(
    people: Classifier, text: str, severity: Severity, staff_harm: bool
) -> None:
    verdict = people.classify(Input(text=text))
    defamation = [r for r in verdict.reasons if r.flag is Flag.DEFAMATORY]
    assert defamation, text
    assert defamation[0].cell == Cell.parse("content.values")
    assert max(r.severity for r in defamation) is severity
    assert (Tag.ALLEGATION_AGAINST_STAFF in verdict.tags) is staff_harm
    if staff_harm:
        assert Flag.SAFEGUARDING in verdict.flags
        assert verdict.severity is Severity.HIGH


@pytest.mark.parametrize(
    "text",
    [
        "The trip was badly organised and communication was poor",
        "Mr Hughes never replies to emails, I sent two about the trip money",
        "Really disappointed with the SATs results this year, parents deserve an explanation",
        "Communication about the strike day was poor, we need more notice",
        "The new one-way system at drop-off is a joke",
    ],
)
def test_fair_criticism_is_tagged_not_flagged(people: Classifier, text: str) -> None:
    verdict = people.classify(Input(text=text))
    assert verdict.flags == frozenset()
    assert Tag.FAIR_CRITICISM in verdict.tags
    assert all(r.flag is None for r in verdict.reasons)


@pytest.mark.parametrize(
    "text",
    [
        "Mr Hughes would never hit a child",
        "Mr Hughes was assaulted by a parent at the gate",
        "Mr Hughes said a boy hit my son at lunch",
        "The price of the trip is stealing money from families",
        "Lovely assembly from Mrs Whitfield today",
        "Someone stole my son's bike from outside the shop",
        "Someone stole my son's bike from outside the school",
    ],
)
def test_not_allegations(people: Classifier, text: str) -> None:
    assert Flag.DEFAMATORY not in people.classify(Input(text=text)).flags


def test_pronoun_links_to_previous_sentence(people: Classifier) -> None:
    text = "Have you met Mrs Price? She pockets the dinner money."
    verdict = people.classify(Input(text=text.replace("pockets", "pocketed")))
    assert Flag.DEFAMATORY in verdict.flags
    reason = next(r for r in verdict.reasons if r.flag is Flag.DEFAMATORY)
    assert reason.text == "pocketed"


def test_span_covers_target_and_allegation(people: Classifier) -> None:
    text = "Everyone knows Mr Doyle is a nonce"
    reason = next(r for r in people.classify(Input(text=text)).reasons if r.flag is Flag.DEFAMATORY)
    assert reason.text == "Mr Doyle is a nonce"
    assert text[reason.span[0] : reason.span[1]] == reason.text


def test_unknown_name_is_not_a_target(people: Classifier) -> None:
    assert people.classify(Input(text="Mr Smith is a thief")).flags == frozenset()
