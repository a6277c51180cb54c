"""DSL escalation email: render it, and send it through a mailer with a timeout.

The email gives the DSL what they need without anyone having to open the content: where and
when it was posted, who posted it, why Vigil flagged it, the routes that apply (LADO, Prevent,
police, CEOP, IWF / Childline Report Remove) and — except for suspected sexual imagery of a
child — the text quoted exactly. Post content never reaches a header, and every piece of it is
HTML-escaped in the HTML part. The Message-ID is derived from the escalation key, so a re-send
after a crash is recognisably the same message.
"""

from __future__ import annotations

import asyncio
import copy
import email.policy
import hashlib
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from types import MappingProxyType
from typing import Protocol
from zoneinfo import ZoneInfo

import aiosmtplib

from actions.evidence import safe_name, visible_text, write_atomic
from actions.states import ActionError
from connectors.base import require_utc

__all__ = [
    "MAIL_POLICY",
    "ROUTE_GUIDANCE",
    "EscalationError",
    "EscalationSubject",
    "MailFailed",
    "Mailer",
    "OutboxMailer",
    "SmtpMailer",
    "defang",
    "render_escalation",
]

_UK = ZoneInfo("Europe/London")
_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_DOMAIN_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*")
# Headers are not folded at 78 characters (RFC 5322 allows 998): Python's folding can move a
# whole subject to a continuation line, and some readers then show it with a leading space.
MAIL_POLICY = email.policy.default.clone(max_line_length=998)
_MAX_TEXT_CHARS = 5000
_REDACTED_CHARS = 1000
_MAX_HEADER_CHARS = 200

ROUTE_GUIDANCE: Mapping[str, str] = MappingProxyType(
    {
        "lado": (
            "LADO: this may be an allegation that a member of staff has harmed a child or may pose "
            "a risk to children. Follow KCSIE Part 4: tell the headteacher (or the chair of "
            "governors if it concerns the headteacher) and contact your Local Authority Designated "
            "Officer before doing anything else. Do not investigate it yourself or warn the member "
            "of staff."
        ),
        "prevent": (
            "Prevent: this may be a radicalisation concern. Follow your Prevent duty procedure and "
            "speak to your local authority Prevent lead; the police can be reached on 101. "
            "Call 999 if anyone is in immediate danger."
        ),
        "police": (
            "Police: this contains a threat or suspected crime. Call 999 if anyone is in immediate "
            "danger, otherwise report it on 101 or online. Vigil has kept the evidence; do not "
            "delete the post before the police have it."
        ),
        "ceop": (
            "CEOP: if this involves online grooming or sexual abuse of a child, the DSL decides "
            "whether to report it to CEOP (National Crime Agency): https://www.ceop.police.uk/Safety-Centre/"
        ),
        "iwf_report_remove": (
            "IWF / Childline Report Remove: a young person under 18 can ask for a nude image of "
            "themselves to be taken down through Childline's Report Remove tool "
            "(https://www.childline.org.uk/), run with the Internet Watch Foundation. Adults can "
            "report suspected child sexual abuse imagery to the IWF: https://report.iwf.org.uk/"
        ),
        "posh": (
            "POSH: the Professionals Online Safety Helpline (UK Safer Internet Centre) advises "
            "schools on getting harmful or defamatory content about staff removed."
        ),
        "report_harmful_content": (
            "Report Harmful Content (https://reportharmfulcontent.com/) can help if a platform "
            "does not act on a report."
        ),
        "platform": "Platform: report the post to the platform, citing the rules it breaks.",
    }
)

_CHILD_IMAGERY_WARNING = (
    "SUSPECTED SEXUAL IMAGERY OF A CHILD. Do not open, view, copy, print, share, store or save "
    "the content, and do not ask anyone else to (UKCIS guidance, 'Sharing nudes and "
    "semi-nudes'). Vigil has not downloaded, rendered or stored any of it: this email carries "
    "only the address, ids and a SHA-256 of the text. The address below is disarmed (hxxp, "
    "[.]) so it cannot be opened by accident."
)
_INTRO = (
    "Vigil has flagged a post that may be a safeguarding concern. You are receiving this as a "
    "Designated Safeguarding Lead. Everything you need to decide what to do is below; you do "
    "not need to open the post."
)
_NO_TEXT_NOTE = "The post text and the detector reasons are withheld: they may describe the image."


class EscalationError(ActionError):
    """An escalation could not be rendered or sent."""


class MailFailed(EscalationError):
    """The mail server could not be reached or refused the message."""


