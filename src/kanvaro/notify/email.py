"""Outgoing mail behind one Protocol: SMTP in production, an outbox folder in development.

The outbox writes each message as an ``.eml`` file (mode 0600) in the data directory, so a
developer can read an invitation without a mail server, and nothing secret goes to the logs.
"""

from __future__ import annotations

import os
import smtplib
import ssl
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import anyio.to_thread
import structlog

log = structlog.get_logger("kanvaro.mail")


class Mailer(Protocol):
    async def send(self, to: str, subject: str, body: str) -> None: ...


class NullMailer:
    """Keeps sent messages in memory instead of delivering them: the test twin of a Mailer,
    and what a process that must never send mail (a one-off CLI job) can carry."""

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []

    def __repr__(self) -> str:
        return f"NullMailer(sent={len(self.sent)})"

    async def send(self, to: str, subject: str, body: str) -> None:
        self.sent.append(_message("kanvaro@localhost", to, subject, body))


def _message(sender: str, to: str, subject: str, body: str) -> EmailMessage:
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


class SmtpMailer:
    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.starttls, self.username, self._password = starttls, username, password

    def __repr__(self) -> str:
        return f"SmtpMailer(host={self.host!r}, port={self.port})"

    def _send(self, msg: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=10) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username and self._password:
                smtp.login(self.username, self._password)
            smtp.send_message(msg)

    async def send(self, to: str, subject: str, body: str) -> None:
        await anyio.to_thread.run_sync(self._send, _message(self.sender, to, subject, body))
        log.info("mail_sent", transport="smtp", subject=subject)


class OutboxMailer:
    def __init__(self, folder: Path, sender: str) -> None:
        self.folder = folder
        self.sender = sender

    async def send(self, to: str, subject: str, body: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.folder / f"{uuid.uuid4()}.eml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(bytes(_message(self.sender, to, subject, body)))
        log.info("mail_written", transport="outbox", subject=subject)
