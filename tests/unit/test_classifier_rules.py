"""Lexicon rules: flags, cells, tags, suppression, obfuscation, spans and lexicon files."""

from __future__ import annotations

from pathlib import Path

import pytest

from classifiers import (
    Cell,
    Classifier,
    ClassifierOptions,
    Flag,
    Input,
    NotConfigured,
    Roster,
    Severity,
    Tag,
    build_classifier,
)
from classifiers.normalise import normalise
from classifiers.rules import BUILTIN_LEXICONS, RulesDetector, load_lexicons

ROSTER = Roster(school_name="Oakfield Primary School", school_aliases=("Oakfield", "OPS"))


@pytest.fixture(scope="module")
def rules_only() -> Classifier:
    return build_classifier(ROSTER, ClassifierOptions(enabled_detectors=("rules",)))


@pytest.mark.parametrize(
    ("text", "flag", "cell", "tag"),
    [
        (
            "this is our little secret, dont tell your parents",
            "safeguarding",
            "contact.sexual",
            "child_at_risk",
        ),
        (
            "ur so mature for your age, send me a pic",
            "safeguarding",
            "contact.sexual",
            "child_at_risk",
        ),
        ("i want to kill myself tonight", "safeguarding", "contact.values", "self_harm"),
        ("just kys nobody likes u", "abusive", "conduct.aggressive", None),
        ("just kys nobody likes u", "safeguarding", "contact.values", "self_harm"),
        ("I'll stab you after school", "abusive", "conduct.aggressive", "threat"),
        ("gonna shoot up the school tomorrow", "safeguarding", "content.aggressive", "threat"),
        ("go back to your own country", "abusive", "content.values", "hate"),
        ("he called him a p*ki in the playground", "abusive", "content.aggressive", "hate"),
        ("selling vapes £5 dm me", "safeguarding", "conduct.commercial", "child_at_risk"),
        ("selling weed and edibles, dm", "safeguarding", "conduct.commercial", None),
        ("zombie knives for sale cheap", "safeguarding", "conduct.commercial", "threat"),
        ("join the caliphate brothers", "safeguarding", "contact.values", "radicalisation"),
        ("free spins and a deposit bonus at our online casino", "spam", "conduct.commercial", None),
        ("check out my channel and subscribe!!", "spam", "content.commercial", None),
        ("you have won a £1000 prize, claim now", "spam", "conduct.commercial", None),
        ("everyone do the blackout challenge tonight", "safeguarding", "conduct.values", None),
        ("ur a fat cow and a loser", "abusive", "conduct.aggressive", None),
        ("DM us your child's full name, age and class", "safeguarding", "contact.commercial", None),
        ("DM us your child's full name, age and class", "spam", "content.commercial", None),
        ("looking for runners, easy money for kids", "safeguarding", "contact.commercial", None),
        ("my dads friend hurts me when mum is at work", "safeguarding", "contact.aggressive", None),
        # Constructions rather than fixed phrases (lexicon v2): worded unlike the school suite.
        (
            "im walking into oakfield on monday with a blade",
            "safeguarding",
            "content.aggressive",
            "threat",
        ),
        ("somebody needs to torch that place", "abusive", "content.aggressive", "threat"),
        ("refugees are invading our town", "abusive", "content.values", "hate"),
        ("autistic kids should be locked away somewhere", "abusive", "content.values", "hate"),
        ("rating the year 10 girls bodies lol", "safeguarding", "contact.sexual", "child_at_risk"),
        (
            "whoever has the vids of that year 7 lad send them to me",
            "safeguarding",
            "conduct.sexual",
            None,
        ),
        (
            "the only way out for me is the pills in the cupboard",
            "safeguarding",
            "contact.values",
            "self_harm",
        ),
        (
            "who can hold your breath the longest, loser buys pop",
            "safeguarding",
            "conduct.values",
            None,
        ),
        (
            "kids at oakfield message me what road they live on",
            "safeguarding",
            "contact.commercial",
            None,
        ),
        ("the stupid lazy pig running that school", "abusive", "content.aggressive", None),
        (
            "anyone know where that gobby year 9 kid lives",
            "safeguarding",
            "contact.aggressive",
            "threat",
        ),
        ("that girl in the talent show is so cringe", "abusive", "conduct.aggressive", None),
        ("made a deepfake of her and sent it round", "abusive", "conduct.sexual", None),
    ],
)
def test_rule_flags(
    rules_only: Classifier, text: str, flag: str, cell: str, tag: str | None
) -> None:
    verdict = rules_only.classify(Input(text=text))
    assert Flag(flag) in verdict.flags
    assert Cell.parse(cell) in verdict.cells
    if tag is not None:
        assert Tag(tag) in verdict.tags


