"""Report packs: what a person needs to report a post that Vigil cannot act on through an API.

When a platform cannot hide, delete or report through its API (Facebook, Instagram, X and
YouTube have no reporting API; nobody can hide a stranger's post on a news site), the actions
stage writes a pack instead: where the post is, why it was flagged, the platform's own web
report route and the external routes that apply (CEOP, IWF, POSH, Report Harmful Content,
police, LADO, Prevent). A pack never quotes the post: the case holds the text and evidence.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from types import MappingProxyType

from actions.escalate import ROUTE_GUIDANCE, defang
from actions.evidence import safe_name, visible_text, write_atomic
from connectors.base import require_utc

__all__ = ["PLATFORM_REPORT_ROUTES", "ReportPackSubject", "render_report_pack", "write_report_pack"]

_FB = "Facebook has no reporting API. On the comment choose \u22ef then 'Report comment'"
_IG = "Instagram has no reporting API. In the app choose \u22ef then 'Report'"
_YT = "YouTube has no reporting API for comments. Choose \u22ef then 'Report' on the comment."
_RSS = "This was found on a website or forum. Use that site's own report or complaints route"
PLATFORM_REPORT_ROUTES: Mapping[str, str] = MappingProxyType(
    {
        "facebook": f"{_FB} (Page moderation tools), or https://www.facebook.com/help/reportlinks",
        "instagram": f"{_IG}, or https://help.instagram.com/",
        "x": "X has no reporting API. Choose \u22ef then 'Report post', or use https://help.x.com/forms",
        "youtube": _YT,
        "rss": f"{_RSS}, or write to its editor or moderators.",
        "bluesky": "In the Bluesky app (\u22ef then 'Report post') unless it was reported by API.",
        "mastodon": "Report on the instance (\u22ef then 'Report') if the API report was not made.",
        "reddit": "Report on Reddit (\u22ef then 'Report') or https://support.reddithelp.com/",
        "replay": "Demo data: there is no real platform to report to.",
    }
)
DEFAULT_PLATFORM_ROUTE = "Use the platform's own report route on the post."


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


def render_report_pack(subject: ReportPackSubject) -> str:
    """The pack as plain text for a person to follow."""
    link = subject.permalink or "(no web address)"
    if subject.child_imagery:
        link = defang(link)
    lines = [
        f"Vigil report pack: {subject.school}",
        "",
        f"Vigil wanted to {subject.wanted} this post but cannot through the platform's API:",
        f"  {visible_text(subject.why_not, keep_newlines=False)}",
        "",
        f"Platform: {subject.platform}",
        f"Address: {visible_text(link, keep_newlines=False)}",
        f"Post id: {visible_text(subject.external_id, keep_newlines=False)}",
        f"Author: {visible_text(subject.author_handle or '(unknown)', keep_newlines=False)}",
        f"Posted: {require_utc(subject.posted_at).isoformat(timespec='minutes')}",
        f"Flags: {', '.join(subject.flags) or 'none'}",
        f"Categories: {', '.join(subject.cells) or 'none'}",
        f"Severity: {subject.severity}",
        "",
        "Report it on the platform:",
        f"  {PLATFORM_REPORT_ROUTES.get(subject.platform, DEFAULT_PLATFORM_ROUTE)}",
    ]
    guidance = [ROUTE_GUIDANCE[r] for r in dict.fromkeys(subject.routes) if r in ROUTE_GUIDANCE]
    if guidance:
        lines += ["", "Other routes that may apply:", *(f"  - {g}" for g in guidance)]
    if subject.child_imagery:
        lines += ["", "Do not open, view, copy or share the image. Report the address only."]
    return "\n".join(lines) + "\n"


def write_report_pack(directory: Path, subject: ReportPackSubject) -> Path:
    """Write ``<key>.txt`` and ``<key>.json`` atomically (a key rewrites its own files).

    Returns the text file's path."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = safe_name(subject.key)
    text_path = directory / f"{stem}.txt"
    write_atomic(text_path, render_report_pack(subject).encode("utf-8"))
    data = {**asdict(subject), "posted_at": require_utc(subject.posted_at).isoformat()}
    write_atomic(directory / f"{stem}.json", json.dumps(data, indent=2, sort_keys=True).encode())
    return text_path
