"""The invitation mail: its link on the server's public URL, and its sending after commit.

The link is ``<KANVARO_PUBLIC_URL>/invitation#token=<token>``: the console page served there
(``kanvaro.web.console.signin.invitation``) accepts the invitation. The token travels in the fragment, which
browsers send to no server and in no ``Referer``. The mail goes out only once the transaction
that created the user and the invitation has committed (``kanvaro.db.on_commit``): a rolled-back
invitation sends nothing, and no mail server is talked to while a transaction holds locks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from kanvaro.db import on_commit

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from kanvaro.config import Settings
    from kanvaro.notify.email import Mailer

log = structlog.get_logger("kanvaro.mail")

DEFAULT_PUBLIC_URL = "http://localhost:8000"


def invitation_link(settings: Settings, token: str) -> str:
    return f"{settings.public_url.rstrip('/')}/invitation#token={token}"


def invitation_mail(
    settings: Settings, *, first_name: str, tenant_name: str, token: str
) -> tuple[str, str]:
    """(subject, body) of an invitation; the link stays on a line of its own."""
    body = (
        f"Hello {first_name},\n\n"
        f"you have been invited to join {tenant_name} on Kanvaro.\n"
        f"Choose your password here to activate your account:\n\n"
        f"{invitation_link(settings, token)}\n\n"
        f"The link works once and expires in {settings.invitation_ttl_hours} hours.\n"
        "If you did not expect this invitation, you can ignore this message.\n"
    )
    return f"Invitation to {tenant_name} on Kanvaro", body


def send_invitation_after_commit(
    session: AsyncSession,
    mailer: Mailer,
    settings: Settings,
    *,
    to: str,
    first_name: str,
    tenant_name: str,
    token: str,
) -> None:
    """Queue the invitation mail to go out once ``session``'s transaction has committed."""
    subject, body = invitation_mail(
        settings, first_name=first_name, tenant_name=tenant_name, token=token
    )

    async def send() -> None:
        try:
            await mailer.send(to, subject, body)
        except Exception as exc:  # the user exists: an admin can invite again (logged, no token)
            log.error("invitation_not_sent", error_type=type(exc).__name__)

    on_commit(session, send)


def warn_about_default_public_url(settings: Settings) -> bool:
    """Production with the default public URL sends invitation links to localhost: say so."""
    if settings.is_production and settings.public_url.rstrip("/") == DEFAULT_PUBLIC_URL:
        log.warning(
            "public_url_is_default",
            public_url=settings.public_url,
            hint="set KANVARO_PUBLIC_URL to the address users reach this server at; "
            "invitation links use it",
        )
        return True
    return False
