"""The SMTP relay stored in the database (``kanvaro mail set``): read, replace, remove.

One row (id 1) in ``mail_settings``; the password is encrypted under the instance's data key
by the model's encrypted field, so it exists in plaintext only in this process's memory.
Every change is audited on the instance chain with the relay's public settings and whether
it authenticates, never the password.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.config import SMTP_DEFAULT_PORTS, SmtpSecurity
from kanvaro.notify.models import MailSettings
from kanvaro.notify.smtp import MailConfigError, check_relay

if TYPE_CHECKING:
    from kanvaro.acting import Acting

ROW_ID = 1


@dataclass(frozen=True)
class Relay:
    """An SMTP relay as configured; ``repr`` never shows the password."""

    host: str
    port: int
    security: SmtpSecurity
    sender: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_relay(self.host, self.security, self.username)
        if not 1 <= self.port <= 65535:
            raise MailConfigError("the SMTP port must be between 1 and 65535")
        if bool(self.username) != bool(self.password):
            raise MailConfigError("an SMTP username and its password go together")

    @classmethod
    def of(
        cls,
        host: str,
        *,
        sender: str,
        port: int | None = None,
        security: SmtpSecurity | str = SmtpSecurity.starttls,
        username: str | None = None,
        password: str | None = None,
    ) -> Relay:
        mode = SmtpSecurity(security)
        return cls(
            host.strip(), port or SMTP_DEFAULT_PORTS[mode], mode, sender, username or None, password
        )

    def public(self) -> dict[str, Any]:
        """What may be shown and audited: everything but the password."""
        return {
            "host": self.host,
            "port": self.port,
            "security": self.security.value,
            "sender": self.sender,
            "username": self.username,
            "authenticates": self.username is not None,
        }


async def stored_row(session: AsyncSession) -> MailSettings | None:
    return await session.get(MailSettings, ROW_ID)


def relay_of(row: MailSettings) -> Relay:
    """The row as a relay. Reading the password decrypts it: a value that does not decrypt
    raises ``DecryptionError`` (naming the column, never a value)."""
    return Relay(
        row.host,
        row.port,
        SmtpSecurity(row.security),
        row.sender,
        row.username,
        row.password,
    )


def public_of(row: MailSettings) -> dict[str, Any]:
    """The row's public settings, without decrypting anything."""
    return {
        "host": row.host,
        "port": row.port,
        "security": row.security,
        "sender": row.sender,
        "username": row.username,
        "authenticates": row.password_encrypted is not None,
    }


async def save_relay(acting: Acting, relay: Relay) -> None:
    """Replace the stored relay (every setting, the password included) and audit it."""
    row = await stored_row(acting.db)
    before = public_of(row) if row is not None else None
    if row is None:
        row = MailSettings(id=ROW_ID)
        acting.db.add(row)
    row.host, row.port, row.security = relay.host, relay.port, relay.security.value
    row.sender, row.username = relay.sender, relay.username
    row.password = relay.password
    await acting.db.flush()
    await acting.record(
        "system:mail_settings:set",
        category="system",
        resource_type="mail_settings",
        resource_id=ROW_ID,
        changes={"before": before, "after": relay.public()},
    )


async def clear_relay(acting: Acting) -> bool:
    """Remove the stored relay (mail falls back to the environment's relay or the outbox);
    False when there was none."""
    row = await stored_row(acting.db)
    if row is None:
        return False
    before = public_of(row)
    await acting.db.delete(row)
    await acting.db.flush()
    await acting.record(
        "system:mail_settings:clear",
        category="system",
        resource_type="mail_settings",
        resource_id=ROW_ID,
        changes={"before": before},
    )
    return True
