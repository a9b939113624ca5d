"""The tenant session policy: its API, and what it does to existing sessions (idle and
absolute timeouts, refresh rotation, single device, step-up), with an injected clock."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from kanvaro.identity.models import RefreshToken, UserSession
from kanvaro.identity.sessions import monitor
from kanvaro.security.tokens import REFRESH
from tests.identity.conftest import audit_entries
from tests.identity.sessions.conftest import POLICY, set_policy

pytestmark = pytest.mark.asyncio

ME = "/api/v1/auth/me"
REFRESH_URL = "/api/v1/auth/refresh"
PASSWORD_POLICY = "/api/v1/tenant/settings/password-policy"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def stored_session(services, session_id: str) -> UserSession:
    async with services.db.session(all_tenants=True) as db:
        row = await db.get(UserSession, uuid.UUID(session_id))
        assert row is not None
        return row


def sid_of(services, tokens) -> str:
    return services.tokens.verify(tokens["refreshToken"], REFRESH)["sid"]


# -- the API ------------------------------------------------------------------------------------


async def test_defaults_are_the_seed_defaults(tenant):
    r = await tenant.client.get(POLICY, headers=tenant.admin.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["idleTimeoutMinutes"] == 30 and body["absoluteTimeoutHours"] == 8
    assert body["refreshTokenRotation"] is True and body["singleDeviceOnly"] is False
    assert body["requireReauthPermissions"] == [] and body["refreshGraceSeconds"] == 10


async def test_an_admin_changes_it_audited_and_a_member_may_not(tenant, services):
    viewer = await tenant.member("viewer")
    r = await tenant.client.patch(POLICY, headers=viewer.headers, json={"idleTimeoutMinutes": 5})
    assert r.status_code == 403
    body = await set_policy(tenant, idleTimeoutMinutes=5, requireReauthPermissions=["user:manage"])
    assert body["idleTimeoutMinutes"] == 5 and body["requireReauthPermissions"] == ["user:manage"]
    assert body["absoluteTimeoutHours"] == 8  # untouched fields keep their value
    r = await tenant.client.get(POLICY, headers=viewer.headers)
    assert r.json()["idleTimeoutMinutes"] == 5
    [entry] = await audit_entries(services, tenant.id, "api:session_policy:update")
    assert str(entry.actor_id) == tenant.admin.id
    assert "idleTimeoutMinutes" in str(entry.changes) and "30" in str(entry.changes)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"idleTimeoutMinutes": 0}, "idleTimeoutMinutes"),
        ({"idleTimeoutMinutes": None}, "idleTimeoutMinutes"),
        ({"absoluteTimeoutHours": "8"}, "absoluteTimeoutHours"),
        ({"refreshGraceSeconds": 61}, "refreshGraceSeconds"),
        ({"requireReauthPermissions": ["no:such"]}, "requireReauthPermissions"),
        ({"singleDeviceOnly": "yes"}, "singleDeviceOnly"),
        ({"absoluteTimeoutHours": 1, "idleTimeoutMinutes": 61}, "idleTimeoutMinutes"),
        ({"riskDenyAt": 10}, "riskDenyAt"),
        ({"sessionTimeout": 5}, "sessionTimeout"),
    ],
)
async def test_bad_values_are_422_naming_the_field(tenant, body, field):
    r = await tenant.client.patch(POLICY, headers=tenant.admin.headers, json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert field in r.text
    assert (await tenant.client.get(POLICY, headers=tenant.admin.headers)).json()[
        "idleTimeoutMinutes"
    ] == 30  # nothing changed


# -- idle timeout -------------------------------------------------------------------------------


async def test_an_idle_session_dies_on_time_and_use_keeps_it_alive(tenant, services, clock):
    await set_policy(tenant, idleTimeoutMinutes=5)
    m = await tenant.member("viewer")
    for _ in range(3):  # used every 4 minutes: stays alive past the 5-minute timeout
        clock.advance(minutes=4)
        assert (await tenant.client.get(ME, headers=m.headers)).status_code == 200
    clock.advance(minutes=5, seconds=1)
    r = await tenant.client.get(ME, headers=m.headers)
    assert r.status_code == 401 and "inactivity" in r.json()["detail"]
    row = await stored_session(services, sid_of(services, m.tokens))
    assert row.is_active is False and row.revoked_reason == "idle"
    r = await tenant.client.post(REFRESH_URL, json={"refreshToken": m.tokens["refreshToken"]})
    assert r.status_code == 401
    [entry] = [
        e
        for e in await audit_entries(services, tenant.id, "auth:session:expire")
        if str(e.resource_id) == str(row.id)
    ]
    assert entry.changes == {"reason": "idle"}


async def test_last_activity_is_written_once_per_granularity_not_per_request(
    tenant, services, clock
):
    await set_policy(tenant, idleTimeoutMinutes=10)  # granularity: 60 s
    m = await tenant.member("viewer")
    sid = sid_of(services, m.tokens)
    clock.advance(seconds=90)
    assert (await tenant.client.get(ME, headers=m.headers)).status_code == 200
    await services.activity.flush()
    written = (await stored_session(services, sid)).last_activity_at
    assert abs((written - clock.now()).total_seconds()) < 5
    for _ in range(5):  # within the minute: no further write
        clock.advance(seconds=5)
        assert (await tenant.client.get(ME, headers=m.headers)).status_code == 200
    await services.activity.flush()
    assert (await stored_session(services, sid)).last_activity_at == written
    clock.advance(seconds=60)
    assert (await tenant.client.get(ME, headers=m.headers)).status_code == 200
    await services.activity.flush()
    assert (await stored_session(services, sid)).last_activity_at > written


async def test_the_monitor_ends_idle_and_expired_sessions_once(tenant, services, clock):
    await set_policy(tenant, idleTimeoutMinutes=10)
    idle, busy = await tenant.member("viewer"), await tenant.member("viewer")
    for _ in range(3):
        clock.advance(minutes=4)
        assert (await tenant.client.get(ME, headers=busy.headers)).status_code == 200
    await services.activity.flush()
    ended = await monitor.expire_sessions(services, tenants={uuid.UUID(tenant.id)})
    assert ended >= 2  # the idle member's and the admin's sign-ins
    assert (await stored_session(services, sid_of(services, idle.tokens))).revoked_reason == "idle"
    assert (await stored_session(services, sid_of(services, busy.tokens))).is_active is True
    assert await monitor.expire_sessions(services, tenants={uuid.UUID(tenant.id)}) == 0
    entries = await audit_entries(services, tenant.id, "auth:session:expire")
    swept = [e for e in entries if e.changes.get("count")]
    assert len(swept) == 1 and sid_of(services, idle.tokens) in swept[0].changes["sessions"]
    assert "sessions.expire" in services.jobs.jobs  # a shared job: once across instances


# -- absolute timeout ---------------------------------------------------------------------------


async def test_a_policy_change_shortens_existing_sessions(tenant, services, clock):
    m = await tenant.member("viewer")
    for _ in range(6):  # two hours of use (by both) under the default 8-hour policy
        clock.advance(minutes=20)
        for who in (m, tenant.admin):
            assert (await tenant.client.get(ME, headers=who.headers)).status_code == 200
    # The admin's own session is two hours old as well: the change is its last request.
    await set_policy(tenant, absoluteTimeoutHours=1, idleTimeoutMinutes=30)
    r = await tenant.client.get(ME, headers=m.headers)
    assert r.status_code == 401 and "maximum length" in r.json()["detail"]
    row = await stored_session(services, sid_of(services, m.tokens))
    assert row.revoked_reason == "expired"


async def test_rotation_never_extends_the_absolute_timeout(tenant, services):
    await set_policy(tenant, absoluteTimeoutHours=1)
    m = await tenant.member("viewer")
    first = services.tokens.verify(m.tokens["refreshToken"], REFRESH)
    assert first["exp"] <= first["sst"] + 3600
    r = await tenant.client.post(REFRESH_URL, json={"refreshToken": m.tokens["refreshToken"]})
    assert r.status_code == 200, r.text
    second = services.tokens.verify(r.json()["refreshToken"], REFRESH)
    assert second["sst"] == first["sst"] and second["exp"] <= first["sst"] + 3600
    access = services.tokens.verify(r.json()["accessToken"], "access")
    assert access["exp"] <= first["sst"] + 3600


# -- refresh rotation ---------------------------------------------------------------------------


async def test_a_stolen_token_used_after_the_grace_window_kills_the_family(tenant, services, clock):
    m = await tenant.member("viewer")
    stolen = m.tokens["refreshToken"]
    r = await tenant.client.post(REFRESH_URL, json={"refreshToken": stolen})
    assert r.status_code == 200
    fresh = r.json()
    clock.advance(seconds=11)  # past the default 10-second grace window
    r = await tenant.client.post(REFRESH_URL, json={"refreshToken": stolen})
    assert r.status_code == 401 and "reuse" in r.json()["detail"]
    assert (await tenant.client.get(ME, headers=bearer(fresh["accessToken"]))).status_code == 401
    r = await tenant.client.post(REFRESH_URL, json={"refreshToken": fresh["refreshToken"]})
    assert r.status_code == 401
    assert await audit_entries(services, tenant.id, "auth:token:reuse")


async def test_within_the_grace_window_the_same_pair_comes_back_once_per_successor(
    tenant, services
):
    m = await tenant.member("viewer")
    old = m.tokens["refreshToken"]
    a = (await tenant.client.post(REFRESH_URL, json={"refreshToken": old})).json()
    b = (await tenant.client.post(REFRESH_URL, json={"refreshToken": old})).json()
    assert a == b  # the second tab gets the very same pair
    async with services.db.session(all_tenants=True) as db:
        rows = (
            await db.execute(
                select(RefreshToken)
                .where(RefreshToken.session_id == uuid.UUID(sid_of(services, m.tokens)))
                .order_by(RefreshToken.generation)
            )
        ).scalars()
        assert [t.generation for t in rows] == [0, 1]  # one rotation, not two
    # Once the successor itself is spent, the old token is a replay, grace or not.
    c = await tenant.client.post(REFRESH_URL, json={"refreshToken": a["refreshToken"]})
    assert c.status_code == 200
    r = await tenant.client.post(REFRESH_URL, json={"refreshToken": old})
    assert r.status_code == 401
    assert (await tenant.client.get(ME, headers=bearer(c.json()["accessToken"]))).status_code == 401


async def test_a_restart_changes_nothing(tenant, services):
    """The grace decision comes from the database: a fresh process (its own services, empty
    caches) answers a concurrent refresh exactly as the first would have."""
    from kanvaro.services import Services

    m = await tenant.member("viewer")
    old = m.tokens["refreshToken"]
    a = (await tenant.client.post(REFRESH_URL, json={"refreshToken": old})).json()
    restarted = Services.build(services.settings)
    await restarted.startup()
    await restarted.jobs.stop()
    try:
        from kanvaro.audit.service import AuditContext
        from kanvaro.identity import auth

        async with restarted.db.collecting_deferred(), restarted.db.session(all_tenants=True) as db:
            pair = await auth.refresh(
                restarted, db, refresh_token=old, context=AuditContext(None, None, None)
            )
        assert pair.refresh_token == a["refreshToken"] and pair.access_token == a["accessToken"]
    finally:
        await restarted.shutdown()


async def test_rotation_switched_off_keeps_the_refresh_token(tenant, services):
    await set_policy(tenant, refreshTokenRotation=False)
    m = await tenant.member("viewer")
    token = m.tokens["refreshToken"]
    for _ in range(2):
        r = await tenant.client.post(REFRESH_URL, json={"refreshToken": token})
        assert r.status_code == 200, r.text
        assert r.json()["refreshToken"] == token
        assert (
            await tenant.client.get(ME, headers=bearer(r.json()["accessToken"]))
        ).status_code == 200
    await set_policy(tenant, refreshTokenRotation=True)
    r = await tenant.client.post(REFRESH_URL, json={"refreshToken": token})
    assert r.status_code == 200 and r.json()["refreshToken"] != token


async def test_the_session_keeps_hashes_of_its_newest_tokens_only(tenant, services):
    import hashlib

    m = await tenant.member("viewer")
    row = await stored_session(services, sid_of(services, m.tokens))
    digest = lambda t: hashlib.sha256(t.encode()).hexdigest()  # noqa: E731
    assert row.access_token_hash == digest(m.tokens["accessToken"])
    assert row.refresh_token_hash == digest(m.tokens["refreshToken"])
    r = await tenant.client.post(REFRESH_URL, json={"refreshToken": m.tokens["refreshToken"]})
    row = await stored_session(services, sid_of(services, m.tokens))
    assert row.refresh_token_hash == digest(r.json()["refreshToken"])
    values = {str(v) for v in vars(row).values()}
    assert not values & {m.tokens["accessToken"], m.tokens["refreshToken"]}


# -- single device ------------------------------------------------------------------------------


async def test_single_device_only_ends_the_other_sessions_and_says_so(tenant, services):
    await set_policy(tenant, singleDeviceOnly=True)
    m = await tenant.member("viewer")
    second = await tenant.login(m.email, m.password)
    r = await tenant.client.get(ME, headers=m.headers)
    assert r.status_code == 401 and "another device" in r.json()["detail"]
    assert (await tenant.client.get(ME, headers=bearer(second["accessToken"]))).status_code == 200
    r = await tenant.client.post(REFRESH_URL, json={"refreshToken": m.tokens["refreshToken"]})
    assert r.status_code == 401
    entries = await audit_entries(services, tenant.id, "auth:session:revoke")
    assert any(
        e.changes.get("reason") == "single_device" and str(e.actor_id) == m.id for e in entries
    )


# -- step-up ------------------------------------------------------------------------------------


async def test_a_sensitive_permission_needs_a_recent_authentication(tenant, services, clock):
    await set_policy(tenant, requireReauthPermissions=["settings:update"], reauthMaxAgeMinutes=5)
    admin = tenant.admin
    change = {"minLength": 14}
    r = await tenant.client.patch(PASSWORD_POLICY, headers=admin.headers, json=change)
    assert r.status_code == 200, r.text  # signed in a moment ago
    clock.advance(minutes=6)
    r = await tenant.client.patch(PASSWORD_POLICY, headers=admin.headers, json=change)
    assert r.status_code == 401, r.text
    assert r.json()["type"].endswith("/reauth-required")
    assert r.json()["permission"] == "settings:update"
    # Reading needs no step-up (settings:update is not needed there).
    assert (await tenant.client.get(PASSWORD_POLICY, headers=admin.headers)).status_code == 200
    r = await tenant.client.post(
        "/api/v1/auth/reauth", headers=admin.headers, json={"password": "wrong-password!"}
    )
    assert r.status_code == 400 and "password" in r.text
    r = await tenant.client.post(
        "/api/v1/auth/reauth", headers=admin.headers, json={"password": admin.password}
    )
    assert r.status_code == 200, r.text
    assert "authenticatedAt" in r.json()
    r = await tenant.client.patch(PASSWORD_POLICY, headers=admin.headers, json=change)
    assert r.status_code == 200, r.text
    assert await audit_entries(services, tenant.id, "auth:reauth:success")
    assert await audit_entries(services, tenant.id, "auth:reauth:failure")


async def test_reauth_is_throttled(tenant):
    m = await tenant.member("viewer")
    statuses = [
        (
            await tenant.client.post(
                "/api/v1/auth/reauth", headers=m.headers, json={"password": "not-it-at-all"}
            )
        ).status_code
        for _ in range(12)
    ]
    assert statuses[0] == 400 and statuses[-1] == 429
    r = await tenant.client.post("/api/v1/auth/reauth", headers=m.headers, json={"password": ""})
    assert r.status_code == 422 and "password" in r.text


async def test_reauth_needs_a_session(tenant):
    r = await tenant.client.post("/api/v1/auth/reauth", json={"password": "x"})
    assert r.status_code == 401
