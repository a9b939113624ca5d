"""The instance's outgoing-mail settings, kept in the database (one row)."""

from __future__ import annotations

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from kanvaro.crypto.fields import Encrypted, EncryptedText
from kanvaro.db import Base, Timestamped


class MailSettings(Timestamped, Base):
    """SMTP relay settings set by the instance admin; the password is encrypted at rest under
    the instance's data key. ``id`` is always 1."""

    __tablename__ = "mail_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    # "starttls" (upgrade a plain connection, port 587), "tls" (implicit TLS, port 465) or
    # "none" (loopback relays only).
    security: Mapped[str] = mapped_column(String(10), default="starttls")
    username: Mapped[str | None] = mapped_column(String(255), nullable=True)
    password_encrypted: Mapped[str | None] = mapped_column(EncryptedText(), nullable=True)
    password = Encrypted("password_encrypted", scope="instance")
    sender: Mapped[str] = mapped_column(String(254))

    def __repr__(self) -> str:  # never the password
        return f"<MailSettings host={self.host!r} port={self.port}>"
