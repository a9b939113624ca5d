"""Refresh-token rotation as one guarded write: spent once under a row lock, refused for an
ended session without spending the token, audited on every rotation."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from kanvaro.db import utcnow
from kanvaro.identity.models import RefreshToken, User, UserSession
from kanvaro.security.tokens import REFRESH, token_hash
from kanvaro.tenancy.models import Tenant
from tests.identity.conftest import audit_entries

pytestmark = pytest.mark.asyncio

REFRESH_URL = "/api/v1/auth/refresh"
ME = "/api/v1/auth/me"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def refresh(tenant, token: str):
    return await tenant.client.post(REFRESH_URL, json={"refreshToken": token})


async def change(services, statement) -> None:
    async with services.db.session(all_tenants=True) as session:
        await session.execute(statement)


async def test_a_concurrent_double_refresh_gets_the_same_pair_and_keeps_the_session(tenant):
    """Two tabs refreshing with the same token at once: the token is spent once, and the
    second request (within the grace window, its successor unused) gets the very same pair
    instead of a revocation."""
    m = await tenant.member("viewer")
    token = m.tokens["refreshToken"]
    first, second = await asyncio.gather(refresh(tenant, token), refresh(tenant, token))
    assert [first.status_code, second.status_code] == [200, 200], (first.text, second.text)
    assert first.json()["refreshToken"] == second.json()["refreshToken"]
    assert first.json()["accessToken"] == second.json()["accessToken"]
    assert (
        await tenant.client.get(ME, headers=bearer(first.json()["accessToken"]))
    ).status_code == 200
    assert (await refresh(tenant, first.json()["refreshToken"])).status_code == 200


async def test_every_rotation_is_audited_against_its_session(tenant, services):
    m = await tenant.member("viewer")
    token = m.tokens["refreshToken"]
    session_id = services.tokens.verify(token, REFRESH)["sid"]
    for _ in range(3):
        r = await refresh(tenant, token)
        assert r.status_code == 200, r.text
        token = r.json()["refreshToken"]
    entries = [
        e
        for e in await audit_entries(services, tenant.id, "auth:token:refresh")
        if e.resource_id == session_id
    ]
    assert len(entries) == 3
    assert {(str(e.actor_id), e.resource_type, e.category) for e in entries} == {
        (m.id, "session", "authentication")
    }


async def test_a_disabled_account_cannot_refresh_and_its_token_stays_unspent(tenant, services):
    m = await tenant.member("viewer")
    user_id = uuid.UUID(m.id)
    await change(services, update(User).where(User.id == user_id).values(is_active=False))
    r = await refresh(tenant, m.tokens["refreshToken"])
    assert r.status_code == 401 and r.json()["detail"] == "Session ended."
    # The refusal rolled back with the request: re-enabled, the same token still rotates once.
    await change(services, update(User).where(User.id == user_id).values(is_active=True))
    again = await refresh(tenant, m.tokens["refreshToken"])
    assert again.status_code == 200, again.text


async def test_a_suspended_tenant_cannot_refresh(tenant, services):
    m = await tenant.member("viewer")
    tenant_id = uuid.UUID(tenant.id)
    await change(services, update(Tenant).where(Tenant.id == tenant_id).values(status="suspended"))
    try:
        assert (await refresh(tenant, m.tokens["refreshToken"])).status_code == 401
    finally:
        await change(services, update(Tenant).where(Tenant.id == tenant_id).values(status="active"))


async def test_an_expired_or_revoked_session_cannot_refresh(tenant, services):
    expired, revoked = await tenant.member("viewer"), await tenant.member("viewer")
    for member, values in (
        # Past the policy's absolute timeout (8 h by default), whatever expires_at says.
        (expired, {"created_at": utcnow() - timedelta(hours=8, seconds=1)}),
        (revoked, {"is_active": False}),
    ):
        sid = uuid.UUID(services.tokens.verify(member.tokens["refreshToken"], REFRESH)["sid"])
        await change(services, update(UserSession).where(UserSession.id == sid).values(**values))
        r = await refresh(tenant, member.tokens["refreshToken"])
        assert r.status_code == 401 and r.json()["detail"] == "Session ended."


async def test_a_signed_token_that_was_never_issued_is_refused_without_ending_the_session(
    tenant, services
):
    """A token with our signature but a jti the database does not hold (a forgery with a
    stolen key, or a row deleted) is invalid, not a replay: the session lives on."""
    m = await tenant.member("viewer")
    claims = services.tokens.verify(m.tokens["refreshToken"], REFRESH)
    forged, _ = services.tokens.issue(
        REFRESH, {"sub": claims["sub"], "sid": claims["sid"], "tid": claims["tid"]}
    )
    r = await refresh(tenant, forged)
    assert r.status_code == 401 and r.json()["detail"] == "Invalid refresh token."
    assert (await refresh(tenant, m.tokens["refreshToken"])).status_code == 200


async def test_a_rotation_stores_the_next_token_by_its_hash_only(tenant, services):
    m = await tenant.member("viewer")
    r = await refresh(tenant, m.tokens["refreshToken"])
    assert r.status_code == 200
    issued = r.json()["refreshToken"]
    claims = services.tokens.verify(issued, REFRESH)
    async with services.db.session(all_tenants=True) as session:
        stored = (
            await session.execute(select(RefreshToken).where(RefreshToken.jti == claims["jti"]))
        ).scalar_one()
        spent = (
            await session.execute(
                select(RefreshToken).where(
                    RefreshToken.session_id == stored.session_id, RefreshToken.used_at.is_not(None)
                )
            )
        ).scalar_one()
    assert str(stored.session_id) == claims["sid"] and str(stored.tenant_id) == tenant.id
    assert stored.used_at is None and issued not in (stored.token_hash, stored.jti)
    # Never beyond the session's absolute end (8 h after sign-in by default).
    assert stored.expires_at - stored.issued_at <= timedelta(hours=8)
    assert stored.generation == spent.generation + 1
    assert spent.jti == services.tokens.verify(m.tokens["refreshToken"], REFRESH)["jti"]


async def test_only_the_newest_token_of_a_session_rotates(tenant, services):
    """The session holds the hash of its newest refresh token: an unspent token it no longer
    holds is refused and stays unspent (on both databases)."""
    m = await tenant.member("viewer")
    sid = uuid.UUID(services.tokens.verify(m.tokens["refreshToken"], REFRESH)["sid"])
    await change(
        services,
        update(UserSession).where(UserSession.id == sid).values(refresh_token_hash="0" * 64),
    )
    r = await refresh(tenant, m.tokens["refreshToken"])
    assert r.status_code == 401 and r.json()["detail"] == "Session ended."
    async with services.db.session(all_tenants=True) as session:
        used = (
            await session.execute(
                select(RefreshToken.used_at).where(RefreshToken.session_id == sid)
            )
        ).scalar_one()
    assert used is None


async def test_a_session_from_before_its_token_hash_column_still_rotates(tenant, services):
    """Sessions opened before migration 0009 hold no refresh-token hash: their token still
    rotates once, and the session then holds the new one."""
    m = await tenant.member("viewer")
    sid = uuid.UUID(services.tokens.verify(m.tokens["refreshToken"], REFRESH)["sid"])
    await change(
        services, update(UserSession).where(UserSession.id == sid).values(refresh_token_hash=None)
    )
    r = await refresh(tenant, m.tokens["refreshToken"])
    assert r.status_code == 200, r.text
    async with services.db.session(all_tenants=True) as session:
        held = await session.scalar(
            select(UserSession.refresh_token_hash).where(UserSession.id == sid)
        )
    assert held == token_hash(r.json()["refreshToken"])