@dataclass(frozen=True, kw_only=True)
class EscalationSubject:
    """What the DSL needs to know about one escalated item."""

    escalation_key: str  # stable id, e.g. "esc-42"; becomes the Message-ID
    school: str
    platform: str
    permalink: str | None
    author_handle: str | None
    posted_at: datetime
    text: str
    flags: tuple[str, ...]
    cells: tuple[str, ...]
    severity: str
    reasons: tuple[str, ...]
    routes: tuple[str, ...]
    child_imagery: bool
    case_url: str | None
    ack_url: str | None = None  # a signed link that acknowledges the escalation
    actions_taken: tuple[str, ...] = ()  # what Vigil has done or will do about the post
    excerpt: str = "full"  # "full", "redacted" (matched words masked) or "none"
    redact_spans: tuple[tuple[int, int], ...] = ()  # [start, end) of what the detectors matched
    resent_note: str | None = None  # set when re-sent to deputies: who had it, since when


def render_escalation(
    subject: EscalationSubject,
    *,
    sender: str,
    recipients: Sequence[str],
    message_domain: str,
    date: datetime | None = None,
) -> EmailMessage:
    """Build the escalation email; ``date`` sets the Date header (the mailer adds one if not)."""
    message = EmailMessage(policy=MAIL_POLICY)
    message["Subject"] = _subject_line(subject)
    message["From"] = _address(sender)
    message["To"] = ", ".join(_address(r) for r in _non_empty(recipients))
    message["Message-ID"] = _message_id(subject.escalation_key, message_domain)
    if date is not None:
        message["Date"] = format_datetime(require_utc(date, "date"))
    message["Auto-Submitted"] = "auto-generated"
    message["Importance"] = "high"
    plain, html_body = _plain_body(subject), _html_body(subject)
    message.set_content(plain)
    message.add_alternative(html_body, subtype="html")
    # A boundary derived from the content keeps rendering deterministic (same bytes on re-send).
    digest = hashlib.sha256((plain + html_body).encode("utf-8", "surrogatepass")).hexdigest()
    message.set_boundary(f"=_vigil_{digest[:40]}")
    return message


class Mailer(Protocol):
    """Sends one message; raises MailFailed when it cannot."""

    async def send(self, message: EmailMessage) -> None:
        """Deliver ``message`` or raise MailFailed."""
        ...


class OutboxMailer:
    """Writes each message to ``directory`` as ``<Message-ID>.eml`` (for the demo and tests)."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    async def send(self, message: EmailMessage) -> None:
        """Write the message atomically; the same Message-ID always lands in the same file."""
        await asyncio.to_thread(self._write, message)

    def path_for(self, message: EmailMessage) -> Path:
        """The file a message is written to."""
        message_id = str(message.get("Message-ID", "")).strip().strip("<>")
        if not message_id:
            raise EscalationError("a message needs a Message-ID to be written to the outbox")
        return self._directory / f"{safe_name(message_id)}.eml"

    def _write(self, message: EmailMessage) -> None:
        path = self.path_for(message)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, message.as_bytes())
        except OSError as err:
            raise MailFailed(f"cannot write to outbox {self._directory}: {err}") from err


class SmtpMailer:
    """Sends through an SMTP server with aiosmtplib, bounded by ``timeout`` seconds."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str | None,
        password: str | None,
        starttls: bool,
        use_tls: bool,
        timeout: float,
    ) -> None:
        if starttls and use_tls:
            raise EscalationError("choose starttls or use_tls (implicit TLS), not both")
        if timeout <= 0:
            raise EscalationError("the SMTP timeout must be positive")
        self._host, self._port = host, port
        self._username, self._password = username, password
        self._starttls, self._use_tls, self._timeout = starttls, use_tls, timeout

    async def send(self, message: EmailMessage) -> None:
        """Send ``message``; raise MailFailed on any failure, including a refused recipient."""
        try:
            async with asyncio.timeout(self._timeout):
                refused, _ = await aiosmtplib.send(
                    _with_date(message),
                    hostname=self._host,
                    port=self._port,
                    username=self._username,
                    password=self._password,
                    start_tls=self._starttls,
                    use_tls=self._use_tls,
                    timeout=self._timeout,
                )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as err:
            raise MailFailed(
                f"SMTP {self._host}:{self._port}: {type(err).__name__}: {err}"
            ) from err
        if refused:
            raise MailFailed(f"SMTP {self._host}:{self._port} refused {len(refused)} recipient(s)")


# --- headers ------------------------------------------------------------------------------


