"""The SMTP sender: STARTTLS (RFC 3207), implicit TLS (RFC 8314) or, for a relay on this
machine, no encryption; the server's certificate is always verified.

Security decisions fail closed: a server that does not offer STARTTLS when it was asked for is
not talked to in plaintext, a certificate that does not verify (system CAs, or only the CA
file when one is set) ends the connection, and credentials are refused for an unencrypted
connection to anything but a loopback address before any connection is made.

certPinning (``KANVARO_TLS_PINS``, :mod:`kanvaro.security.outbound`) applies to STARTTLS and
implicit TLS alike: a pinned relay whose key does not match is refused right after the
handshake, before AUTH or a message.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from email.message import EmailMessage
from pathlib import Path

import anyio.to_thread
import structlog

from kanvaro.config import SMTP_DEFAULT_PORTS, SmtpSecurity, is_loopback_host
from kanvaro.notify.email import MailError, message
from kanvaro.security.outbound import PINS_VARIABLE, Pins, client_context, refusal, resolve

log = structlog.get_logger("kanvaro.mail")


class MailConfigError(MailError, ValueError):
    """Settings that are refused before anything is sent."""


def tls_context(ca_file: Path | None = None, pins: Pins | str | None = None) -> ssl.SSLContext:
    """Verifying client context: hostname checked, TLS 1.2 at least; with ``ca_file`` only
    that CA is trusted (a private relay, or a test's throwaway CA); the relay's pins checked
    (``pins`` None: ``KANVARO_TLS_PINS``; a malformed value raises ValueError)."""
    return client_context(pins, ca_file=ca_file)


def check_relay(host: str, security: SmtpSecurity, username: str | None) -> None:
    """Refuse what must never be tried; raises :class:`MailConfigError`."""
    if not host or any(c.isspace() for c in host) or len(host) > 255:
        raise MailConfigError("the SMTP host must be a host name or an IP address")
    if username and security is SmtpSecurity.none and not is_loopback_host(host):
        raise MailConfigError(
            f"refusing to send SMTP credentials to {host} without encryption: use security "
            "starttls or tls (none is accepted with credentials for a loopback host only)"
        )


class SmtpMailer:
    """Sends each message over a new connection (mail is rare: invitations, notices)."""

    def __init__(
        self,
        host: str,
        port: int | None,
        sender: str,
        *,
        security: SmtpSecurity | str = SmtpSecurity.starttls,
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
        timeout: float = 10.0,
        pins: Pins | str | None = None,
    ) -> None:
        self.security = SmtpSecurity(security)
        check_relay(host, self.security, username)
        if username and not password:
            raise MailConfigError("an SMTP username needs its password")
        self.host, self.sender, self.timeout = host, sender, timeout
        self.port = port or SMTP_DEFAULT_PORTS[self.security]
        self.username, self._password = username or None, password
        # Built once: loading the system's CA store costs milliseconds per connection.
        try:
            pinned = resolve(pins)
        except ValueError as exc:  # malformed pins: parse_pins names the entry, no pin value
            raise MailConfigError(str(exc)) from None
        if self.security is SmtpSecurity.none:
            if host.lower() in pinned:  # pins promise TLS to that host: never plaintext
                raise MailConfigError(
                    f"{host} has pins in {PINS_VARIABLE}: use security starttls or tls"
                )
            self._context = None
        else:
            self._context = tls_context(ca_file, pinned)
        if self.security is SmtpSecurity.none and not is_loopback_host(host):
            log.warning("smtp_unencrypted", host=host, port=self.port)

    def __repr__(self) -> str:
        return (
            f"SmtpMailer(host={self.host!r}, port={self.port}, security={self.security.value}, "
            f"auth={self.username is not None})"
        )

    def _connect(self) -> smtplib.SMTP:
        if self.security is SmtpSecurity.tls:
            return smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=self._context
            )
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if self.security is SmtpSecurity.starttls:
            try:
                smtp.starttls(context=self._context)
            except BaseException:
                smtp.close()
                raise
        return smtp

    def _deliver(self, msg: EmailMessage) -> None:
        try:
            with self._connect() as smtp:
                if self.username and self._password:
                    smtp.login(self.username, self._password)
                smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            # `from None`: the original traceback's frames hold the password as a local.
            raise MailError(explain(exc, self.host, self.port)) from None

    async def send(self, to: str, subject: str, body: str) -> None:
        try:
            await anyio.to_thread.run_sync(self._deliver, message(self.sender, to, subject, body))
        except MailError as exc:
            log.warning("mail_failed", transport="smtp", host=self.host, error=str(exc))
            raise
        log.info("mail_sent", transport="smtp", subject=subject)


def explain(exc: BaseException, host: str, port: int) -> str:
    """What went wrong, for an admin; built from error codes and the server's reply only."""
    where = f"{host}:{port}"
    pinned = refusal(exc)
    if pinned is not None:  # before SSLError: a pin refusal is one, and has no reason code
        return f"{where} was refused: {pinned}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the certificate of {where} was refused: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "reason", None) or type(exc).__name__
        return f"TLS with {where} failed ({reason}): is the security mode right for this port?"
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return f"{where} refused the username or password ({exc.smtp_code})"
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return f"{where} refused: {exc}"  # STARTTLS or AUTH not offered
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = sorted({code for code, _ in exc.recipients.values()})
        return f"{where} refused the recipient ({', '.join(map(str, codes))})"
    if isinstance(exc, smtplib.SMTPResponseException):
        reply = exc.smtp_error.decode("utf-8", "replace")[:200]
        return f"{where} answered {exc.smtp_code}: {reply}"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return f"{where} closed the connection (is it a TLS port? check the security mode)"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer from {where} in time"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {host}"
    if isinstance(exc, OSError):
        return f"cannot connect to {where}: {exc.strerror or type(exc).__name__}"
    return f"SMTP error with {where}: {type(exc).__name__}"
