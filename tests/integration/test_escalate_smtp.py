"""actions.escalate: the DSL email, sent to a real aiosmtpd server on loopback, and the outbox."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from actions.escalate import (
    EscalationError,
    EscalationSubject,
    MailFailed,
    OutboxMailer,
    SmtpMailer,
    render_escalation,
)

HOSTILE = '<script>alert(1)</script> & "quotes" <img src=x onerror=alert(2)>'
SENDER = "vigil@school.example"
RECIPIENTS = ("dsl@school.example", "deputy@school.example")
DOMAIN = "vigil.school.example"
WHEN = datetime(2025, 3, 12, 10, 0, tzinfo=UTC)


def make_subject(**overrides: Any) -> EscalationSubject:
    fields: dict[str, Any] = {
        "escalation_key": "esc-42",
        "school": "Oak Primary",
        "platform": "facebook",
        "permalink": "https://facebook.com/123_456",
        "author_handle": "@parent1 <b>bold</b>",
        "posted_at": datetime(2025, 3, 12, 9, 30, tzinfo=UTC),
        "text": f"I know where Mr Smith lives {HOSTILE}",
        "flags": ("safeguarding", "abusive"),
        "cells": ("contact.aggressive",),
        "severity": "high",
        "reasons": (f"rules matched {HOSTILE}",),
        "routes": ("police",),
        "child_imagery": False,
        "case_url": "https://vigil.school.example/cases/42",
    }
    fields.update(overrides)
    return EscalationSubject(**fields)


def render(subject: EscalationSubject | None = None, **kwargs: Any) -> EmailMessage:
    return render_escalation(
        subject or make_subject(),
        sender=SENDER,
        recipients=RECIPIENTS,
        message_domain=DOMAIN,
        date=WHEN,
        **kwargs,
    )


def parts(message: EmailMessage) -> tuple[str, str]:
    plain = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    assert plain is not None and html_part is not None
    return str(plain.get_content()), str(html_part.get_content())


# --- a real SMTP server on the test's loop ---------------------------------------------------


@dataclass
class Inbox:
    envelopes: list[Envelope] = field(default_factory=list)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)
    refuse: frozenset[str] = frozenset()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login, data.password))
        # handled=False: aiosmtpd sends the 235/535 reply itself.
        return AuthResult(success=data.password == b"s3cret", handled=False)

    def received(self) -> EmailMessage:
        (envelope,) = self.envelopes
        assert isinstance(envelope.content, bytes)
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


ServerFactory = Callable[..., Awaitable[tuple[Inbox, int]]]


@pytest.fixture
async def smtp_server() -> AsyncIterator[ServerFactory]:
    loop = asyncio.get_running_loop()
    servers: list[asyncio.Server] = []
    sessions: list[SMTP] = []

    def session(inbox: Inbox, options: dict[str, Any]) -> SMTP:
        protocol = SMTP(
            inbox,
            hostname="mx.test",
            authenticator=inbox.authenticate,
            auth_require_tls=False,
            **options,
        )
        sessions.append(protocol)
        return protocol

    async def start(**options: Any) -> tuple[Inbox, int]:
        inbox = Inbox(refuse=frozenset(options.pop("refuse", ())))
        server = await loop.create_server(lambda: session(inbox, options), "127.0.0.1", 0)
        servers.append(server)
        return inbox, server.sockets[0].getsockname()[1]

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()
    # Server.close() leaves accepted connections open (Python 3.11): close them, and let
    # their handler tasks see the close before the loop goes away.
    for protocol in sessions:
        if protocol.transport is not None:
            protocol.transport.close()
        task = getattr(protocol, "_handler_coroutine", None)
        if task is not None:
            await asyncio.wait([task], timeout=1)


def mailer(port: int, **overrides: Any) -> SmtpMailer:
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "username": None,
        "password": None,
        "starttls": False,
        "use_tls": False,
        "timeout": 5.0,
    }
    settings.update(overrides)
    return SmtpMailer(**settings)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- sending -------------------------------------------------------------------------------


async def test_smtp_delivers_the_escalation(smtp_server: ServerFactory) -> None:
    inbox, port = await smtp_server()
    await mailer(port).send(render())

    (envelope,) = inbox.envelopes
    assert envelope.mail_from == SENDER
    assert envelope.rcpt_tos == list(RECIPIENTS)
    received = inbox.received()
    assert received["Message-ID"] == "<esc-42@vigil.school.example>"
    assert received["Subject"] == "[Vigil] High: safeguarding, abusive on facebook (esc-42)"
    assert received["To"] == ", ".join(RECIPIENTS)
    assert received["Date"] == "Wed, 12 Mar 2025 10:00:00 +0000"
    plain, html_body = parts(received)
    assert HOSTILE in plain  # text/plain carries the text exactly
    assert "<script>" not in html_body and "<img" not in html_body and "<b>" not in html_body
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;" in html_body
    assert "&lt;b&gt;bold&lt;/b&gt;" in html_body
    assert '<a href="https://facebook.com/123_456">' in html_body
    assert "999" in plain and "police" in plain.lower()


async def test_smtp_logs_in_when_given_credentials(smtp_server: ServerFactory) -> None:
    inbox, port = await smtp_server()
    await mailer(port, username="vigil", password="s3cret").send(render())
    assert inbox.logins == [(b"vigil", b"s3cret")]
    assert len(inbox.envelopes) == 1


async def test_smtp_bad_password_raises_mail_failed_without_the_password(
    smtp_server: ServerFactory,
) -> None:
    inbox, port = await smtp_server()
    with pytest.raises(MailFailed) as info:
        await mailer(port, username="vigil", password="wrong-secret").send(render())
    assert "wrong-secret" not in str(info.value)
    assert inbox.envelopes == []


async def test_smtp_adds_a_date_when_the_message_has_none(smtp_server: ServerFactory) -> None:
    inbox, port = await smtp_server()
    message = render_escalation(
        make_subject(), sender=SENDER, recipients=RECIPIENTS, message_domain=DOMAIN
    )
    await mailer(port).send(message)
    assert inbox.received()["Date"] is not None
    assert message["Date"] is None  # the caller's message is not changed


async def test_header_injection_from_post_content_is_neutralised(
    smtp_server: ServerFactory,
) -> None:
    inbox, port = await smtp_server()
    subject = make_subject(
        platform="facebook\r\nBcc: evil@attacker.example",
        flags=("abusive\nX-Injected: yes",),
        author_handle="x\r\nBcc: evil2@attacker.example",
        text="line one\r\nBcc: evil3@attacker.example\r\n.\r\nMAIL FROM:<a@b>",
    )
    await mailer(port).send(render(subject))

    (envelope,) = inbox.envelopes
    assert envelope.rcpt_tos == list(RECIPIENTS)
    received = inbox.received()
    assert received["Bcc"] is None and received["X-Injected"] is None
    assert "\r" not in received["Subject"] and "\n" not in received["Subject"]
    assert "attacker" not in "".join(f"{k}: {v}" for k, v in received.items() if k != "Subject")
    assert isinstance(envelope.content, bytes)
    header_block = envelope.content.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc:" not in header_block and b"\r\nX-Injected" not in header_block


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"subject": make_subject(escalation_key="esc-1\r\nBcc: x@y")}, "escalation_key"),
        ({"subject": make_subject(escalation_key="")}, "escalation_key"),
        ({"message_domain": "example.com>\r\nBcc: x@y"}, "message_domain"),
        ({"recipients": ()}, "recipient"),
        ({"recipients": ("dsl@x\r\nBcc: evil@y",)}, "control"),
        ({"sender": "vigil@x\nBcc: evil@y"}, "control"),
    ],
)
def test_render_rejects_unsafe_ids_and_addresses(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {
        "subject": make_subject(),
        "sender": SENDER,
        "recipients": RECIPIENTS,
        "message_domain": DOMAIN,
        **kwargs,
    }
    subject = args.pop("subject")
    with pytest.raises(EscalationError, match=match):
        render_escalation(subject, **args)


async def test_unreachable_server_raises_mail_failed_promptly() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(MailFailed, match=r"127\.0\.0\.1"):
        await mailer(free_port(), timeout=5.0).send(render())
    assert loop.time() - started < 2.0


async def test_silent_server_times_out_as_mail_failed() -> None:
    hung_up = asyncio.Event()

    async def never_greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # returns when the client gives up and closes
        writer.close()
        await writer.wait_closed()
        hung_up.set()

    server = await asyncio.start_server(never_greet, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(MailFailed):
            await mailer(port, timeout=0.2).send(render())
        await asyncio.wait_for(hung_up.wait(), timeout=2)
    finally:
        server.close()
        await server.wait_closed()
    assert loop.time() - started < 2.0


async def test_refused_recipient_raises_mail_failed(smtp_server: ServerFactory) -> None:
    _, port = await smtp_server(refuse=[RECIPIENTS[1]])
    with pytest.raises(MailFailed, match="refused 1 recipient"):
        await mailer(port).send(render())


async def test_starttls_required_but_not_offered_raises_mail_failed(
    smtp_server: ServerFactory,
) -> None:
    _, port = await smtp_server()
    with pytest.raises(MailFailed):
        await mailer(port, starttls=True).send(render())


@pytest.mark.parametrize(
    ("overrides", "match"),
    [({"starttls": True, "use_tls": True}, "not both"), ({"timeout": 0}, "positive")],
)
def test_smtp_mailer_rejects_bad_settings(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(EscalationError, match=match):
        mailer(25, **overrides)


# --- what the email says -------------------------------------------------------------------


def test_child_imagery_email_has_no_text_and_says_do_not_open() -> None:
    secret = "distinctive post words"
    subject = make_subject(
        text=secret,
        reasons=(f"matched {secret}",),
        routes=(),
        child_imagery=True,
        permalink="https://cdn.example.com/img/123.jpg",
    )
    message = render(subject)
    plain, html_body = parts(message)
    raw = message.as_string()
    assert secret not in raw
    assert "do not open, view, copy" in plain.lower()
    assert "Report Remove" in plain and "CEOP" in plain and "report.iwf.org.uk" in plain
    assert "hxxps://cdn[.]example[.]com/img/123[.]jpg" in plain
    assert "https://cdn.example.com" not in raw  # not clickable by accident
    assert "<a href" not in html_body.replace('<a href="https://vigil', "")
    assert hashlib.sha256(secret.encode()).hexdigest() in plain


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        (("lado",), "Local Authority Designated Officer"),
        (("prevent",), "Prevent duty"),
        (("police",), "999"),
        (("ceop",), "ceop.police.uk"),
        (("posh",), "Professionals Online Safety Helpline"),
    ],
)
def test_route_guidance(routes: tuple[str, ...], expected: str) -> None:
    plain, html_body = parts(render(make_subject(routes=routes)))
    assert expected in plain and expected in html_body


def test_subject_never_carries_post_text() -> None:
    message = render(make_subject(text="Mr Smith secret words", flags=()))
    assert message["Subject"] == "[Vigil] High: safeguarding on facebook (esc-42)"


def test_non_http_permalink_is_not_a_link() -> None:
    _, html_body = parts(render(make_subject(permalink="javascript:alert(1)")))
    assert 'href="javascript' not in html_body
    assert "javascript:alert(1)" in html_body


def test_long_text_is_truncated_with_a_note() -> None:
    plain, _ = parts(render(make_subject(text="x" * 20000)))
    assert "truncated: 20000 characters" in plain
    assert plain.count("x") < 6000


def test_rendering_is_deterministic() -> None:
    assert render().as_bytes() == render().as_bytes()


# --- the outbox ----------------------------------------------------------------------------


async def test_outbox_writes_one_file_per_message_id(tmp_path: Path) -> None:
    outbox = OutboxMailer(tmp_path / "outbox")
    message = render()
    await outbox.send(message)
    await outbox.send(render())
    files = list((tmp_path / "outbox").iterdir())
    assert [f.name for f in files] == ["esc-42%40vigil%2Eschool%2Eexample.eml"]
    assert files[0] == outbox.path_for(message)
    assert files[0].read_bytes() == message.as_bytes()

    await outbox.send(render(replace(make_subject(), escalation_key="esc-43")))
    assert len(list((tmp_path / "outbox").iterdir())) == 2


async def test_outbox_needs_a_message_id(tmp_path: Path) -> None:
    with pytest.raises(EscalationError, match="Message-ID"):
        await OutboxMailer(tmp_path).send(EmailMessage())


async def test_outbox_write_failure_is_mail_failed(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(MailFailed, match="outbox"):
        await OutboxMailer(blocker).send(render())
