"""Response templates: the public reply after a removal and the letter to a parent, from the
shipped defaults or a school's own templates; never the post's text."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from actions.responses import (
    DEFAULT_REASON,
    DEFAULT_TEMPLATES,
    MAX_PUBLIC_REPLY,
    ResponseContext,
    ResponseError,
    plain_text,
    removal_reason,
    render_parent_letter,
    render_parent_letter_html,
    render_parent_letter_subject,
    render_public_reply,
)

CONTACTS = ("01632 960123", "office@oakfield.example.sch.uk")
COMPLAINTS = "https://oakfield.example.sch.uk/complaints"


def context(**changes: Any) -> ResponseContext:
    base = ResponseContext(
        school="Oakfield Primary School",
        platform="facebook",
        # 23:30 UTC on Sunday 4 October is 00:30 on Monday 5 October in London (BST)
        posted_at=datetime(2026, 10, 4, 23, 30, tzinfo=UTC),
        today=date(2026, 10, 6),
        contacts=CONTACTS,
        flags=("abusive",),
        parent_name="Mr Jones",
        sender_name="Mrs A Shah",
        complaints_procedure=COMPLAINTS,
    )
    return dataclasses.replace(base, **changes)


def test_defaults_ship_with_the_package() -> None:
    names = {p.name for p in DEFAULT_TEMPLATES.iterdir()}
    assert {
        "public_reply.txt.j2",
        "parent_letter.txt.j2",
        "parent_letter.html.j2",
        "parent_letter_subject.txt.j2",
    } <= names


def test_a_context_has_no_field_for_the_post_text() -> None:
    names = {f.name for f in dataclasses.fields(ResponseContext)}
    assert not names & {"text", "message", "body", "quote", "author_handle"}


# --- the public reply ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        ((), DEFAULT_REASON),
        (("abusive",), "it was abusive or offensive"),
        (("spam",), "it was spam"),
        (("personal_info",), "it shared personal information"),
        (("defamatory",), "it made claims about individuals that are not allowed on this page"),
        # safeguarding never says more than the generic reason in public
        (("safeguarding",), DEFAULT_REASON),
        (("safeguarding", "abusive"), "it was abusive or offensive"),
        (("abusive", "personal_info"), "it shared personal information"),
    ],
)
def test_removal_reason_table(flags: tuple[str, ...], reason: str) -> None:
    assert removal_reason(flags) == reason
    assert reason in render_public_reply(context(flags=flags))


def test_public_reply_is_short_neutral_and_points_at_the_school() -> None:
    reply = render_public_reply(context())
    assert reply.startswith("We have removed a comment")
    assert "Oakfield Primary School" in reply and "01632 960123 or office@" in reply
    assert "Mr Jones" not in reply and "Shah" not in reply  # names no one
    assert len(reply) <= MAX_PUBLIC_REPLY and reply == reply.strip()


def test_public_reply_without_contacts() -> None:
    reply = render_public_reply(context(contacts=()))
    assert "contact Oakfield Primary School directly." in reply


# --- the letter to a parent --------------------------------------------------------------------


def test_parent_letter_asks_for_removal_invites_discussion_and_names_the_complaints_route() -> None:
    letter = render_parent_letter(context())
    assert letter.startswith("6 October 2026\n\nDear Mr Jones,")
    assert "made on Facebook on Monday 5 October 2026" in letter  # UK date of the post
    assert "remove it" in letter and "talk with you" in letter
    assert f"complaints procedure ({COMPLAINTS})" in letter
    assert "01632 960123 or office@oakfield.example.sch.uk" in letter
    assert letter.rstrip().endswith("Mrs A Shah\nHeadteacher\nOakfield Primary School")


def test_parent_letter_defaults_when_optional_details_are_missing() -> None:
    letter = render_parent_letter(
        context(parent_name=None, sender_name=None, complaints_procedure=None, contacts=())
    )
    assert "Dear parent or carer," in letter and "complaints procedure." in letter
    assert letter.rstrip().endswith("Yours sincerely,\n\nHeadteacher\nOakfield Primary School")


@pytest.mark.parametrize(
    ("platform", "name"),
    [("x", "X (Twitter)"), ("instagram", "Instagram"), ("rss", "a website"), ("odd", "odd")],
)
def test_the_letter_names_the_platform_as_people_do(platform: str, name: str) -> None:
    assert f"on {name}" in render_parent_letter_subject(context(platform=platform))


def test_html_letter_is_autoescaped_and_text_letter_has_no_control_characters() -> None:
    hostile = context(school="Oak <script>alert(1)</script>\u202e\x00", parent_name='"Bob" & co')
    html = render_parent_letter_html(hostile)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&#34;Bob&#34; &amp; co" in html and "\u202e" not in html and "\x00" not in html
    text = render_parent_letter(hostile)
    assert "\u202e" not in text and "\x00" not in text and 'Dear "Bob" & co,' in text


def test_subject_line_is_one_bounded_line() -> None:
    line = render_parent_letter_subject(context(school="Oak\nfield " + "x" * 300))
    assert "\n" not in line and len(line) <= 200 and line.startswith("A post about Oak field")


def test_a_naive_post_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        render_parent_letter(context(posted_at=datetime(2026, 10, 4, 23, 30)))


# --- a school's own templates ------------------------------------------------------------------


def test_a_school_template_overrides_only_its_own_file(tmp_path: Path) -> None:
    (tmp_path / "public_reply.txt.j2").write_text(
        "Comment removed ({{ reason }}). Questions: {{ contacts | first }}.\n", encoding="utf-8"
    )
    assert render_public_reply(context(), templates_dir=tmp_path) == (
        "Comment removed (it was abusive or offensive). Questions: 01632 960123."
    )
    # the letter still comes from the defaults
    assert render_parent_letter(context(), templates_dir=tmp_path) == render_parent_letter(
        context()
    )


def test_a_school_html_template_is_autoescaped_too(tmp_path: Path) -> None:
    (tmp_path / "parent_letter.html.j2").write_text("<p>{{ school }}</p>", encoding="utf-8")
    html = render_parent_letter_html(context(school="<b>Oak</b>"), templates_dir=tmp_path)
    assert html == "<p>&lt;b&gt;Oak&lt;/b&gt;</p>"


def test_school_template_text_is_stripped_of_control_characters(tmp_path: Path) -> None:
    (tmp_path / "public_reply.txt.j2").write_text(
        "Removed\u202e\u200b.\r\n\n\n\nThanks\x07", "utf-8"
    )
    assert render_public_reply(context(), templates_dir=tmp_path) == "Removed.\n\nThanks"


@pytest.mark.parametrize(
    ("template", "match"),
    [
        ("Dear {{ parnet_name }}", "UndefinedError"),  # a typo fails loudly
        ("{% if %}", "TemplateSyntaxError"),
        ("{{ ''.__class__.__mro__ }}", "Error"),  # the sandbox refuses internals
        ("{{ contacts.append('x') }}", "SecurityError"),  # and changes to the context
    ],
)
def test_a_broken_school_template_is_a_response_error(
    tmp_path: Path, template: str, match: str
) -> None:
    (tmp_path / "parent_letter.txt.j2").write_text(template, encoding="utf-8")
    with pytest.raises(ResponseError, match=match):
        render_parent_letter(context(), templates_dir=tmp_path)


@pytest.mark.parametrize(("template", "match"), [("   \n", "empty"), ("x" * 2001, "2001")])
def test_a_public_reply_must_fit_a_comment(tmp_path: Path, template: str, match: str) -> None:
    (tmp_path / "public_reply.txt.j2").write_text(template, encoding="utf-8")
    with pytest.raises(ResponseError, match=match):
        render_public_reply(context(), templates_dir=tmp_path)


def test_a_missing_templates_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ResponseError, match="not a directory"):
        render_public_reply(context(), templates_dir=tmp_path / "nope")


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("a\r\nb\rc", "a\nb\nc"),
        ("a\tb", "a b"),
        ("\x00a\x1bb\x7fc\u0085", "abc"),
        ("a\u202eb\u200bc\u2066d", "abcd"),
        ("  a  \n\n\n\n b ", "a\n\n b"),
    ],
)
def test_plain_text_table(raw: str, clean: str) -> None:
    assert plain_text(raw) == clean
