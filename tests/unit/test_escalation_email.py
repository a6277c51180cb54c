"""The DSL email: excerpt modes, what Vigil did, the acknowledgement link, the deputies' re-send."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser

import pytest

from actions.escalate import EscalationSubject, render_escalation

TEXT = "how old are you? this is our little secret, add me on snap"
SPAN = (TEXT.index("our little secret"), TEXT.index("our little secret") + len("our little secret"))
BASE = EscalationSubject(
    escalation_key="esc-7",
    school="Oakfield Primary School",
    platform="facebook",
    permalink="https://www.facebook.com/1?comment_id=2",
    author_handle="stranger",
    posted_at=datetime(2026, 11, 2, 21, 0, tzinfo=UTC),
    text=TEXT,
    flags=("safeguarding",),
    cells=("contact.sexual",),
    severity="high",
    reasons=("rules: grooming",),
    routes=("ceop",),
    child_imagery=False,
    case_url="https://vigil.school.example/cases/3",
)


def bodies(subject: EscalationSubject) -> tuple[str, str, str]:
    message = render_escalation(
        subject,
        sender="vigil@school.example",
        recipients=["dsl@school.example"],
        message_domain="school.example",
    )
    plain = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    return str(message["Subject"]), plain, html


@pytest.mark.parametrize(
    "mode, shows, hides",
    [
        ("full", "our little secret", None),
        ("redacted", "how old are you? this is ███ ██████ ██████", "our little secret"),
        ("none", "not quoted in email", "little secret"),
    ],
)
def test_the_excerpt_is_as_the_school_configured(mode: str, shows: str, hides: str | None) -> None:
    _, plain, html = bodies(replace(BASE, excerpt=mode, redact_spans=(SPAN,)))
    assert shows in plain
    if hides:
        assert hides not in plain and hides not in html


def test_the_subject_names_severity_and_category_but_never_the_post() -> None:
    subject, _, _ = bodies(BASE)
    assert subject == "[Vigil] High: safeguarding on facebook (esc-7)"
    assert "secret" not in subject and "snap" not in subject


def test_the_email_says_what_vigil_did_and_how_to_acknowledge() -> None:
    subject = replace(
        BASE,
        actions_taken=("hide: will be hidden once the evidence is captured",),
        ack_url="https://vigil.school.example/ack/abc.def",
    )
    _, plain, html = bodies(subject)
    assert "What Vigil has done:\n- hide: will be hidden once the evidence is captured" in plain
    assert "https://vigil.school.example/ack/abc.def" in plain
    assert 'href="https://vigil.school.example/ack/abc.def"' in html


def test_a_resend_to_deputies_says_nobody_acknowledged_it() -> None:
    note = "Sent to the DSL at 21:05 on 2 November and not acknowledged since."
    subject_line, plain, _ = bodies(replace(BASE, resent_note=note))
    assert subject_line.startswith("[Vigil] not acknowledged, High:")
    assert note in plain


def test_hostile_text_in_every_field_is_escaped_in_html() -> None:
    hostile = '<script>alert(1)</script>"><img src=x onerror=alert(2)>{{7*7}}\u202e'
    subject = replace(
        BASE, text=hostile, author_handle=hostile, actions_taken=(hostile,), reasons=(hostile,)
    )
    _, _, html = bodies(subject)
    assert "<script>" not in html and "<img" not in html and "&lt;script&gt;" in html


HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "{{7*7}} {% raw %} ${7*7}",
    "<style>body{background:url(http://127.0.0.1:1/x)}</style>",
    '<link rel="stylesheet" href="http://127.0.0.1:1/x.css">',
    '<a href="javascript:alert(3)">click</a>',
    "\u202eevil\u202c \u200b zero\u200dwidth",
]


class Markup(HTMLParser):
    """Collects every tag and attribute the HTML part really contains."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes += attrs


SAFE_TAGS = {
    "html",
    "body",
    "p",
    "strong",
    "table",
    "tr",
    "th",
    "td",
    "h3",
    "ul",
    "li",
    "pre",
    "a",
    "br",
}


@pytest.mark.parametrize("text", [*HOSTILE, "A" * 1_000_000])
def test_hostile_or_huge_posts_cannot_make_the_email_run_or_fetch_anything(text: str) -> None:
    _, plain, html = bodies(replace(BASE, text=text, author_handle=text[:200]))
    markup = Markup()
    markup.feed(html)
    assert markup.tags <= SAFE_TAGS  # no script, img, style, link, iframe: nothing runs or loads
    for name, value in markup.attributes:
        assert not name.startswith("on")
        if name == "href":
            assert value is not None and value.startswith(("https://", "http://"))
    assert len(plain) < 20_000 and len(html) < 40_000  # a 1 MB post is truncated, not mailed
