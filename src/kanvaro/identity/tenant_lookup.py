""" "Which tenants am I in?": the list goes to the address, never into the response.

The response is the same for every address (known, unknown, malformed, throttled), and the
mail is sent in the background so that its delivery time cannot tell the caller whether the
address has accounts. Nothing is sent to an address without accounts: the request must not
turn the server into a way to mail strangers.
"""

from __future__ import annotations

import asyncio

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.identity.emails import InvalidEmail, normalize_email
from kanvaro.identity.models import User
from kanvaro.services import Services
from kanvaro.tenancy.models import Tenant

log = structlog.get_logger("kanvaro.identity")
_in_flight: set[asyncio.Task[None]] = set()


async def lookup_tenants(
    services: Services, db: AsyncSession, email: str, *, ip: str | None
) -> None:
    try:
        address = normalize_email(email)
    except InvalidEmail:
        return
    verdict = await services.throttle.attempt_lookup(address, ip)
    if not verdict.allowed:
        log.warning("tenant_lookup_throttled", ip=ip)
        return
    rows = (
        await db.execute(
            select(Tenant.name, Tenant.slug)
            .join(User, User.tenant_id == Tenant.id)
            .where(
                func.lower(User.email) == address,
                User.is_active.is_(True),
                Tenant.status == "active",
            )
            .order_by(Tenant.name)
        )
    ).all()
    if not rows:
        return
    base = services.settings.public_url.rstrip("/")
    lines = "\n".join(
        f'- {name}: {base}/t/{slug}/auth/login (tenant "{slug}")' for name, slug in rows
    )
    body = (
        "Hello,\n\nsomeone (hopefully you) asked which Kanvaro tenants this address can sign in "
        f"to. It has accounts in:\n\n{lines}\n\n"
        "Sign in with the tenant's name as shown. If you did not ask, you can ignore this message.\n"
    )
    task = asyncio.create_task(_send(services, address, body))
    _in_flight.add(task)
    task.add_done_callback(_in_flight.discard)


async def _send(services: Services, address: str, body: str) -> None:
    try:
        await services.mailer.send(address, "Your Kanvaro tenants", body)
    except Exception as exc:  # logged, never raised: the caller has had his answer
        log.error("tenant_lookup_mail_failed", error_type=type(exc).__name__)


async def drain() -> None:
    """Wait for mails still being sent (tests, shutdown)."""
    if _in_flight:
        await asyncio.gather(*list(_in_flight), return_exceptions=True)
