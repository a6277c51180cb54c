"""Report packs: verdict → the platform's rules, under-age routes and external routes (tables),
and the pack itself in text, JSON and HTML, which never quotes the post."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from actions.report import (
    EXTERNAL_ROUTES,
    MINIMUM_AGES,
    PLATFORM_STANDARDS,
    Harm,
    ReportPackSubject,
    Standard,
    external_routes,
    harms,
    platform_standards,
    render_report_pack,
    render_report_pack_html,
    report_pack_data,
    write_report_pack,
)
from classifiers.taxonomy import ALL_CELLS, Flag, Tag

POSTED = datetime(2026, 10, 5, 14, 3, tzinfo=UTC)
LINK = "https://www.facebook.com/oakfield/posts/1?comment_id=2"
FB = "Facebook Community Standards"
IG = "Instagram Community Guidelines (Meta Community Standards)"
YT = "YouTube Community Guidelines"
X = "The X Rules"


def subject(**changes: Any) -> ReportPackSubject:
    base = ReportPackSubject(
        key="case-7-report",
        school="Oakfield Primary School",
        platform="facebook",
        external_id="122_987",
        permalink=LINK,
        author_handle="someone",
        posted_at=POSTED,
        flags=(),
        cells=(),
        severity="medium",
        routes=(),
        wanted="report",
        why_not="Facebook has no reporting API.",
        child_imagery=False,
    )
    return dataclasses.replace(base, **changes)


# --- flags, cells and tags → harms ----------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "cells", "tags", "expected"),
    [
        ((), (), (), ()),
        (("abusive",), (), (), (Harm.BULLYING_HARASSMENT,)),
        ((), ("conduct.aggressive",), (), (Harm.BULLYING_HARASSMENT,)),
        ((), ("contact.aggressive",), (), (Harm.BULLYING_HARASSMENT,)),
        (("abusive",), (), ("hate",), (Harm.BULLYING_HARASSMENT, Harm.HATE)),
        ((), (), ("threat",), (Harm.VIOLENCE,)),
        ((), ("content.aggressive",), (), (Harm.VIOLENCE,)),
        ((), ("contact.sexual",), (), (Harm.CHILD_SEXUAL_EXPLOITATION,)),
        ((), ("conduct.sexual",), (), (Harm.CHILD_SEXUAL_EXPLOITATION,)),
        ((), (), ("child_sexual_imagery",), (Harm.CHILD_SEXUAL_EXPLOITATION,)),
        ((), ("content.sexual",), (), (Harm.SEXUAL_CONTENT,)),
        ((), (), ("self_harm",), (Harm.SELF_HARM,)),
        ((), (), ("radicalisation",), (Harm.TERRORISM,)),
        (("personal_info",), (), (), (Harm.PRIVACY,)),
        ((), ("contact.commercial",), (), (Harm.PRIVACY,)),
        (("spam",), ("content.commercial",), (), (Harm.SPAM,)),
        ((), ("conduct.commercial",), (), (Harm.FRAUD,)),
        (("defamatory",), (), (), (Harm.DEFAMATION,)),
        ((), (), ("under_13",), (Harm.UNDER_AGE,)),
        # values cells (bias, misinformation, persuasion) and fair criticism imply no rule
        ((), ("content.values", "conduct.values", "contact.values"), ("fair_criticism",), ()),
        (("safeguarding",), (), ("child_at_risk", "allegation_against_staff"), ()),
    ],
)
def test_harms_table(
    flags: tuple[str, ...],
    cells: tuple[str, ...],
    tags: tuple[str, ...],
    expected: tuple[Harm, ...],
) -> None:
    assert harms(flags, cells, tags) == expected


def test_every_trigger_names_a_real_flag_cell_or_tag() -> None:
    from actions.report import HARM_TRIGGERS

    known = {f"flag:{f.value}" for f in Flag} | {f"tag:{t.value}" for t in Tag}
    known |= {f"cell:{c}" for c in ALL_CELLS}
    assert set(HARM_TRIGGERS) <= known


# --- harms → the platform's own rules ---------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "harm", "document", "policy"),
    [
        ("facebook", Harm.BULLYING_HARASSMENT, FB, "Bullying and Harassment"),
        ("facebook", Harm.HATE, FB, "Hateful Conduct"),
        (
            "facebook",
            Harm.CHILD_SEXUAL_EXPLOITATION,
            FB,
            "Child Sexual Exploitation, Abuse and Nudity",
        ),
        ("facebook", Harm.SELF_HARM, FB, "Suicide, Self-Injury and Eating Disorders"),
        ("facebook", Harm.PRIVACY, FB, "Privacy Violations"),
        ("facebook", Harm.SPAM, FB, "Spam"),
        ("instagram", Harm.BULLYING_HARASSMENT, IG, "Bullying and Harassment"),
        ("x", Harm.BULLYING_HARASSMENT, X, "Abuse and harassment"),
        ("x", Harm.HATE, X, "Hateful conduct"),
        ("x", Harm.CHILD_SEXUAL_EXPLOITATION, X, "Child sexual exploitation"),
        ("x", Harm.PRIVACY, X, "Private information and media"),
        ("youtube", Harm.BULLYING_HARASSMENT, YT, "Harassment and cyberbullying"),
        ("youtube", Harm.HATE, YT, "Hate speech"),
        ("youtube", Harm.CHILD_SEXUAL_EXPLOITATION, YT, "Child safety"),
        ("reddit", Harm.PRIVACY, "Reddit Rules", "Rule 3: respect the privacy of others"),
        ("rss", Harm.SPAM, "The site's own rules or terms", "its rule on spam"),
        ("mastodon", Harm.HATE, "The site's own rules or terms", "its rule on hateful content"),
    ],
)
def test_platform_standards_table(platform: str, harm: Harm, document: str, policy: str) -> None:
    assert platform_standards(platform, [harm]) == (Standard(document=document, policy=policy),)


@pytest.mark.parametrize("platform", ["facebook", "instagram", "x", "youtube"])
def test_the_big_platforms_name_a_rule_for_every_harm(platform: str) -> None:
    _, table = PLATFORM_STANDARDS[platform]
    rules = {h for h in Harm if h not in (Harm.DEFAMATION, Harm.UNDER_AGE)}
    assert rules <= set(table)


def test_defamation_is_a_legal_route_and_under_age_is_not_a_rule() -> None:
    (standard,) = platform_standards("x", [Harm.DEFAMATION, Harm.UNDER_AGE])
    assert "Defamation" in standard.policy and "legal" in standard.policy


def test_standards_are_listed_once() -> None:
    found = platform_standards("youtube", [Harm.SPAM, Harm.FRAUD])  # both one YouTube policy
    assert [s.policy for s in found] == ["Spam, deceptive practices and scams"]


# --- external routes, with their conditions ---------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, []),
        ({"flags": ("abusive",)}, ["report_harmful_content"]),
        ({"flags": ("abusive",), "tags": ("hate",)}, ["police", "report_harmful_content"]),
        ({"tags": ("threat",)}, ["emergency_999", "police", "report_harmful_content"]),
        ({"tags": ("child_sexual_imagery",)}, ["iwf_report_remove", "ceop"]),
        ({"child_imagery": True}, ["iwf_report_remove", "ceop"]),
        ({"cells": ("contact.sexual",)}, ["ceop"]),
        ({"tags": ("allegation_against_staff",)}, ["lado"]),
        ({"tags": ("radicalisation",)}, ["emergency_999", "prevent", "act"]),
        ({"tags": ("self_harm",)}, ["emergency_999", "report_harmful_content"]),
        ({"tags": ("child_at_risk",)}, ["emergency_999"]),
        ({"severity": "critical"}, ["emergency_999"]),
        ({"cells": ("conduct.commercial",)}, ["report_fraud"]),
        ({"flags": ("defamatory",)}, ["posh"]),
        ({"flags": ("spam",), "cells": ("content.commercial",)}, []),
        ({"flags": ("personal_info",)}, []),
        # routes the policy chose are always included; aliases are understood
        ({"routes": ("posh", "action_fraud")}, ["report_fraud", "posh"]),
        ({"routes": ("lado", "platform", "unknown")}, ["lado"]),
    ],
)
def test_external_routes_table(changes: dict[str, Any], expected: list[str]) -> None:
    assert [r.key for r in external_routes(subject(**changes))] == expected


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("emergency_999", ["immediate danger"]),
        ("iwf_report_remove", ["web address only", "never open", "https://report.iwf.org.uk/"]),
        ("ceop", ["Grooming", "DSL decides", "ceop.police.uk"]),
        ("report_harmful_content", ["after reporting it", "48 hours", "platform's reply"]),
        ("posh", ["member of staff", "impersonating"]),
        ("report_fraud", ["scam", "0300 123 2040", "Action Fraud"]),
        ("act", ["terrorism", "https://www.gov.uk/ACT", "0800 789 321"]),
        ("lado", ["member of staff has harmed a child", "Local Authority Designated"]),
        ("prevent", ["drawn into terrorism", "Prevent duty"]),
        ("police", ["suspected crime", "101"]),
    ],
)
def test_every_route_has_its_condition_and_guidance(key: str, words: list[str]) -> None:
    route = EXTERNAL_ROUTES[key]
    text = f"{route.condition} {route.guidance}"
    assert route.condition and route.guidance
    for word in words:
        assert word in text


# --- under-age accounts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "age", "route"),
    [
        ("facebook", 13, "https://www.facebook.com/help/contact/209046679279097"),
        ("instagram", 13, "Report a child under 13 on Instagram"),
        ("x", 13, "under 13"),
        ("youtube", 13, "Report user"),
        ("tiktok", 13, "under-age"),
        ("whatsapp", 16, "Report"),
    ],
)
def test_under_age_accounts_get_the_platforms_route(platform: str, age: int, route: str) -> None:
    assert MINIMUM_AGES[platform] == age
    pack = render_report_pack(subject(platform=platform, tags=("under_13",)))
    assert f"minimum age is {age}" in pack and route in pack
    assert "reportharmfulcontent.com/advice/other/underage-accounts" in pack
    data = report_pack_data(subject(platform=platform, tags=("under_13",)))
    assert data["minimum_age"] == age and route in data["under_age_route"]


def test_no_under_age_section_without_the_tag() -> None:
    assert "minimum age" not in render_report_pack(subject(flags=("abusive",)))
    assert report_pack_data(subject())["under_age_route"] is None


# --- the pack ---------------------------------------------------------------------------------


def test_the_pack_cites_the_rules_and_routes() -> None:
    pack = render_report_pack(subject(flags=("abusive",), tags=("hate",)))
    assert "Facebook Community Standards: Bullying and Harassment" in pack
    assert "Facebook Community Standards: Hateful Conduct" in pack
    assert "facebook.com/help/reportlinks" in pack and LINK in pack
    assert "Report Harmful Content: when: Only after reporting it to the platform" in pack
    assert "48 hours" in pack and "school account" in pack


def test_no_rule_found_says_so() -> None:
    assert "none identified" in render_report_pack(subject())


def test_a_pack_has_no_field_for_the_post_text() -> None:
    names = {f.name for f in dataclasses.fields(ReportPackSubject)}
    assert not names & {"text", "message", "body", "quote"}


HOSTILE = "<script>alert(1)</script>\u202e\x00\nInjected: line"


def test_hostile_fields_are_shown_not_obeyed() -> None:
    s = subject(
        author_handle=HOSTILE, external_id=HOSTILE, why_not=HOSTILE, school=HOSTILE, flags=("spam",)
    )
    text = render_report_pack(s)
    assert "\u202e" not in text and "\x00" not in text and "\\u202e" in text
    assert "\nInjected" not in text  # one field, one line
    html = render_report_pack_html(s)
    assert "<script>" not in html and "&lt;script&gt;" in html and "\u202e" not in html


@pytest.mark.parametrize(
    "permalink", ["javascript:alert(1)", "data:text/html,<b>x</b>", "//evil.example/x"]
)
def test_only_plain_http_addresses_become_links(permalink: str) -> None:
    html = render_report_pack_html(subject(permalink=permalink))
    assert "<a " not in html


def test_a_plain_http_address_is_a_safe_link() -> None:
    html = render_report_pack_html(subject(permalink='https://a.example/?q="x"&y=<1>'))
    assert '<a href="https://a.example/?q=&#34;x&#34;&amp;y=&lt;1&gt;"' in html


def test_child_imagery_is_defanged_everywhere_and_never_to_be_opened() -> None:
    s = subject(child_imagery=True, flags=("safeguarding",), severity="critical")
    defanged = "hxxps://www[.]facebook[.]com/oakfield/posts/1?comment_id=2"
    text, html, data = render_report_pack(s), render_report_pack_html(s), report_pack_data(s)
    for rendered in (text, html, json.dumps(data)):
        assert defanged in rendered and LINK not in rendered
    assert "Do not open the post to report it" in text and "Do not open, view, copy" in text
    assert "<a " not in html and "Do not open, view, copy or share" in html
    assert data["do_not_view"] is True
    assert "school account" not in text  # no advice to go and report it on the platform


def test_rss_keeps_the_sites_own_route() -> None:
    pack = render_report_pack(subject(platform="rss", permalink="https://forum.example/t/1"))
    assert "report or complaints route" in pack and "https://forum.example/t/1" in pack


def test_write_report_pack_writes_text_json_and_html(tmp_path: Path) -> None:
    s = subject(flags=("abusive",), tags=("under_13",), routes=("posh",))
    path = write_report_pack(tmp_path / "reports", s)
    assert path == tmp_path / "reports" / "case-7-report.txt"
    assert path.read_text(encoding="utf-8") == render_report_pack(s)
    html = (tmp_path / "reports" / "case-7-report.html").read_text(encoding="utf-8")
    assert html == render_report_pack_html(s) and html.startswith("<!DOCTYPE html>")
    data = json.loads((tmp_path / "reports" / "case-7-report.json").read_text(encoding="ascii"))
    assert data["posted_at"] == "2026-10-05T14:03:00+00:00" and data["platform"] == "facebook"
    assert {"harms", "standards", "external_routes", "under_age_route", "tags"} <= set(data)
    assert [r["key"] for r in data["external_routes"]] == ["posh", "report_harmful_content"]
    assert all(r["condition"] for r in data["external_routes"])
    # the same key rewrites its own files
    write_report_pack(tmp_path / "reports", dataclasses.replace(s, severity="high"))
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == [
        "case-7-report.html",
        "case-7-report.json",
        "case-7-report.txt",
    ]


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        render_report_pack(subject(posted_at=datetime(2026, 10, 5, 14, 3)))
