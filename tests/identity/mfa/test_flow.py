"""The sign-in's second step as a flow, whatever the factor (TOTP here): the challenge is
short-lived, single use, attempt-limited and bound to the password it followed; the session
records both methods; answers never say which part was wrong."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select, update

from kanvaro.identity.mfa.models import MfaChallenge
from kanvaro.identity.models import User, UserSession
from tests.identity.conftest import audit_entries
from tests.identity.mfa.test_totp import bearer, challenge, clock, enroll, second_step  # noqa: F401

pytestmark = pytest.mark.asyncio

ME = "/api/v1/auth/me"


async def test_the_session_records_both_methods(tenant, services, clock):  # noqa: F811
    m = await tenant.member("viewer")
    setup = await enroll(tenant, m, clock)
    r = await second_step(tenant, await challenge(tenant, m.email), clock.code(setup["secret"]))
    assert r.status_code == 200, r.text
    sid = services.tokens.verify(r.json()["refreshToken"], "refresh")["sid"]
    async with services.db.session(all_tenants=True) as db:
        row = await db.get(UserSession, uuid.UUID(sid))
    assert row.auth_methods == ["password", "totp"]
    [entry] = [
        e
        for e in await audit_entries(services, tenant.id, "auth:login:success")
        if str(e.resource_id) == sid
    ]
    assert entry.changes["methods"] == ["password", "totp"]


async def test_a_challenge_is_single_use(tenant, clock):  # noqa: F811
    m = await tenant.member("viewer")
    setup = await enroll(tenant, m, clock)
    session_id = await challenge(tenant, m.email)
    assert (await second_step(tenant, session_id, clock.code(setup["secret"]))).status_code == 200
    clock.advance(seconds=30)
    r = await second_step(tenant, session_id, clock.code(setup["secret"]))
    assert r.status_code == 401 and "sign in again" in r.json()["detail"]


async def test_an_expired_challenge_is_refused(tenant, clock):  # noqa: F811
    m = await tenant.member("viewer")
    setup = await enroll(tenant, m, clock)
    session_id = await challenge(tenant, m.email)
    clock.advance(minutes=5, seconds=1)
    r = await second_step(tenant, session_id, clock.code(setup["secret"]))
    assert r.status_code == 401 and "expired" in r.json()["detail"]


async def test_five_wrong_codes_burn_the_challenge_and_are_audited(
    tenant,
    services,
    clock,  # noqa: F811
):
    m = await tenant.member("viewer")
    setup = await enroll(tenant, m, clock)
    session_id = await challenge(tenant, m.email)
    wrong = "000000" if clock.code(setup["secret"]) != "000000" else "111111"
    for _ in range(5):
        r = await second_step(tenant, session_id, wrong)
        assert r.status_code == 401 and r.json()["detail"] == "The code is wrong or has expired."
    r = await second_step(tenant, session_id, clock.code(setup["secret"]))
    assert r.status_code == 401  # the right code comes too late: the challenge is spent
    async with services.db.session(all_tenants=True) as db:
        row = await db.get(MfaChallenge, uuid.UUID(session_id))
    assert row.attempts == 5 and row.used_at is None
    failures = await audit_entries(services, tenant.id, "auth:mfa:failure")
    assert len([e for e in failures if str(e.actor_id) == m.id]) == 5
    assert all(e.changes == {"method": "totp"} for e in failures if str(e.actor_id) == m.id)


async def test_a_password_change_voids_a_pending_challenge(tenant, services, clock):  # noqa: F811
    m = await tenant.member("viewer")
    setup = await enroll(tenant, m, clock)
    session_id = await challenge(tenant, m.email)
    async with services.db.session(all_tenants=True) as db:
        await db.execute(
            update(User)
            .where(User.id == uuid.UUID(m.id))
            .values(password_hash=services.hasher.hash("An0ther!Secret-pass"))
        )
    r = await second_step(tenant, session_id, clock.code(setup["secret"]))
    assert r.status_code == 401


async def test_an_unknown_challenge_and_a_bad_body_answer_alike_or_name_the_field(tenant):
    r = await second_step(tenant, str(uuid.uuid4()), "123456")
    assert r.status_code == 401 and "sign in again" in r.json()["detail"]
    r = await tenant.client.post(
        "/api/v1/auth/mfa/verify", json={"sessionId": "nope", "code": "123456", "method": "totp"}
    )
    assert r.status_code == 422 and "sessionId" in r.text
    r = await tenant.client.post(
        "/api/v1/auth/mfa/verify",
        json={"sessionId": str(uuid.uuid4()), "code": "123456", "method": "carrier-pigeon"},
    )
    assert r.status_code == 422 and "method" in r.text


async def test_the_login_answer_carries_no_token_and_the_challenge_no_code(
    tenant,
    services,
    clock,  # noqa: F811
):
    m = await tenant.member("viewer")
    await enroll(tenant, m, clock)
    answer = await tenant.login(m.email)
    assert set(answer) == {"requiresMFA", "sessionId", "methods"}
    assert "totp" in answer["methods"]
    async with services.db.session(all_tenants=True) as db:
        row = (
            await db.execute(
                select(MfaChallenge).where(MfaChallenge.id == uuid.UUID(answer["sessionId"]))
            )
        ).scalar_one()
    assert row.purpose == "sign_in" and row.code_hash is None
    assert (await tenant.client.get(ME, headers=bearer(answer["sessionId"]))).status_code == 401


async def test_adding_a_factor_needs_a_recent_sign_in(tenant, clock):  # noqa: F811
    m = await tenant.member("viewer")
    clock.advance(minutes=16)  # past the session policy's 15-minute reauth age
    for path in ("/api/v1/auth/mfa/setup", "/api/v1/auth/mfa/verify-setup"):
        body = {"method": "totp"} if path.endswith("/setup") else {"method": "totp", "code": "1234"}
        r = await tenant.client.post(path, headers=m.headers, json=body)
        assert r.status_code == 401 and r.json()["type"].endswith("/reauth-required"), r.text
    r = await tenant.client.post(
        "/api/v1/auth/reauth", headers=m.headers, json={"password": m.password}
    )
    assert r.status_code == 200, r.text
    r = await tenant.client.post(
        "/api/v1/auth/mfa/setup", headers=m.headers, json={"method": "totp"}
    )
    assert r.status_code == 200, r.text


async def test_spent_and_expired_challenges_are_deleted_a_day_later(tenant, services, clock):  # noqa: F811
    from kanvaro.identity.sessions import monitor

    m = await tenant.member("viewer")
    await enroll(tenant, m, clock)
    session_id = uuid.UUID(await challenge(tenant, m.email))
    assert await monitor.delete_spent_challenges(services) >= 0
    async with services.db.session(all_tenants=True) as db:
        assert await db.get(MfaChallenge, session_id) is not None  # still live: kept
    clock.advance(days=1, minutes=6)
    assert await monitor.delete_spent_challenges(services) >= 1
    async with services.db.session(all_tenants=True) as db:
        assert await db.get(MfaChallenge, session_id) is None
    assert "mfa.challenges.expire" in services.jobs.jobs  # shared: once across instances
