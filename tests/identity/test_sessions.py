"""Refresh-token rotation with reuse detection, server-side logout, password change."""

from __future__ import annotations

import pytest

from tests.identity.conftest import audit_entries

pytestmark = pytest.mark.asyncio

ME = "/api/v1/auth/me"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_refresh_rotates_and_reuse_revokes_the_whole_session(tenant, services):
    c = tenant.client
    m = await tenant.member("team_member")
    first = m.tokens
    r = await c.post("/api/v1/auth/refresh", json={"refreshToken": first["refreshToken"]})
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refreshToken"] != first["refreshToken"]
    assert second["accessToken"] != first["accessToken"]
    assert (await c.get(ME, headers=bearer(second["accessToken"]))).status_code == 200

    # The legitimate client rotates again: the first token's successor is now spent too.
    r = await c.post("/api/v1/auth/refresh", json={"refreshToken": second["refreshToken"]})
    assert r.status_code == 200, r.text
    second = r.json()
    # The spent refresh token comes back: stolen or replayed. The family ends for everyone.
    reuse = await c.post("/api/v1/auth/refresh", json={"refreshToken": first["refreshToken"]})
    assert reuse.status_code == 401
    assert reuse.headers["content-type"].startswith("application/problem+json")
    assert (await c.get(ME, headers=bearer(second["accessToken"]))).status_code == 401
    assert (await c.get(ME, headers=bearer(first["accessToken"]))).status_code == 401
    after = await c.post("/api/v1/auth/refresh", json={"refreshToken": second["refreshToken"]})
    assert after.status_code == 401
    reuses = await audit_entries(services, tenant.id, "auth:token:reuse")
    assert [str(e.actor_id) for e in reuses] == [m.id]


async def test_refresh_token_is_not_an_access_token_and_vice_versa(tenant):
    c = tenant.client
    m = await tenant.member("viewer")
    assert (await c.get(ME, headers=bearer(m.tokens["refreshToken"]))).status_code == 401
    r = await c.post("/api/v1/auth/refresh", json={"refreshToken": m.tokens["accessToken"]})
    assert r.status_code == 401


async def test_logout_revokes_the_session_server_side(tenant, services):
    c = tenant.client
    m = await tenant.member("viewer")
    other = await tenant.login(m.email, m.password)  # a second device
    h = m.headers
    assert (await c.post("/api/v1/auth/logout", headers=h)).status_code == 204
    # The access token has not expired, but its session is over.
    assert (await c.get(ME, headers=h)).status_code == 401
    r = await c.post("/api/v1/auth/refresh", json={"refreshToken": m.tokens["refreshToken"]})
    assert r.status_code == 401
    # Only that session: the other device stays signed in.
    assert (await c.get(ME, headers=bearer(other["accessToken"]))).status_code == 200
    assert (await audit_entries(services, tenant.id, "auth:session:logout"))[
        -1
    ].actor_id is not None


async def test_password_change_revokes_the_other_sessions(tenant):
    c = tenant.client
    m = await tenant.member("team_member")
    other = await tenant.login(m.email, m.password)
    new = "An0ther!Strong-Secret"
    wrong = await c.post(
        "/api/v1/auth/password",
        headers=m.headers,
        json={"currentPassword": "nope", "newPassword": new},
    )
    assert wrong.status_code == 400 and wrong.json()["errors"][0]["field"] == "currentPassword"
    weak = await c.post(
        "/api/v1/auth/password",
        headers=m.headers,
        json={"currentPassword": m.password, "newPassword": "Qwerty2024!"},
    )
    assert weak.status_code == 422 and weak.json()["errors"][0]["field"] == "newPassword"
    r = await c.post(
        "/api/v1/auth/password",
        headers=m.headers,
        json={"currentPassword": m.password, "newPassword": new},
    )
    assert r.status_code == 204, r.text
    assert (await c.get(ME, headers=m.headers)).status_code == 200
    assert (await c.get(ME, headers=bearer(other["accessToken"]))).status_code == 401
    old = await c.post(
        "/api/v1/auth/login", json={"email": m.email, "password": m.password, "tenant": tenant.slug}
    )
    assert old.status_code == 401
    assert (
        await c.post(
            "/api/v1/auth/login", json={"email": m.email, "password": new, "tenant": tenant.slug}
        )
    ).status_code == 200


async def test_guessing_the_current_password_is_throttled_and_audited(tenant, services):
    from sqlalchemy import func, select

    from kanvaro.audit.models import AuditLog

    m = await tenant.member("viewer")
    limit = services.settings.login_max_failures_per_account
    url = "/api/v1/auth/password"
    for i in range(limit):
        r = await tenant.client.post(
            url,
            headers=m.headers,
            json={"currentPassword": f"Guess!{i}x", "newPassword": "N3w!Secret-Phrase"},
        )
        assert r.status_code == 400
    r = await tenant.client.post(
        url,
        headers=m.headers,
        json={"currentPassword": m.password, "newPassword": "N3w!Secret-Phrase"},
    )
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    await services.audit.drain()  # entries are sequenced after commit
    async with services.db.session(all_tenants=True) as session:
        count = await session.scalar(
            select(func.count())
            .select_from(AuditLog)
            .where(
                AuditLog.action == "auth:password:reauth_failure",
                AuditLog.actor_id == __import__("uuid").UUID(m.id),
            )
        )
    assert count == limit