@pytest.mark.parametrize(
    "text",
    [
        "That maths test killed me lol",
        "I was dying of laughter at the panto",
        "She absolutely murdered that test, so proud",
        "Year 6 smashed it at the football tournament!",
        "E-safety assembly on grooming today: how to spot the signs and how to report",
        "Knife crime awareness talk for Year 6 parents on Thursday",
        "Anti-bullying week: if your child is being bullied, here is how to report it",
        "Suicide prevention day: Samaritans helpline details are on the website",
        "Our PTA casino night raised £400 for the library",
        "Please click the link to book parents evening",
        "Thanks for the kisses xxx",
        "The Eastbridge cows got out again on Mill Lane",
        "My mum is going to kill me, I forgot my PE kit",
        "We weighed up the pros and cons of the new uniform",
        "Year 4 learnt about Niger and Mali in geography",
    ],
)
def test_hard_negatives_are_not_flagged(rules_only: Classifier, text: str) -> None:
    assert rules_only.classify(Input(text=text)).flags == frozenset()


def test_awareness_never_hides_a_direct_threat(rules_only: Classifier) -> None:
    verdict = rules_only.classify(Input(text="anti-bullying week is a joke, i'll stab you"))
    assert Flag.ABUSIVE in verdict.flags


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("you are a N 0 N C E", "N 0 N C E"),
        ("i will k1lllll you", "k1lllll you"),
        ("Go   k.i.l.l yourself", "k.i.l.l yourself"),
        ("you absolute sl@g", "sl@g"),
        ("ur a nonceeeee lol", "nonceeeee"),
        ("LOSERRRRR", "LOSERRRRR"),
    ],
)
def test_obfuscation_spans_map_to_original_text(
    rules_only: Classifier, text: str, fragment: str
) -> None:
    verdict = rules_only.classify(Input(text=text))
    assert verdict.flags
    start = text.index(fragment)
    assert any(r.span == (start, start + len(fragment)) for r in verdict.reasons)
    for reason in verdict.reasons:
        assert reason.text == text[reason.span[0] : reason.span[1]]


def test_normalise_keeps_offsets() -> None:
    norm = normalise("Héllo N 0 n c e!! Sooooo")
    assert norm.text == "hello nonce!! soo"
    assert len(norm.offsets) == len(norm.text)
    assert norm.to_original(6, 11) == (6, 15)
    assert norm.to_original(14, 17) == (18, 24)


def test_times_and_year_groups_are_not_leetspeak() -> None:
    assert normalise("Year 3 at 3.15pm on 12.3.2024").text == "year 3 at 3.15pm on 12.3.2024"


def test_builtin_lexicons_are_versioned_and_valid() -> None:
    files = sorted(BUILTIN_LEXICONS.glob("*.toml"))
    assert len(files) >= 13
    entries = load_lexicons(files)
    assert len({e.id for e in entries}) == len(entries)


