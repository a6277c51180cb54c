"""Everyday school posts that must never be flagged: criticism, logistics, topics and idioms.

A wrong flag silences a parent; these guard against lexicon phrases that read as harm out of
context (each once fired here, some as high-severity safeguarding).
"""

from __future__ import annotations

import pytest

from classifiers import Classifier, Input, build_classifier
from tests.conftest import demo_roster

EVERYDAY = [
    "The parents' evening booking system is useless, please fix it",
    "Honestly the communication about the trip was pathetic",
    "It's annoying that the car park is always full at pick up",
    "The new lunch menu is a bit cringe but the kids like it",
    "Can you post more photos of sports day please?",
    "Great to see it finally stopped raining for the fair",
    "The pics of sports day are up on the website",
    "Please send photos of your Easter bonnets to the office",
    "Children go back to school on Monday 5th January",
    "Please take all of your belongings home before half term",
    "Mrs Okafor is taking over Year 2 from next week",
    "The following year the choir went to the Royal Albert Hall",
    "I've decided to run the half marathon for the PTA",
    "We visited the farm and saw a cow and two goats",
    "Witch and wizard costumes welcome for the Halloween disco",
    "Anyone need a lift home after the disco? I have two seats",
    "Don't tell anyone, it's a surprise party for Mrs Price!",
    "The dinosaur topic was a huge hit with Year 1",
    "Stay away from the railway line on the walk home, please",
    "The only way out of the car park is via Mill Lane during the works",
    "Ella will pass out the leaflets at the gate",
    "Who's collecting in the car park at 3? I can give Ella a lift",
    "She deserves it, well done on the reading award!",
    "Vote now for the new school council!",
    "Year 6 were done for after the cross country, what a day!",
]


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return build_classifier(demo_roster())


@pytest.mark.parametrize("text", EVERYDAY)
def test_an_everyday_post_is_not_flagged(classifier: Classifier, text: str) -> None:
    for source in ("own", "mention"):
        verdict = classifier.classify(Input(text=text, source_kind=source))
        assert not verdict.flags, [r.reason_json() for r in verdict.reasons if r.flag]
