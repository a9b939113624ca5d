"""Outgoing mail behind one Protocol: SMTP in production (``notify.smtp``), an outbox folder
in development, the relay stored in the database when there is one (``notify.configured``).

The outbox writes each message as an ``.eml`` file (mode 0600) in the data directory, so a
developer can read an invitation without a mail server, and nothing secret goes to the logs.
"""

from __future__ import annotations

import os
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import structlog

log = structlog.get_logger("kanvaro.mail")


class Mailer(Protocol):
    async def send(self, to: str, subject: str, body: str) -> None: ...


class MailError(RuntimeError):
    """A message could not be sent, or the mail settings cannot be used. The message says
    why in words an admin can act on; it never holds a password or the mail's content."""


class NullMailer:
    """Keeps sent messages in memory instead of delivering them: the test twin of a Mailer,
    and what a process that must never send mail (a one-off CLI job) can carry."""

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []

    def __repr__(self) -> str:
        return f"NullMailer(sent={len(self.sent)})"

    async def send(self, to: str, subject: str, body: str) -> None:
        self.sent.append(message("kanvaro@localhost", to, subject, body))


def message(sender: str, to: str, subject: str, body: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{uuid.uuid4()}@kanvaro>"
    # Never quoted-printable: its soft line breaks ("=\n") cut long links (an invitation URL
    # with its token) in the raw message and in clients that do not decode them. ASCII text
    # goes as 7bit, lines unwrapped (RFC 5322 allows 998 characters); anything else as base64,
    # which every client decodes before showing or linking.
    cte = "7bit" if body.isascii() and max(map(len, body.splitlines() or [""])) <= 998 else "base64"
    msg.set_content(body, cte=cte)
    return msg


class OutboxMailer:
    def __init__(self, folder: Path, sender: str) -> None:
        self.folder = folder
        self.sender = sender

    def __repr__(self) -> str:
        return f"OutboxMailer(folder={str(self.folder)!r})"

    async def send(self, to: str, subject: str, body: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.folder / f"{uuid.uuid4()}.eml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(bytes(message(self.sender, to, subject, body)))
        log.info("mail_written", transport="outbox", subject=subject)
