"""The combiner: unions, maximum severity, scores, ordering and the special cases."""

from __future__ import annotations

import pytest

from classifiers import (
    Cell,
    Classifier,
    ClassifierOptions,
    Flag,
    Input,
    Severity,
    Signal,
    Tag,
    build_classifier,
)
from classifiers.base import Roster
from classifiers.combine import CRITICISM_MODEL_BAR, combine


def _signal(
    flag: Flag | None,
    severity: Severity,
    span: tuple[int, int],
    *,
    cell: str = "content.aggressive",
    rule: str = "r",
    tags: frozenset[Tag] = frozenset(),
    detector: str = "test",
    score: float | None = None,
) -> Signal:
    return Signal(
        detector=detector,
        flag=flag,
        cell=Cell.parse(cell) if cell else None,
        severity=severity,
        span=span,
        text="x" * (span[1] - span[0]),
        rule=rule,
        tags=tags,
        score=score,
    )


def test_empty_is_clean() -> None:
    verdict = combine([])
    assert not verdict.flagged
    assert verdict.severity is Severity.NONE
    assert verdict.to_json()["reasons"] == []


def test_unions_max_and_order() -> None:
    signals = [
        _signal(Flag.SPAM, Severity.LOW, (30, 35), cell="content.commercial", rule="b"),
        _signal(Flag.ABUSIVE, Severity.HIGH, (0, 4), rule="a", tags=frozenset({Tag.HATE})),
    ]
    verdict = combine(signals)
    assert verdict.flags == {Flag.SPAM, Flag.ABUSIVE}
    assert verdict.cells == {Cell.parse("content.commercial"), Cell.parse("content.aggressive")}
    assert verdict.severity is Severity.HIGH
    assert [r.rule for r in verdict.reasons] == ["a", "b"]
    assert verdict.tags == {Tag.HATE}
    assert verdict.scores == {"abusive": 0.8, "spam": 0.35}


def test_several_high_signals_stay_high_and_raise_the_score() -> None:
    signals = [
        _signal(Flag.ABUSIVE, Severity.HIGH, (i * 10, i * 10 + 4), rule=f"r{i}") for i in range(3)
    ]
    verdict = combine(signals)
    assert verdict.severity is Severity.HIGH
    assert verdict.scores["abusive"] == pytest.approx(1 - 0.2**3)


def test_order_of_input_does_not_matter() -> None:
    signals = [
        _signal(Flag.ABUSIVE, Severity.MEDIUM, (5, 9), rule="m"),
        _signal(Flag.SPAM, Severity.LOW, (0, 3), cell="content.commercial", rule="s"),
    ]
    assert combine(signals) == combine(list(reversed(signals)))


def test_nested_weaker_signal_of_same_kind_is_dropped() -> None:
    outer = _signal(Flag.ABUSIVE, Severity.HIGH, (0, 20), rule="outer")
    inner = _signal(Flag.ABUSIVE, Severity.MEDIUM, (5, 9), rule="inner")
    assert [r.rule for r in combine([inner, outer]).reasons] == ["outer"]


def test_other_detectors_whole_text_signal_keeps_the_rules_exact_span() -> None:
    model = Signal(
        detector="detoxify",
        flag=Flag.ABUSIVE,
        cell=Cell.parse("content.aggressive"),
        severity=Severity.HIGH,
        span=(0, 20),
        text="x" * 20,
        rule="detoxify.toxicity",
    )
    rule = _signal(Flag.ABUSIVE, Severity.MEDIUM, (5, 9), rule="bullying.insult")
    assert [r.rule for r in combine([model, rule]).reasons] == [
        "detoxify.toxicity",
        "bullying.insult",
    ]


def test_flagless_markers_are_not_reasons_but_tagged_ones_are() -> None:
    marker = _signal(None, Severity.NONE, (0, 5), cell="", rule="child.reference")
    fair = _signal(None, Severity.NONE, (6, 9), cell="", tags=frozenset({Tag.FAIR_CRITICISM}))
    verdict = combine([marker, fair])
    assert not verdict.flagged
    assert verdict.tags == {Tag.FAIR_CRITICISM}
    assert len(verdict.reasons) == 1


def test_nude_image_plus_child_is_child_sexual_imagery() -> None:
    nude = _signal(
        Flag.SAFEGUARDING, Severity.HIGH, (0, 5), cell="conduct.sexual", rule="sexual.nudes"
    )
    child = _signal(None, Severity.NONE, (10, 16), cell="", rule="child.reference")
    verdict = combine([nude, child])
    assert verdict.severity is Severity.CRITICAL
    assert Tag.CHILD_SEXUAL_IMAGERY in verdict.tags
    assert Cell.parse("conduct.sexual") in verdict.cells


def test_sender_contact_in_spam_is_not_personal_info() -> None:
    spam = _signal(Flag.SPAM, Severity.LOW, (0, 5), cell="content.commercial", rule="spam.advert")
    phone = _signal(
        Flag.PERSONAL_INFO,
        Severity.MEDIUM,
        (9, 21),
        cell="content.commercial",
        rule="personal_info.phone",
    )
    assert combine([spam, phone]).flags == {Flag.SPAM}


def _model_defamation(score: float) -> Signal:
    return _signal(
        Flag.DEFAMATORY,
        Severity.MEDIUM,
        (0, 40),
        cell="content.values",
        rule="textcat.defamatory",
        detector="textcat",
        score=score,
    )