def _subject_line(subject: EscalationSubject) -> str:
    """Severity and category only: never a word of the post, nothing graphic."""
    flags = ", ".join(subject.flags) or "safeguarding"
    resent = "not acknowledged, " if subject.resent_note else ""
    return _header_text(
        f"[Vigil] {resent}{subject.severity.capitalize()}: {flags} on {subject.platform} "
        f"({subject.escalation_key})"
    )


def _header_text(value: str) -> str:
    """One header-safe line: control characters (CR, LF, ...) shown as escapes, never sent."""
    line = " ".join(visible_text(value, keep_newlines=False).split())
    return line[:_MAX_HEADER_CHARS]


def _address(value: str) -> str:
    if not value.strip() or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise EscalationError("an email address is empty or contains control characters")
    return value.strip()


def _non_empty(recipients: Sequence[str]) -> Sequence[str]:
    if not recipients:
        raise EscalationError("an escalation needs at least one recipient")
    return recipients


def _message_id(key: str, domain: str) -> str:
    if not _KEY_RE.fullmatch(key):
        raise EscalationError("escalation_key must be 1-128 of [A-Za-z0-9._-]")
    if not _DOMAIN_RE.fullmatch(domain):
        raise EscalationError("message_domain must be a plain domain name")
    return f"<{key}@{domain}>"


def _with_date(message: EmailMessage) -> EmailMessage:
    if message["Date"] is not None:
        return message
    dated = copy.deepcopy(message)
    dated["Date"] = format_datetime(datetime.now(UTC))
    return dated


# --- body -----------------------------------------------------------------------------------


def _facts(subject: EscalationSubject) -> list[tuple[str, str]]:
    posted = require_utc(subject.posted_at, "posted_at")
    uk = posted.astimezone(_UK)
    link = subject.permalink or "-"
    facts = [
        ("School", subject.school),
        ("Platform", subject.platform),
        ("Severity", subject.severity),
        ("Flags", ", ".join(subject.flags) or "-"),
        ("Categories", ", ".join(subject.cells) or "-"),
        ("Posted", f"{posted:%Y-%m-%d %H:%M} UTC ({uk:%A %d %B %Y %H:%M} UK time)"),
        ("Author", subject.author_handle or "-"),
        ("Address", defang(link) if subject.child_imagery else link),
        ("Reference", subject.escalation_key),
    ]
    if subject.child_imagery:
        text_hash = hashlib.sha256(subject.text.encode("utf-8", "surrogatepass")).hexdigest()
        facts.append(("Text SHA-256", text_hash))
    return [(label, visible_text(value, keep_newlines=False)) for label, value in facts]


def _guidance(subject: EscalationSubject) -> list[str]:
    routes = list(subject.routes)
    if subject.child_imagery:
        routes = ["iwf_report_remove", "ceop", *routes]
    seen = dict.fromkeys(r for r in routes if r in ROUTE_GUIDANCE)
    return [ROUTE_GUIDANCE[route] for route in seen]


def _post_text(subject: EscalationSubject) -> str | None:
    if subject.child_imagery or subject.excerpt == "none":
        return None
    text = subject.text
    if subject.excerpt == "redacted":
        text = _redacted(text, subject.redact_spans)
    text = visible_text(text)
    limit = _REDACTED_CHARS if subject.excerpt == "redacted" else _MAX_TEXT_CHARS
    if len(text) > limit:
        note = f"\n[truncated: {len(subject.text)} characters in all; the full text is in the case]"
        text = text[:limit] + note
    return text


