"""Sign-ins in flight: a short-lived, single-use record per outgoing request (OIDC ``state``,
SAML AuthnRequest ID), bound to the browser that started it, and the assertion ids seen.

Why a record and a cookie, not a signed state alone: the record makes the state single use
(a replayed callback finds it spent) and keeps the nonce and PKCE verifier on our side
(encrypted), and the cookie - a random secret only that browser holds, its SHA-256 stored -
stops a callback started in one browser from finishing in another (login CSRF, a victim
signed in to the attacker's account). The secret is reused while the browser has one, so two
tabs can sign in at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.identity.sessions.cookies import set_cookie
from kanvaro.identity.sso.errors import SsoRefused
from kanvaro.identity.sso.models import SsoProvider, SsoRequest, SsoSeenAssertion
from kanvaro.services import Services

BROWSER_COOKIE = "__Host-kanvaro_sso"
REQUEST_TTL = timedelta(minutes=10)
STALE = "The sign-in has expired or was already used; start it again."


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def browser_secret(cookies: dict[str, str]) -> str:
    """The browser's binding secret: the one it holds, or a new one."""
    held = cookies.get(BROWSER_COOKIE) or ""
    if 32 <= len(held) <= 64 and held.replace("-", "").replace("_", "").isalnum():
        return held
    return secrets.token_urlsafe(32)


def browser_cookie(secret: str, *, same_site: str = "Lax") -> str:
    """``Set-Cookie`` for the binding secret. Lax reaches the OIDC callback (a top-level
    GET from the IdP); SAML's POST binding needs ``None``."""
    return set_cookie(
        BROWSER_COOKIE,
        secret,
        max_age=int(REQUEST_TTL.total_seconds()),
        same_site=same_site,
        http_only=True,
    )


async def start(
    db: AsyncSession,
    services: Services,
    provider: SsoProvider,
    *,
    request_id: str,
    data: dict[str, Any],
    secret: str,
    ttl: timedelta = REQUEST_TTL,
) -> SsoRequest:
    """Record a request in flight. ``request_id`` as the protocol names it (the state's
    hash is taken here, so the state itself is never stored)."""
    now = services.clock.now()
    row = SsoRequest(
        tenant_id=provider.tenant_id,
        provider_id=provider.id,
        request_id=_hash(request_id),
        browser_hash=_hash(secret),
        expires_at=now + ttl,
        created_at=now,
    )
    row.data = json.dumps(data, separators=(",", ":"))
    db.add(row)
    await db.flush()
    return row


async def consume(
    db: AsyncSession,
    services: Services,
    provider: SsoProvider,
    *,
    request_id: str | None,
    secret: str | None,
) -> dict[str, Any]:
    """The data of a live request, spent now; SsoRefused (one answer for unknown, spent,
    expired and another browser's) otherwise."""
    if not request_id or not secret:
        raise SsoRefused(STALE, reason="state")
    now = services.clock.now()
    row = (
        await db.execute(
            select(SsoRequest).where(
                SsoRequest.provider_id == provider.id,
                SsoRequest.request_id == _hash(request_id),
            )
        )
    ).scalar_one_or_none()
    if (
        row is None
        or row.used_at is not None
        or row.expires_at <= now
        or not hmac.compare_digest(row.browser_hash, _hash(secret))
    ):
        raise SsoRefused(STALE, reason="state")
    spent = await db.execute(
        update(SsoRequest)
        .where(SsoRequest.id == row.id, SsoRequest.used_at.is_(None))
        .values(used_at=now)
        # The row is loaded: no in-session sync (it would refresh an encrypted field
        # outside a load).
        .execution_options(synchronize_session=False)
    )
    if spent.rowcount != 1:  # a racing callback spent it first
        raise SsoRefused(STALE, reason="state")
    # Spent for good even when the sign-in fails and the request's transaction rolls back:
    # a refused callback must not be replayable.
    request_row = row.id

    async def spend_for_good(session: AsyncSession) -> None:
        await session.execute(
            update(SsoRequest)
            .where(SsoRequest.id == request_row, SsoRequest.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )

    await services.db.after_transaction(spend_for_good)
    return json.loads(row.data or "{}")


async def remember_assertion(
    db: AsyncSession, provider: SsoProvider, assertion_id: str, expires_at: datetime
) -> None:
    """Note an accepted assertion (or token) id until ``expires_at``; SsoRefused when it was
    seen before (a replay)."""
    try:
        async with db.begin_nested():
            db.add(
                SsoSeenAssertion(
                    tenant_id=provider.tenant_id,
                    provider_id=provider.id,
                    assertion_id=assertion_id[:255],
                    expires_at=expires_at,
                )
            )
            await db.flush()
    except IntegrityError:
        raise SsoRefused(
            "This answer of the identity provider was already used.", reason="replay"
        ) from None


async def sweep(db: AsyncSession, now: datetime) -> int:
    """Forget requests and seen assertions that can no longer be used (a periodic job)."""
    gone = await db.execute(delete(SsoRequest).where(SsoRequest.expires_at <= now))
    seen = await db.execute(delete(SsoSeenAssertion).where(SsoSeenAssertion.expires_at <= now))
    return int(gone.rowcount or 0) + int(seen.rowcount or 0)