def _criticism() -> Signal:
    return _signal(
        None,
        Severity.NONE,
        (0, 9),
        cell="",
        rule="people.fair_criticism",
        tags=frozenset({Tag.FAIR_CRITICISM}),
    )


def test_a_weak_model_guess_does_not_turn_criticism_into_defamation() -> None:
    """The people detector read "Mr Hughes never replies ..." as criticism; a model's
    defamation guess below the bar is dropped, a confident one or a rule's finding is kept."""
    weak = CRITICISM_MODEL_BAR - 0.2
    assert combine([_criticism(), _model_defamation(weak)]).flags == frozenset()
    assert Tag.FAIR_CRITICISM in combine([_criticism(), _model_defamation(weak)]).tags
    confident = combine([_criticism(), _model_defamation(CRITICISM_MODEL_BAR + 0.1)])
    assert confident.flags == {Flag.DEFAMATORY}
    rule = _signal(Flag.DEFAMATORY, Severity.HIGH, (10, 20), rule="people.allegation.theft")
    assert combine([_criticism(), _model_defamation(weak), rule]).flags == {Flag.DEFAMATORY}
    assert combine([_model_defamation(weak)]).flags == {Flag.DEFAMATORY}  # no criticism read


ROSTER = Roster(school_name="Oakfield Primary School", school_aliases=("Oakfield",))


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return build_classifier(ROSTER)


@pytest.mark.parametrize(
    ("text", "severity", "tags"),
    [
        ("nudes of a year 9 girl going round", Severity.CRITICAL, {Tag.CHILD_SEXUAL_IMAGERY}),
        ("he's got a pic of her naked on his phone", Severity.CRITICAL, {Tag.CHILD_SEXUAL_IMAGERY}),
        (
            "a photo of my daughter with no clothes on is being passed round",
            Severity.CRITICAL,
            {Tag.CHILD_SEXUAL_IMAGERY},
        ),
        ("i'm going to kill myself tonight", Severity.CRITICAL, {Tag.SELF_HARM}),
        ("bringing a knife to school tomorrow", Severity.CRITICAL, {Tag.THREAT}),
        ("I'll batter you, year 7 kid", Severity.HIGH, {Tag.THREAT, Tag.CHILD_AT_RISK}),
        ("free followers, check out my channel", Severity.LOW, set()),
    ],
)
def test_end_to_end_severity(
    classifier: Classifier, text: str, severity: Severity, tags: set[Tag]
) -> None:
    verdict = classifier.classify(Input(text=text))
    assert verdict.severity is severity
    assert tags <= verdict.tags
    if Tag.CHILD_SEXUAL_IMAGERY in tags:
        assert Flag.SAFEGUARDING in verdict.flags


def test_threat_to_child_adds_safeguarding(classifier: Classifier) -> None:
    verdict = classifier.classify(Input(text="I'll batter you, year 7 kid"))
    assert verdict.flags == {Flag.ABUSIVE, Flag.SAFEGUARDING}
    assert Cell.parse("contact.aggressive") in verdict.cells


def test_classify_many_is_deterministic(classifier: Classifier) -> None:
    items = [Input(text=t) for t in ("kys", "lovely trip", "07700 900123", "kys")]
    first = [v.to_json() for v in classifier.classify_many(items)]
    second = [v.to_json() for v in build_classifier(ROSTER).classify_many(items)]
    assert first == second
    assert first[0] == first[3]
    assert first[1]["flags"] == []


def test_public_names_are_pinned() -> None:
    import classifiers

    assert sorted(classifiers.__all__) == sorted(
        [
            "ALL_CELLS", "DETECTORS", "Area", "Cell", "Classifier", "ClassifierError",
            "ClassifierOptions", "Detector", "Flag", "Input", "NotConfigured", "Roster",
            "Severity", "Signal", "StaffMember", "Tag", "Type", "Verdict", "build_classifier",
        ]
    )  # fmt: skip


def test_unknown_detector_is_skipped_with_reason() -> None:
    from classifiers import ClassifierOptions

    built = build_classifier(ROSTER, ClassifierOptions(enabled_detectors=("rules", "toxicity")))
    assert built.enabled == ("rules",)
    assert built.skipped[0][0] == "toxicity"
    assert "unknown detector" in built.skipped[0][1]


@pytest.mark.parametrize(
    "text",
    [
        "send me a pic of you, ur in year 8 right",
        "horny for schoolgirls in year 9",
    ],
)
def test_sexual_content_involving_a_child_is_critical(text: str) -> None:
    rules = build_classifier(Roster(), ClassifierOptions(enabled_detectors=("rules",)))
    verdict = rules.classify(Input(text=text))
    assert verdict.severity is Severity.CRITICAL
    assert Flag.SAFEGUARDING in verdict.flags
    assert Tag.CHILD_AT_RISK in verdict.tags


def test_adult_sexual_content_without_a_child_is_not_critical() -> None:
    rules = build_classifier(Roster(), ClassifierOptions(enabled_detectors=("rules",)))
    verdict = rules.classify(Input(text="this video is basically porn"))
    assert verdict.severity is Severity.MEDIUM


@pytest.mark.parametrize(
    ("text", "severity"),
    [
        ("oh shit I forgot my keys", Severity.LOW),
        ("you dirty p*ki", Severity.HIGH),
        ("i'll stab you", Severity.HIGH),
        ("i want to kill myself tonight", Severity.CRITICAL),
    ],
)
def test_severity_ladder(text: str, severity: Severity) -> None:
    rules = build_classifier(Roster(), ClassifierOptions(enabled_detectors=("rules",)))
    assert rules.classify(Input(text=text)).severity is severity
