"""Response templates: the public reply after a removal, and the letter to a parent.

The seed policies ask the school to tell the audience why a comment was removed, and to ask a
parent who posted inappropriately to take the post down, inviting them to discuss it and
pointing at the complaints procedure. Both are Jinja2 templates a school can edit:

- defaults ship in ``actions/templates/responses/``;
- a school overrides any of them with a file of the same name in its own directory (config
  ``[policy] templates_dir``), passed here as ``templates_dir``.

Templates (file names): ``public_reply.txt.j2``, ``parent_letter.txt.j2``,
``parent_letter.html.j2``, ``parent_letter_subject.txt.j2``. Every template gets the same
variables, and never the post's text (``ResponseContext`` has no field for it):

====================== ========================================================================
``school``             the school's name
``platform``           where the post is, as people name it ("Facebook", "X (Twitter)")
``posted_on``          the post's date, UK time ("Monday 5 October 2026")
``date``               the letter's date ("6 October 2026")
``contacts``           the school's published contacts (a list; may be empty)
``reason``             why a comment was removed, neutral and naming no one ("it was spam")
``parent_name``        "Mrs Smith", or "parent or carer"
``sender_name``        who signs the letter ("" when not given)
``sender_role``        their role ("Headteacher")
``complaints_procedure`` where the complaints procedure is published ("" when not given)
====================== ========================================================================

HTML templates (``*.html.j2``) are autoescaped; text templates are not, and their output has
control and format characters (NUL, bidi overrides, zero-width characters) removed. Templates run
in Jinja2's immutable sandbox with undefined variables an error, so a typo in a school's template
fails loudly (``ResponseError``) instead of sending a letter with a gap in it.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import jinja2.sandbox

from actions.report_rules import platform_name
from actions.states import ActionError
from connectors.base import require_utc

__all__ = [
    "DEFAULT_TEMPLATES",
    "MAX_PUBLIC_REPLY",
    "ResponseContext",
    "ResponseError",
    "plain_text",
    "removal_reason",
    "render_parent_letter",
    "render_parent_letter_html",
    "render_parent_letter_subject",
    "render_public_reply",
]

DEFAULT_TEMPLATES = Path(__file__).resolve().parent / "templates" / "responses"
PUBLIC_REPLY = "public_reply.txt.j2"
PARENT_LETTER = "parent_letter.txt.j2"
PARENT_LETTER_HTML = "parent_letter.html.j2"
PARENT_LETTER_SUBJECT = "parent_letter_subject.txt.j2"
MAX_PUBLIC_REPLY = 2000  # under Instagram's comment limit (2,200); Facebook allows 8,000
_MAX_SUBJECT = 200
_UK = ZoneInfo("Europe/London")
_STRIPPED = frozenset({"Cc", "Cf", "Cs", "Co"})

# Flag → a neutral reason, most specific first; safeguarding gets the generic one on purpose
# (a public reply must not draw attention to a child).
_REASONS: tuple[tuple[str, str], ...] = (
    ("personal_info", "it shared personal information"),
    ("abusive", "it was abusive or offensive"),
    ("defamatory", "it made claims about individuals that are not allowed on this page"),
    ("spam", "it was spam"),
)
DEFAULT_REASON = "it broke the rules for this page"


class ResponseError(ActionError):
    """A response template could not be found or rendered."""


@dataclass(frozen=True, kw_only=True)
class ResponseContext:
    """What a response may say about a case: never the post's text."""

    school: str
    platform: str  # the platform key ("facebook")
    posted_at: datetime  # when the post was made
    today: date  # the letter's date
    contacts: tuple[str, ...] = ()  # config's school.published_contacts
    flags: tuple[str, ...] = ()  # Flag values: pick the public reply's reason
    parent_name: str | None = None
    sender_name: str | None = None
    sender_role: str = "Headteacher"
    complaints_procedure: str | None = None  # a web address or "on the school website"


def removal_reason(flags: Iterable[str]) -> str:
    """A neutral reason for a removal that names no one and repeats nothing of the post."""
    found = set(flags)
    return next((reason for flag, reason in _REASONS if flag in found), DEFAULT_REASON)


def plain_text(text: str) -> str:
    """Text safe to post or send as plain text: control and format characters removed (line
    breaks kept), line ends normalised, trailing spaces and runs of blank lines dropped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    text = "".join(ch for ch in text if ch == "\n" or unicodedata.category(ch) not in _STRIPPED)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def render_public_reply(context: ResponseContext, *, templates_dir: Path | None = None) -> str:
    """The short public reply explaining a removal (plain text, at most ``MAX_PUBLIC_REPLY``)."""
    reply = _render_text(PUBLIC_REPLY, context, templates_dir)
    if not reply:
        raise ResponseError(f"{PUBLIC_REPLY} rendered an empty reply")
    if len(reply) > MAX_PUBLIC_REPLY:
        raise ResponseError(
            f"{PUBLIC_REPLY} is {len(reply)} characters; the most is {MAX_PUBLIC_REPLY}"
        )
    return reply


def render_parent_letter(context: ResponseContext, *, templates_dir: Path | None = None) -> str:
    """The letter asking a parent to take a post down (plain text)."""
    return _render_text(PARENT_LETTER, context, templates_dir) + "\n"


def render_parent_letter_html(
    context: ResponseContext, *, templates_dir: Path | None = None
) -> str:
    """The same letter as HTML (autoescaped)."""
    return _render(PARENT_LETTER_HTML, context, templates_dir)


def render_parent_letter_subject(
    context: ResponseContext, *, templates_dir: Path | None = None
) -> str:
    """One line for the letter's email subject."""
    line = " ".join(_render_text(PARENT_LETTER_SUBJECT, context, templates_dir).split())
    return line[:_MAX_SUBJECT]


def _render_text(name: str, context: ResponseContext, templates_dir: Path | None) -> str:
    return plain_text(_render(name, context, templates_dir))


def _render(name: str, context: ResponseContext, templates_dir: Path | None) -> str:
    environment = _environment(templates_dir.resolve() if templates_dir else None)
    try:
        return environment.get_template(name).render(_variables(context))
    except jinja2.TemplateError as err:
        where = templates_dir or DEFAULT_TEMPLATES
        raise ResponseError(f"{name} (from {where}): {type(err).__name__}: {err}") from err


@functools.cache
def _environment(templates_dir: Path | None) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(DEFAULT_TEMPLATES)]
    if templates_dir is not None:
        if not templates_dir.is_dir():
            raise ResponseError(f"templates_dir {templates_dir} is not a directory")
        loaders.insert(0, jinja2.FileSystemLoader(templates_dir))
    return jinja2.sandbox.ImmutableSandboxedEnvironment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=_is_html,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _is_html(name: str | None) -> bool:
    return bool(name) and str(name).endswith((".html.j2", ".html"))


def _variables(context: ResponseContext) -> dict[str, Any]:
    posted = require_utc(context.posted_at, "posted_at").astimezone(_UK)
    return {
        "school": plain_text(context.school),
        "platform": plain_text(platform_name(context.platform)),
        "posted_on": f"{posted:%A} {posted.day} {posted:%B %Y}",
        "date": f"{context.today.day} {context.today:%B %Y}",
        "contacts": [plain_text(c) for c in context.contacts if plain_text(c)],
        "reason": removal_reason(context.flags),
        "parent_name": plain_text(context.parent_name or "") or "parent or carer",
        "sender_name": plain_text(context.sender_name or ""),
        "sender_role": plain_text(context.sender_role),
        "complaints_procedure": plain_text(context.complaints_procedure or ""),
    }
