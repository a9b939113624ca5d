"""The mailer of a running instance: the relay stored with ``kanvaro mail set`` when there is
one, else the environment's relay (``KANVARO_SMTP_*``), else the outbox folder.

The row is read lazily and again at most every ``refresh_seconds``, so a ``kanvaro mail set``
reaches every instance within that time without a restart, and sending mail costs a database
read only once per interval. A stored relay that cannot be used (its password does not
decrypt, its settings are refused) fails every send with a :class:`MailError` saying so,
rather than falling back: mail meant for the admin's relay never silently goes elsewhere.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
from sqlalchemy.exc import SQLAlchemyError

from kanvaro.crypto.errors import DecryptionError
from kanvaro.db import Database
from kanvaro.notify.email import Mailer, MailError
from kanvaro.notify.relay_settings import Relay, relay_of, stored_row
from kanvaro.notify.smtp import SmtpMailer

log = structlog.get_logger("kanvaro.mail")


@dataclass(frozen=True)
class Choice:
    """The mailer in use and where its settings came from: database, environment, outbox."""

    source: str
    mailer: Mailer


class ConfiguredMailer:
    def __init__(
        self,
        db: Database,
        fallback: Choice,
        *,
        ca_file: Path | None = None,
        timeout: float = 10.0,
        pins: str | None = None,
        refresh_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db, self.fallback = db, fallback
        self.ca_file, self.timeout, self.pins = ca_file, timeout, pins
        self.refresh_seconds, self._clock = refresh_seconds, clock
        self._lock = asyncio.Lock()
        self._read_at: float | None = None
        self._choice: Choice | MailError = fallback
        self._relay: Relay | None = None  # the stored relay the current SmtpMailer was built of

    def __repr__(self) -> str:
        current = self._choice.source if isinstance(self._choice, Choice) else "unusable"
        return f"ConfiguredMailer(current={current}, fallback={self.fallback.source})"

    async def send(self, to: str, subject: str, body: str) -> None:
        choice = await self.current()
        await choice.mailer.send(to, subject, body)

    async def current(self) -> Choice:
        """The mailer to use now; raises :class:`MailError` if the stored relay is unusable."""
        if self._stale():
            async with self._lock:
                if self._stale():  # another sender may have read it while this one waited
                    await self._reload()
        if isinstance(self._choice, MailError):
            raise MailError(str(self._choice))  # a fresh one: no traceback grows on it
        return self._choice

    def _stale(self) -> bool:
        return self._read_at is None or self._clock() - self._read_at >= self.refresh_seconds

    async def _reload(self) -> None:
        try:
            # all_tenants: the instance's data key belongs to no tenant, and PostgreSQL's
            # row-level security hides it from a session bound to none.
            async with self.db.session(all_tenants=True) as session:
                row = await stored_row(session)
                relay = relay_of(row) if row is not None else None
        except DecryptionError as exc:
            log.error("mail_settings_unreadable", error_type=type(exc).__name__)
            self._set(
                MailError(
                    "the stored SMTP password cannot be decrypted (a lost or destroyed key?): "
                    "store it again with `kanvaro mail set`"
                )
            )
            return
        except ValueError as exc:  # a row written around `kanvaro mail set`
            reason = str(exc) if isinstance(exc, MailError) else "unknown security mode"
            log.error("mail_settings_refused", error=reason)
            self._set(MailError(f"the stored mail settings are refused: {reason}"))
            return
        except (SQLAlchemyError, OSError) as exc:
            # Not remembered: the next send asks the database again.
            log.error("mail_settings_unavailable", error_type=type(exc).__name__)
            raise MailError("the mail settings could not be read from the database") from None
        if relay is None:
            self._relay = None
            self._set(self.fallback)
        elif relay != self._relay or not isinstance(self._choice, Choice):
            self._relay = relay
            self._set(self._smtp(relay))
        else:
            self._set(self._choice)  # unchanged: keep its TLS context

    def _smtp(self, relay: Relay) -> Choice | MailError:
        try:
            mailer = SmtpMailer(
                relay.host,
                relay.port,
                relay.sender,
                security=relay.security,
                username=relay.username,
                password=relay.password,
                ca_file=self.ca_file,
                timeout=self.timeout,
                pins=self.pins,
            )
        except MailError as exc:
            log.error("mail_settings_refused", error=str(exc))
            return MailError(f"the stored mail settings are refused: {exc}")
        except (OSError, ssl.SSLError) as exc:  # the CA file went missing or is not PEM
            log.error("smtp_ca_file_unusable", error_type=type(exc).__name__)
            return MailError(f"the CA file {self.ca_file} cannot be used ({type(exc).__name__})")
        return Choice("database", mailer)

    def _set(self, choice: Choice | MailError) -> None:
        self._choice = choice
        self._read_at = self._clock()