def _write(tmp_path: Path, body: str, name: str = "school.toml") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            'version = 1\n[[entry]]\nid = "x.one"\nphrases = ["a b"]\nflag = "nasty"\n'
            'cell = "content.values"\nseverity = "low"\n',
            "'x.one'",
        ),
        (
            'version = 1\n[[entry]]\nid = "x.two"\nphrases = ["a b"]\nflag = "spam"\n'
            'cell = "content.nowhere"\nseverity = "low"\n',
            "'x.two'",
        ),
        (
            'version = 1\n[[entry]]\nid = "x.three"\nflag = "spam"\ncell = "content.values"\n'
            'severity = "low"\n',
            "'x.three'",
        ),
        ('version = 1\n[[entry]]\nphrases = ["a"]\n', "entry #1"),
        ('[[entry]]\nid = "x.four"\nphrases = ["a"]\n', "version"),
        ("version = 1\n[[entry]\n", "cannot read"),
        (
            'version = 1\n[[entry]]\nid = "x.five"\npatterns = [[{LOWER = {BOGUS = 1}}]]\n'
            'flag = "spam"\ncell = "content.values"\nseverity = "low"\n',
            "'x.five'",
        ),
    ],
)
def test_malformed_lexicon_names_file_and_entry(tmp_path: Path, body: str, expected: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(NotConfigured) as info:
        RulesDetector(extra_lexicon_files=(path,))
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_malformed_lexicon_skips_rules_with_reason(tmp_path: Path) -> None:
    path = _write(tmp_path, "version = 1\n[[entry]]\nid = 3\n")
    classifier = build_classifier(ROSTER, ClassifierOptions(extra_lexicon_files=(path,)))
    assert "rules" not in classifier.enabled
    assert classifier.skipped[0][0] == "rules"
    assert str(path) in classifier.skipped[0][1]


def test_extra_lexicon_file_adds_rules(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        'version = 2\n[[entry]]\nid = "oakfield.gang"\nphrases = ["mill lane crew"]\n'
        'flag = "abusive"\ncell = "conduct.aggressive"\nseverity = "high"\ntags = ["threat"]\n',
    )
    classifier = build_classifier(
        ROSTER, ClassifierOptions(extra_lexicon_files=(path,), enabled_detectors=("rules",))
    )
    verdict = classifier.classify(Input(text="The MILL LANE CREW are back"))
    assert verdict.flags == {Flag.ABUSIVE}
    assert verdict.severity is Severity.HIGH
    assert verdict.reasons[0].rule == "oakfield.gang"
    assert verdict.reasons[0].text == "MILL LANE CREW"


def test_duplicate_entry_id_is_rejected(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        'version = 1\n[[entry]]\nid = "spam.followers"\nphrases = ["x y"]\nflag = "spam"\n'
        'cell = "content.commercial"\nseverity = "low"\n',
    )
    with pytest.raises(NotConfigured, match="duplicates"):
        RulesDetector(extra_lexicon_files=(path,))


def test_suppress_rules_switches_entries_off() -> None:
    text = "check out my channel, free followers"
    on = build_classifier(ROSTER, ClassifierOptions(enabled_detectors=("rules",)))
    off = build_classifier(
        ROSTER,
        ClassifierOptions(
            enabled_detectors=("rules",),
            suppress_rules=("spam.promotion", "spam.self_promo", "spam.follow*"),
        ),
    )
    assert Flag.SPAM in on.classify(Input(text=text)).flags
    assert off.classify(Input(text=text)).flags == frozenset()


def test_unknown_suppressed_rule_is_reported() -> None:
    classifier = build_classifier(ROSTER, ClassifierOptions(suppress_rules=("no.such.rule",)))
    assert (
        "rules",
        "suppress_rules: no lexicon entry matches 'no.such.rule'",
    ) in classifier.skipped


def test_school_name_placeholder_expands_to_roster_names(rules_only: Classifier) -> None:
    verdict = rules_only.classify(Input(text="someone should torch Oakfield"))
    assert verdict.severity is Severity.CRITICAL
    assert Tag.THREAT in verdict.tags


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("you are a ѕӏаg", "ѕӏаg"),  # Cyrillic look-alikes
        ("i will κill you", "κill you"),  # Greek kappa
        ("k\u200bi\u200bl\u200bl yourself", "k\u200bi\u200bl\u200bl yourself"),  # zero-width
        ("you are a no\u00adnce", "no\u00adnce"),  # soft hyphen
        ("you are a ｎｏｎｃｅ", "ｎｏｎｃｅ"),  # full-width
        ("go k  y  s", "k  y  s"),  # three letters, double spaces
        ("what a wank\ufeff", "wank"),  # the trailing BOM is not part of the span
    ],
)
def test_evasions_are_normalised_and_spans_are_original(
    rules_only: Classifier, text: str, fragment: str
) -> None:
    verdict = rules_only.classify(Input(text=text))
    assert verdict.flags, text
    start = text.index(fragment)
    assert any(r.span == (start, start + len(fragment)) for r in verdict.reasons)
    for reason in verdict.reasons:
        assert reason.text == text[reason.span[0] : reason.span[1]]


