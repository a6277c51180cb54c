"""Plain operational alerts to the school's admin contacts (expired tokens, actions given up).

These never contain post text, author handles or secrets: only what is broken and what to do.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

from actions.escalate import MAIL_POLICY

__all__ = ["render_admin_alert"]


def render_admin_alert(
    *,
    key: str,
    subject: str,
    body: str,
    sender: str,
    recipients: Sequence[str],
    message_domain: str,
    now: datetime,
) -> EmailMessage:
    """An alert email; ``key`` makes the Message-ID stable, so a retry cannot send it twice."""
    message = EmailMessage(policy=MAIL_POLICY)
    message["Subject"] = f"[Vigil] {subject}".replace("\r", " ").replace("\n", " ")
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    message["Message-ID"] = f"<alert-{digest}@{message_domain}>"
    message["Date"] = format_datetime(now)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body)
    return message
