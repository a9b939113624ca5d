"""Mails about sign-ins: "was this you?" with a link that ends that session, and "you were
signed out elsewhere" under the single-device policy.

Both go out only once the sign-in's transaction has committed (``kanvaro.db.on_commit``): a
refused or rolled-back sign-in mails nothing, and no mail server is waited on while the
transaction holds the account's row lock. A mail that cannot be sent is logged (its kind and
the error's type, never the link) and the sign-in stands.

The revoke link's token is 32 random bytes; only its SHA-256 is stored, on the session row
(``user_sessions.revoke_token_hash``), in the sign-in's own transaction, so the link exists
exactly when the session does. ``revoke_routes`` spends it.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.db import on_commit
from kanvaro.identity.models import User, UserSession
from kanvaro.services import Services
from kanvaro.tenancy.models import Tenant

if TYPE_CHECKING:
    from kanvaro.identity.sessions.signin import Assessment

log = structlog.get_logger("kanvaro.mail")

REVOKE_PATH = "/api/v1/auth/sessions/revoke"
_sessions = UserSession.__table__
# The risk reasons in the mail's words.
_REASONS = {
    "new_device": "a device not seen before",
    "new_network": "a network not seen before",
    "new_country": "a country not seen before",
    "impossible_travel": "a place too far from your last sign-in to have travelled since",
}


def revoke_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def revoke_link(services: Services, token: str) -> str:
    return f"{services.settings.public_url.rstrip('/')}{REVOKE_PATH}?token={token}"


async def notify_new_sign_in(
    services: Services,
    session: AsyncSession,
    *,
    session_id: uuid.UUID,
    user_id: uuid.UUID,
    assessment: Assessment,
    now: datetime,
) -> None:
    """Give the new session a revoke token (in this transaction) and mail the user after
    commit: device, place, address and time of the sign-in, and the link."""
    token = secrets.token_urlsafe(32)
    # A Core statement: a revoke token is nothing the principal cache holds, so this write
    # must not empty it (ORM writes to user_sessions do).
    await session.execute(
        update(_sessions)
        .where(_sessions.c.id == session_id)
        .values(revoke_token_hash=revoke_token_hash(token))
    )
    recipient = await _recipient(session, user_id)
    if recipient is None:
        return
    address, first_name, tenant_name = recipient
    info = assessment.device_info
    reasons = [_REASONS[r] for r in assessment.risk_reasons if r in _REASONS]
    why = f"We tell you because it came from {_and(reasons)}.\n\n" if reasons else ""
    body = (
        f"Hello {first_name},\n\n"
        f"your Kanvaro account{_in(tenant_name)} was just signed in to:\n\n"
        f"  Device:   {info.get('name') or 'Unknown device'}\n"
        f"  Place:    {info.get('location') or 'unknown place'}\n"
        f"  Address:  {info.get('ip') or 'unknown'}\n"
        f"  Time:     {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC\n\n"
        f"{why}"
        "If this was you, there is nothing to do.\n"
        "If it was not you, end that session with this link, then change your password:\n\n"
        f"{revoke_link(services, token)}\n\n"
        "The link ends only that session, and works once.\n"
    )
    _send_after_commit(services, session, address, "New sign-in to your Kanvaro account", body)


async def notify_sessions_ended(
    services: Services, session: AsyncSession, *, user_id: uuid.UUID, ended: int
) -> None:
    """Single device only: tell the user, after commit, that this sign-in ended the others."""
    recipient = await _recipient(session, user_id)
    if recipient is None or ended <= 0:
        return
    address, first_name, tenant_name = recipient
    sessions = "1 other session" if ended == 1 else f"{ended} other sessions"
    body = (
        f"Hello {first_name},\n\n"
        f"you signed in to Kanvaro{_in(tenant_name)} on another device. Your organisation "
        f"allows one device at a time, so {sessions} ended.\n\n"
        "If this was not you, change your password now.\n"
    )
    _send_after_commit(services, session, address, "You were signed out elsewhere", body)


async def notify_guessing(services: Services, session: AsyncSession, *, user_id: uuid.UUID) -> None:
    """Many wrong passwords for this account came from devices it never signed in from: the
    owner learns, after commit, that those are slowed and that his own devices are not."""
    recipient = await _recipient(session, user_id)
    if recipient is None:
        return
    address, first_name, tenant_name = recipient
    body = (
        f"Hello {first_name},\n\n"
        f"many sign-ins to your Kanvaro account{_in(tenant_name)} failed with a wrong password, "
        "from devices you have not signed in from before. Sign-ins from such devices are slowed "
        "down for a while; the devices you use keep signing in as usual.\n\n"
        "If these were not you, someone may be guessing your password: choose a strong one, "
        "and turn on a second factor if you have not.\n"
    )
    _send_after_commit(services, session, address, "Failed sign-ins to your account", body)


async def _recipient(
    session: AsyncSession, user_id: uuid.UUID
) -> tuple[str, str, str | None] | None:
    row = (
        await session.execute(
            select(User.email, User.first_name, Tenant.name)
            .outerjoin(Tenant, Tenant.id == User.tenant_id)
            .where(User.id == user_id)
        )
    ).first()
    return None if row is None else (row[0], row[1], row[2])


def _send_after_commit(
    services: Services, session: AsyncSession, to: str, subject: str, body: str
) -> None:
    async def send() -> None:
        try:
            await services.mailer.send(to, subject, body)
        except Exception as exc:  # the sign-in stands; the body (and its link) is not logged
            log.error("sign_in_mail_not_sent", subject=subject, error_type=type(exc).__name__)

    on_commit(session, send)


def _in(tenant_name: str | None) -> str:
    return f" at {tenant_name}" if tenant_name else ""


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