def test_normalise_folds_homoglyphs_and_drops_invisible_characters() -> None:
    norm = normalise("ѕӏ\u200bаg")
    assert norm.text == "slag"
    assert norm.offsets == (0, 1, 3, 4)


@pytest.mark.parametrize(
    "text",
    [
        "Hey guys please subscribe to my channel, I make music!",
        "check out my new mixtape",
        "Earn $500 a day from home! Visit http://easy-cash.example.com/join now",
        "http://shhort.com/a?r=Jt2ufxHxc",
        "giveaway! use my referral link",
    ],
)
def test_comment_spam_is_flagged(rules_only: Classifier, text: str) -> None:
    assert Flag.SPAM in rules_only.classify(Input(text=text)).flags


@pytest.mark.parametrize(
    "text",
    [
        "Subscribe to our newsletter for term dates and news",
        "Check out our website for term dates: https://www.oakfield.example.sch.uk/dates",
        "Click here to pay for the trip: https://www.parentpay.com",
        "Book your parents evening slot: https://oakfield.schoolcloud.co.uk",
        "Follow the link to our online safety guide https://www.nspcc.org.uk/online-safety",
    ],
)
def test_school_announcements_are_not_spam(rules_only: Classifier, text: str) -> None:
    assert Flag.SPAM not in rules_only.classify(Input(text=text)).flags


def test_the_schools_own_promotion_is_not_spam(rules_only: Classifier) -> None:
    text = "We have a new YouTube channel for our choir, please subscribe!"
    assert Flag.SPAM in rules_only.classify(Input(text=text)).flags
    own = Input(text=text, source_kind="own", author="oakfieldprimary")
    assert rules_only.classify(own).flags == frozenset()
    parent = Input(text=text, source_kind="own", author="jo.mills.7")
    assert Flag.SPAM in rules_only.classify(parent).flags


def test_a_link_is_the_schools_only_on_its_published_domain() -> None:
    """A school name inside a link is how phishing looks; only the published domains count."""
    roster = Roster(
        school_name="Oakfield Primary School",
        school_aliases=("Oakfield",),
        published_contacts=("01632 960123", "office@oakfieldprimary.co.uk"),
    )
    classifier = build_classifier(roster, ClassifierOptions(enabled_detectors=("rules",)))
    own_site = "Please subscribe to the choir channel: https://oakfieldprimary.co.uk/choir"
    assert classifier.classify(Input(text=own_site)).flags == frozenset()
    lookalike = "Please subscribe to the choir channel: https://oakfieldprimary-choir.example/sub"
    assert Flag.SPAM in classifier.classify(Input(text=lookalike)).flags
    phishing = "yr 7s get FREE robux, log in at robux-oakfield.example/claim"
    assert Flag.SPAM in classifier.classify(Input(text=phishing)).flags


def test_prefilter_skips_texts_without_trigger_words() -> None:
    detector = RulesDetector()
    assert detector.detect(Input(text="Lovely weather for the trip today")) == []
    assert detector.detect(Input(text="f*ggot"))  # a pattern run only through its prefilter


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("promo", '"yes"', "'promo'"),
        ("prefilter", '"*"', "'prefilter'"),
        ("max_tokens", "-1", "'max_tokens'"),
    ],
)
def test_new_entry_keys_are_validated(tmp_path: Path, key: str, value: str, message: str) -> None:
    path = _write(
        tmp_path,
        f'version = 1\n[[entry]]\nid = "x.six"\nphrases = ["a b"]\nflag = "spam"\n'
        f'cell = "content.commercial"\nseverity = "low"\n{key} = {value}\n',
    )
    with pytest.raises(NotConfigured, match=message):
        RulesDetector(extra_lexicon_files=(path,))