def _redacted(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """The text with every matched span masked, so the DSL sees context but not the words."""
    chars = list(text)
    for start, end in spans:
        for i in range(max(start, 0), min(end, len(chars))):
            if not chars[i].isspace():
                chars[i] = "\u2588"
    return "".join(chars)


def _quote_heading(subject: EscalationSubject) -> str:
    if subject.excerpt == "redacted":
        return "The post, with the words that were flagged masked:"
    return "The post, quoted exactly (it may be distressing):"


def _no_quote_note(subject: EscalationSubject) -> str | None:
    if subject.excerpt == "none" and not subject.child_imagery:
        return "The post is not quoted in email (excerpt = none): open the case to read it."
    return None


def _plain_body(subject: EscalationSubject) -> str:
    parts = [_CHILD_IMAGERY_WARNING if subject.child_imagery else _INTRO, ""]
    if subject.resent_note:
        parts += [visible_text(subject.resent_note, keep_newlines=False), ""]
    parts += [f"{label}: {value}" for label, value in _facts(subject)]
    parts += ["", "Why Vigil flagged it:"]
    if subject.child_imagery:
        parts.append(_NO_TEXT_NOTE)
    else:
        parts += [f"- {visible_text(r, keep_newlines=False)}" for r in subject.reasons] or ["-"]
    if subject.actions_taken:
        parts += ["", "What Vigil has done:"]
        parts += [f"- {visible_text(a, keep_newlines=False)}" for a in subject.actions_taken]
    guidance = _guidance(subject)
    if guidance:
        parts += ["", "What to do next:", *(f"- {g}" for g in guidance)]
    text = _post_text(subject)
    if text is not None:
        parts += ["", _quote_heading(subject), ""]
        parts += [f"> {line}" for line in text.split("\n")]
    note = _no_quote_note(subject)
    if note:
        parts += ["", note]
    parts += ["", *_case_lines(subject)]
    return "\n".join(parts) + "\n"


def _case_lines(subject: EscalationSubject) -> list[str]:
    lines = []
    if subject.ack_url:
        url = visible_text(subject.ack_url, keep_newlines=False)
        lines.append(f"Acknowledge that you have seen this (one click, then confirm): {url}")
    if subject.case_url:
        lines.append(f"The case: {visible_text(subject.case_url, keep_newlines=False)}")
    if not subject.ack_url:
        lines.append("Acknowledge this escalation in Vigil: `vigil escalations ack ID --by NAME`.")
    return lines


def _html_body(subject: EscalationSubject) -> str:
    esc = html.escape
    warning = _CHILD_IMAGERY_WARNING if subject.child_imagery else _INTRO
    rows = "".join(
        f"<tr><th align='left'>{esc(label)}</th><td>{_html_value(label, value, subject)}</td></tr>"
        for label, value in _facts(subject)
    )
    parts = [
        "<!DOCTYPE html><html><body>",
        f"<p><strong>{esc(warning)}</strong></p>",
        f"<table>{rows}</table>",
        "<h3>Why Vigil flagged it</h3>",
        _html_reasons(subject),
    ]
    if subject.resent_note:
        parts.insert(1, f"<p><strong>{esc(visible_text(subject.resent_note))}</strong></p>")
    if subject.actions_taken:
        items = "".join(f"<li>{esc(visible_text(a))}</li>" for a in subject.actions_taken)
        parts += ["<h3>What Vigil has done</h3>", f"<ul>{items}</ul>"]
    guidance = _guidance(subject)
    if guidance:
        items = "".join(f"<li>{esc(g)}</li>" for g in guidance)
        parts += ["<h3>What to do next</h3>", f"<ul>{items}</ul>"]
    text = _post_text(subject)
    if text is not None:
        parts += [
            f"<h3>{esc(_quote_heading(subject).rstrip(':'))}</h3>",
            f"<pre style='white-space:pre-wrap'>{esc(text)}</pre>",
        ]
    note = _no_quote_note(subject)
    if note:
        parts.append(f"<p>{esc(note)}</p>")
    parts += [f"<p>{_html_case(subject)}</p>", "</body></html>"]
    return "\n".join(parts) + "\n"


def _html_reasons(subject: EscalationSubject) -> str:
    if subject.child_imagery:
        return f"<p>{html.escape(_NO_TEXT_NOTE)}</p>"
    items = "".join(f"<li>{html.escape(visible_text(r))}</li>" for r in subject.reasons)
    return f"<ul>{items or '<li>-</li>'}</ul>"


def _html_value(label: str, value: str, subject: EscalationSubject) -> str:
    # The post's own address is a link only when it is plain http(s) and safe to open.
    if label == "Address" and not subject.child_imagery:
        return _html_link(value)
    return html.escape(value)


def _html_case(subject: EscalationSubject) -> str:
    lines = []
    for line in _case_lines(subject):
        label, sep, url = line.rpartition(": ")
        lines.append(html.escape(label) + sep + _html_link(url) if sep else html.escape(line))
    return "<br>".join(lines)


def _html_link(url: str) -> str:
    if re.match(r"https?://", url, flags=re.IGNORECASE):
        quoted = html.escape(url, quote=True)
        return f'<a href="{quoted}">{quoted}</a>'
    return html.escape(url)


def defang(url: str) -> str:
    """Make an address unclickable but still exact for whoever reports it (hxxps, [.])."""
    return re.sub(r"^http", "hxxp", url, flags=re.IGNORECASE).replace(".", "[.]")
