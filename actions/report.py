"""Report packs: what a person needs to report a post that Vigil cannot act on through an API.

When a platform cannot hide, delete or report through its API (Facebook, Instagram, X and
YouTube have no reporting API; nobody can hide a stranger's post on a news site), the actions
stage writes a pack instead, as ``.txt``, ``.json`` and ``.html``: where the post is, why it was
flagged, the platform's own web report route, the rules it likely breaks (named, so the report
can cite them), an under-age report route when the account seems to belong to a child, and the
external routes that may apply, each with the condition under which it does. The tables live in
``actions.report_rules``.

A pack never quotes the post: the case holds the text and evidence. For suspected sexual imagery
of a child the address is disarmed (hxxps, [.]) and the pack says not to open it, nor to open the
post to report it.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2

from actions.escalate import defang
from actions.evidence import safe_name, visible_text, write_atomic
from actions.report_rules import (
    ANONYMOUS_NOTE,
    DEFAULT_PLATFORM_ROUTE,
    DO_NOT_OPEN_ROUTE,
    EXTERNAL_ROUTES,
    HARM_TRIGGERS,
    MINIMUM_AGES,
    PLATFORM_REPORT_ROUTES,
    PLATFORM_STANDARDS,
    UNDER_AGE_ROUTES,
    ExternalRoute,
    Harm,
    Standard,
    harms,
    platform_name,
    platform_standards,
    routes_for,
    under_age_route,
)
from connectors.base import require_utc

__all__ = [
    "EXTERNAL_ROUTES",
    "HARM_TRIGGERS",
    "MINIMUM_AGES",
    "PLATFORM_REPORT_ROUTES",
    "PLATFORM_STANDARDS",
    "UNDER_AGE_ROUTES",
    "ExternalRoute",
    "Harm",
    "ReportPackSubject",
    "Standard",
    "external_routes",
    "harms",
    "platform_name",
    "platform_standards",
    "render_report_pack",
    "render_report_pack_html",
    "report_pack_data",
    "under_age_route",
    "write_report_pack",
]

TEMPLATES = Path(__file__).resolve().parent / "templates"
_CHILD_IMAGERY = "child_sexual_imagery"


@dataclass(frozen=True, kw_only=True)
class ReportPackSubject:
    """What a report pack says about one post; never its text."""

    key: str  # stable file name stem, e.g. "case-12-report"
    school: str
    platform: str
    external_id: str
    permalink: str | None
    author_handle: str | None
    posted_at: datetime
    flags: tuple[str, ...]
    cells: tuple[str, ...]
    severity: str
    routes: tuple[str, ...]
    wanted: str  # what Vigil would have done: "report", "hide", "delete"
    why_not: str  # the connector's explanation
    child_imagery: bool
    tags: tuple[str, ...] = ()  # Tag values: under_13, hate, threat, ...

    @property
    def all_tags(self) -> tuple[str, ...]:
        """The tags, with ``child_sexual_imagery`` added when ``child_imagery`` is set."""
        extra = (_CHILD_IMAGERY,) if self.child_imagery and _CHILD_IMAGERY not in self.tags else ()
        return (*self.tags, *extra)

    @property
    def is_child_imagery(self) -> bool:
        """Suspected sexual imagery of a child, by the flag or by the tag."""
        return _CHILD_IMAGERY in self.all_tags


def external_routes(subject: ReportPackSubject) -> tuple[ExternalRoute, ...]:
    """Every external route that may apply, most urgent first (``subject.routes`` included)."""
    return routes_for(
        flags=subject.flags,
        cells=subject.cells,
        tags=subject.all_tags,
        severity=subject.severity,
        routes=subject.routes,
    )


def report_pack_data(subject: ReportPackSubject) -> dict[str, Any]:
    """Everything the pack says, as JSON-ready data (the subject's fields plus the advice)."""
    found = harms(subject.flags, subject.cells, subject.all_tags)
    under_age = Harm.UNDER_AGE in found
    return {
        **asdict(subject),
        "posted_at": require_utc(subject.posted_at).isoformat(),
        "permalink": _address(subject) if subject.permalink else None,
        "do_not_view": subject.is_child_imagery,
        "platform_name": platform_name(subject.platform),
        "platform_route": _platform_route(subject),
        "harms": [h.value for h in found],
        "standards": [asdict(s) for s in platform_standards(subject.platform, found)],
        "minimum_age": MINIMUM_AGES.get(subject.platform),
        "under_age_route": under_age_route(subject.platform) if under_age else None,
        "external_routes": [asdict(r) for r in external_routes(subject)],
    }


def _platform_route(subject: ReportPackSubject) -> str:
    if subject.is_child_imagery:
        return DO_NOT_OPEN_ROUTE
    return PLATFORM_REPORT_ROUTES.get(subject.platform, DEFAULT_PLATFORM_ROUTE)


def _address(subject: ReportPackSubject) -> str:
    if not subject.permalink:
        return "(no web address)"
    link = defang(subject.permalink) if subject.is_child_imagery else subject.permalink
    return _one_line(link)


def _one_line(value: str) -> str:
    return visible_text(value, keep_newlines=False)


def _under_age_line(subject: ReportPackSubject) -> str:
    age = MINIMUM_AGES.get(subject.platform)
    where = platform_name(subject.platform)
    minimum = f"{where}'s minimum age is {age}" if age else "check the platform's minimum age"
    return f"The account appears to belong to a child under 13 ({minimum}). Report the account:"


def render_report_pack(subject: ReportPackSubject) -> str:
    """The pack as plain text for a person to follow."""
    data = report_pack_data(subject)
    lines = [
        f"Vigil report pack: {_one_line(subject.school)}",
        "",
        f"Vigil wanted to {_one_line(subject.wanted)} this post but cannot through the "
        "platform's API:",
        f"  {_one_line(subject.why_not)}",
        "",
        *(f"{label}: {value}" for label, value in _facts(subject)),
        "",
        "Report it on the platform:",
        f"  {data['platform_route']}",
    ]
    if not subject.is_child_imagery:
        lines.append(f"  {ANONYMOUS_NOTE}")
    lines += ["", "Rules it likely breaks (name them in the report):"]
    lines += [f"  - {s['document']}: {s['policy']}" for s in data["standards"]] or [
        "  - none identified: choose the closest reason in the platform's report menu"
    ]
    if data["under_age_route"]:
        lines += ["", _under_age_line(subject), f"  {data['under_age_route']}"]
    if data["external_routes"]:
        lines += ["", "Other routes, and when each applies:"]
        for route in data["external_routes"]:
            lines += [
                f"  - {route['name']}: when: {route['condition']}",
                f"    {route['guidance']}",
            ]
    if subject.is_child_imagery:
        lines += ["", "Do not open, view, copy or share the image. Report the address only."]
    return "\n".join(lines) + "\n"


def _facts(subject: ReportPackSubject) -> list[tuple[str, str]]:
    return [
        ("Platform", platform_name(subject.platform)),
        ("Address", _address(subject)),
        ("Post id", _one_line(subject.external_id)),
        ("Author", _one_line(subject.author_handle or "(unknown)")),
        ("Posted", require_utc(subject.posted_at).isoformat(timespec="minutes")),
        ("Flags", _one_line(", ".join(subject.flags) or "none")),
        ("Categories", _one_line(", ".join(subject.cells) or "none")),
        ("Severity", _one_line(subject.severity)),
    ]


def render_report_pack_html(subject: ReportPackSubject) -> str:
    """The pack as an HTML page (Jinja2, autoescaped; the post's address is a link only when
    it is plain http(s) and not suspected child imagery)."""
    data = report_pack_data(subject)
    link = None
    if not subject.is_child_imagery and re.match(r"https?://", data["permalink"] or "", re.I):
        link = data["permalink"]
    return _html_template().render(
        subject=subject,
        data=data,
        facts=_facts(subject),
        link=link,
        anonymous=ANONYMOUS_NOTE,
        under_age_line=_under_age_line(subject),
        school=_one_line(subject.school),
        wanted=_one_line(subject.wanted),
        why_not=_one_line(subject.why_not),
    )


@functools.cache
def _html_template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report_pack.html.j2")


def write_report_pack(directory: Path, subject: ReportPackSubject) -> Path:
    """Write ``<key>.txt``, ``<key>.json`` and ``<key>.html`` atomically (a key rewrites its own
    files). Returns the text file's path."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = safe_name(subject.key)
    text_path = directory / f"{stem}.txt"
    write_atomic(text_path, render_report_pack(subject).encode("utf-8"))
    data = json.dumps(report_pack_data(subject), indent=2, sort_keys=True, ensure_ascii=True)
    write_atomic(directory / f"{stem}.json", data.encode("ascii"))
    write_atomic(directory / f"{stem}.html", render_report_pack_html(subject).encode("utf-8"))
    return text_path
