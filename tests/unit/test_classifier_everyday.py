"""Everyday school posts that must never be flagged: criticism, logistics, topics and idioms.

A wrong flag silences a parent; these guard against lexicon phrases that read as harm out of
context (each once fired here, some as high-severity safeguarding).
"""

from __future__ import annotations

import pytest

from classifiers import Classifier, ClassifierOptions, Input, build_classifier
from classifiers.combine import MODEL_DETECTORS
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
    # Near-misses of the v2 construction patterns (threats, hate, sexual, self-harm, dares).
    "Disabled parking spaces should be kept clear at pick up",
    "Muslims are a valued part of our school community",
    "Jews are taking part in our interfaith week",
    "In swimming the children learn to hold their breath under water",
    "Come dressed as an evil witch or a scary clown for the disco",
    "Does anyone have the pictures of the Year 2 trip to the zoo?",
    "Our Year 11 cadets have their pass out parade on Friday",
    "Coming to the match with a flask and a blanket, it's freezing",
    "The only way out is through the side gate while the path is resurfaced",
    "The girls' netball team in their new kit, well done on the win!",
    "Does anyone know where the new crossing is going to be?",
    "I'll sort them out tomorrow, the forms are on my desk",
    "The boys were so embarrassed when they won the dance award",
    "Our e-safety talk covered deepfakes and how to report them",
    "Mr Hale will be rating the science fair projects out of 10",
    "If you want to chat about your child's first 100 days, call the office",
    "Lots of scam texts going round: we will never ask for your bank details by text",
    "Check out our Year 6 video of the Victorian day on the school website",
    # Lessons, plays, visits and news reports about the topics the lexicons flag.
    "Year 8 PSHE lesson: what self-harm is and how to help a friend who tells you",
    "Year 11 drama group performed a play about county lines for the lower school",
    "A visit from the Ben Kinsella Trust today about the consequences of knife crime",
    "Police arrested four people in county lines raids in the town this week",
    "Loot boxes can be a gateway to gambling, there's a good guide for parents on the website",
    # Scam warnings, where the warning comes after the bait it quotes.
    "Accounts are commenting 'free Xbox giveaway' under our posts. It's a scam, don't click.",
    # Slang, a scoreline and a complaint that share words with abuse.
    "the staff panto absolutely slapped",
    "FT: U14s 6-0 Ashby Vale, what a performance",
    "With respect, nobody asked parents what we thought about the new phone policy",
    "Free sanitary products from the office, no questions asked",
]


RULE_DETECTORS = ("rules", "people", "personal_info")
# The trained model's known misses on this list (see the issue note): a lift offered to a
# named child, "sort them out", "rating ... out of 10". A retrain that flags more than this
# many of these posts has got worse at everyday language.
MODEL_EVERYDAY_BUDGET = 4


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return build_classifier(demo_roster())


@pytest.fixture(scope="module")
def rules_only() -> Classifier:
    return build_classifier(demo_roster(), ClassifierOptions(enabled_detectors=RULE_DETECTORS))


@pytest.mark.parametrize("text", EVERYDAY)
def test_no_rule_flags_an_everyday_post(rules_only: Classifier, text: str) -> None:
    for source in ("own", "mention"):
        verdict = rules_only.classify(Input(text=text, source_kind=source))
        assert not verdict.flags, [r.reason_json() for r in verdict.reasons if r.flag]


def test_the_model_flags_few_everyday_posts(classifier: Classifier) -> None:
    """The whole classifier, model included: its guesses on these posts stay within budget,
    and they are the model's alone (no rule agrees), so none is hidden automatically."""
    flagged = {}
    for text in EVERYDAY:
        verdict = classifier.classify(Input(text=text, source_kind="own"))
        if verdict.flags:
            flagged[text] = sorted(f.value for f in verdict.flags)
            assert all(r.detector in MODEL_DETECTORS for r in verdict.reasons if r.flag), text
    assert len(flagged) <= MODEL_EVERYDAY_BUDGET, flagged


@pytest.mark.parametrize(
    ("text", "flag"),
    [
        # The narrowed phrases still catch what they were for.
        ("ok and? nobody asked you", "abusive"),
        ("Mr Hughes slapped my son in the corridor", "defamatory"),
        ("she lives at 14 Foxglove Close", "personal_info"),
        # An awareness marker does not excuse a direct request or a disclosure nearby.
        ("After the online safety talk he still keeps asking me to send nudes", "safeguarding"),
    ],
)
def test_narrowed_rules_still_fire(classifier: Classifier, text: str, flag: str) -> None:
    verdict = classifier.classify(Input(text=text))
    assert flag in {f.value for f in verdict.flags}, verdict.reasons
