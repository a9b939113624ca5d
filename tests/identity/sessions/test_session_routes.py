"""``/api/v1/users/{userId}/sessions`` and who reaches whose (seed 004, issue 10 point 7).

Everyone sees and ends his own sessions; ``user:manage`` those of his tenant's people; anyone
else gets 404, as for a user that does not exist. The role walk at the end covers every
``own_or`` route of the app, so a new one cannot slip past it.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from kanvaro.identity.models import RefreshToken, UserSession
from kanvaro.security.permissions import ROLE_PERMISSIONS, TENANT_ROLES, BuiltinRole
from kanvaro.security.tokens import REFRESH
from tests.conftest import PASSWORD, unique_email
from tests.identity.conftest import audit_entries
from tests.identity.sessions.conftest import set_policy
from tests.test_routes_declare_permissions import app_routes

pytestmark = pytest.mark.asyncio

ME = "/api/v1/auth/me"
REFRESH_URL = "/api/v1/auth/refresh"
PROBLEM = "application/problem+json"
SESSION_FIELDS = {
    "id", "deviceId", "deviceInfo", "ipAddress", "location", "riskScore", "riskReasons",
    "authMethods", "createdAt", "lastActivityAt", "expiresAt", "authenticatedAt", "isActive",
    "revokedAt", "revokedReason", "current",
}  # fmt: skip


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sid_of(services: Any, tokens: dict[str, Any]) -> str:
    return services.tokens.verify(tokens["refreshToken"], REFRESH)["sid"]


def sessions_url(user_id: str, session_id: str | None = None) -> str:
    base = f"/api/v1/users/{user_id}/sessions"
    return f"{base}/{session_id}" if session_id else base


async def secrets_of(services: Any, session_ids: list[str]) -> set[str]:
    """Every hash the database keeps for these sessions' tokens: none may reach a client."""
    ids = [uuid.UUID(s) for s in session_ids]
    async with services.db.session(all_tenants=True) as db:
        rows = await db.execute(
            select(UserSession.access_token_hash, UserSession.refresh_token_hash).where(
                UserSession.id.in_(ids)
            )
        )
        found = {h for row in rows for h in row if h}
        tokens = await db.execute(
            select(RefreshToken.token_hash).where(RefreshToken.session_id.in_(ids))
        )
        found |= {h for (h,) in tokens if h}
    return found


# --- the list --------------------------------------------------------------------------------


async def test_the_list_shows_the_callers_session_as_current_and_no_secret(tenant, services):
    c = tenant.client
    m = await tenant.member("viewer")
    laptop = await tenant.login(m.email)
    r = await c.get(sessions_url(m.id), headers=m.headers)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert {s["id"] for s in items} == {sid_of(services, m.tokens), sid_of(services, laptop)}
    [mine] = [s for s in items if s["current"]]
    assert mine["id"] == sid_of(services, m.tokens)
    for s in items:
        assert set(s) == SESSION_FIELDS
        assert s["isActive"] is True and s["revokedAt"] is None
        assert s["authMethods"] == ["password"] and s["ipAddress"] == "203.0.113.7"
        assert len(s["deviceId"]) == 64 and s["deviceInfo"]["ip"] == "203.0.113.7"
    # From the other session, that one is current and this one is not.
    r = await c.get(sessions_url(m.id), headers=bearer(laptop["accessToken"]))
    assert [s["id"] for s in r.json()["items"] if s["current"]] == [sid_of(services, laptop)]

    # Never a token, a token's hash or the device secret.
    text = r.text
    secrets = await secrets_of(services, [s["id"] for s in items])
    secrets |= {m.tokens["accessToken"], m.tokens["refreshToken"], laptop["accessToken"]}
    secrets |= {laptop["refreshToken"], laptop.get("deviceToken") or "-no-token-"}
    assert secrets and not [s for s in secrets if s in text]


async def test_expires_at_follows_the_policy_in_force(tenant, services):
    m = await tenant.member("viewer")
    r = await tenant.client.get(sessions_url(m.id), headers=m.headers)
    [s] = r.json()["items"]
    created = _instant(s["createdAt"])
    # The default policy: 8 h absolute, 30 min idle; the idle end comes first.
    assert _instant(s["expiresAt"]) - _instant(s["lastActivityAt"]) == timedelta(minutes=30)
    await set_policy(tenant, idleTimeoutMinutes=60, absoluteTimeoutHours=1)
    r = await tenant.client.get(sessions_url(m.id), headers=m.headers)
    [s] = r.json()["items"]
    assert _instant(s["expiresAt"]) == created + timedelta(hours=1)  # now the absolute one


def _instant(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_ended_sessions_show_with_include_ended_only(tenant, services):
    c = tenant.client
    m = await tenant.member("viewer")
    old = await tenant.login(m.email)
    old_id = sid_of(services, old)
    assert (await c.delete(sessions_url(m.id, old_id), headers=m.headers)).status_code == 204
    r = await c.get(sessions_url(m.id), headers=m.headers)
    assert [s["id"] for s in r.json()["items"]] == [sid_of(services, m.tokens)]
    r = await c.get(sessions_url(m.id), headers=m.headers, params={"include": "ended"})
    ended = {s["id"]: s for s in r.json()["items"]}[old_id]
    assert ended["isActive"] is False and ended["revokedReason"] == "revoked"
    assert ended["revokedAt"] is not None and ended["current"] is False
    r = await c.get(sessions_url(m.id), headers=m.headers, params={"include": "everything"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "include"


async def test_the_list_pages_with_a_cursor(tenant, services):
    m = await tenant.member("viewer")
    for _ in range(2):
        await tenant.login(m.email)
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        r = await tenant.client.get(sessions_url(m.id), headers=m.headers, params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        seen += [s["id"] for s in page["items"]]
        if not page["nextCursor"]:
            break
        params["cursor"] = page["nextCursor"]
    assert len(seen) == len(set(seen)) == 3


# --- ending sessions -----------------------------------------------------------------------


async def test_revoking_a_session_ends_its_access_and_refresh_tokens(tenant, services):
    c = tenant.client
    m = await tenant.member("team_member")
    phone = await tenant.login(m.email)
    phone_id = sid_of(services, phone)
    r = await c.delete(sessions_url(m.id, phone_id), headers=m.headers)
    assert r.status_code == 204, r.text
    # Its access token is refused on the very next request, its refresh token too.
    r = await c.get(ME, headers=bearer(phone["accessToken"]))
    assert r.status_code == 401 and r.headers["content-type"].startswith(PROBLEM)
    r = await c.post(REFRESH_URL, json={"refreshToken": phone["refreshToken"]})
    assert r.status_code == 401
    assert (await c.get(ME, headers=m.headers)).status_code == 200  # the caller's stays
    # Again: nothing left to end, nothing new audited.
    assert (await c.delete(sessions_url(m.id, phone_id), headers=m.headers)).status_code == 204
    entries = await audit_entries(services, tenant.id, "auth:session:revoke")
    mine = [e for e in entries if e.resource_id == phone_id]
    assert len(mine) == 1 and str(mine[0].actor_id) == m.id
    assert mine[0].changes["reason"] == "revoked"
    # A session that is not this user's is unknown.
    other = await tenant.member("viewer")
    r = await c.delete(sessions_url(m.id, sid_of(services, other.tokens)), headers=m.headers)
    assert r.status_code == 404
    r = await c.delete(sessions_url(m.id, str(uuid.uuid4())), headers=m.headers)
    assert r.status_code == 404
    assert (await c.get(ME, headers=other.headers)).status_code == 200


async def test_log_out_everywhere_ends_every_session_the_callers_own_too(tenant, services):
    c = tenant.client
    m = await tenant.member("client")
    others = [await tenant.login(m.email) for _ in range(2)]
    bystander = await tenant.member("client")
    r = await c.delete(sessions_url(m.id), headers=m.headers)
    assert r.status_code == 204, r.text
    for tokens in (m.tokens, *others):
        assert (await c.get(ME, headers=bearer(tokens["accessToken"]))).status_code == 401
        r = await c.post(REFRESH_URL, json={"refreshToken": tokens["refreshToken"]})
        assert r.status_code == 401
    assert (await c.get(ME, headers=bystander.headers)).status_code == 200
    [entry] = [
        e
        for e in await audit_entries(services, tenant.id, "auth:session:revoke_all")
        if e.resource_id == m.id
    ]
    assert str(entry.actor_id) == m.id
    expected = sorted(sid_of(services, t) for t in (m.tokens, *others))
    assert entry.changes["sessions"] == expected


async def test_an_admin_with_user_manage_manages_a_members_sessions(tenant, services):
    c = tenant.client
    m = await tenant.member("project_manager")
    r = await c.get(sessions_url(m.id), headers=tenant.admin.headers)
    assert r.status_code == 200, r.text
    [s] = r.json()["items"]
    assert s["id"] == sid_of(services, m.tokens) and s["current"] is False
    r = await c.delete(sessions_url(m.id, s["id"]), headers=tenant.admin.headers)
    assert r.status_code == 204
    assert (await c.get(ME, headers=m.headers)).status_code == 401
    [entry] = [
        e
        for e in await audit_entries(services, tenant.id, "auth:session:revoke")
        if e.resource_id == s["id"]
    ]
    assert str(entry.actor_id) == tenant.admin.id and entry.changes["userId"] == m.id
    assert (await c.get(ME, headers=tenant.admin.headers)).status_code == 200


async def test_a_member_cannot_see_or_end_another_members_sessions(tenant, services):
    c = tenant.client
    nosy = await tenant.member("project_manager")  # team:read: he can see the person exists
    target = await tenant.member("team_member")
    sid = sid_of(services, target.tokens)
    for method, url in (
        ("GET", sessions_url(target.id)),
        ("DELETE", sessions_url(target.id, sid)),
        ("DELETE", sessions_url(target.id)),
    ):
        r = await c.request(method, url, headers=nosy.headers)
        assert r.status_code == 404, (method, url, r.text)
        assert r.headers["content-type"].startswith(PROBLEM)
    # The same answer as for nobody at all.
    r = await c.get(sessions_url(str(uuid.uuid4())), headers=nosy.headers)
    assert r.status_code == 404 and r.json()["detail"] == "No such user."
    assert (await c.get(ME, headers=target.headers)).status_code == 200
    denials = await audit_entries(services, tenant.id, "api:permission:denied")
    assert any(str(e.actor_id) == nosy.id for e in denials)


async def test_another_tenants_admin_gets_404(tenant, other_tenant, services):
    c = tenant.client
    m = await tenant.member("viewer")
    sid = sid_of(services, m.tokens)
    for method, url in (
        ("GET", sessions_url(m.id)),
        ("DELETE", sessions_url(m.id, sid)),
        ("DELETE", sessions_url(m.id)),
    ):
        r = await c.request(method, url, headers=other_tenant.admin.headers)
        assert r.status_code == 404, (method, url, r.text)
    assert (await c.get(ME, headers=m.headers)).status_code == 200


async def test_managing_someone_needs_a_role_at_least_as_strong(tenant, services):
    """No escalation: a custom role with user:manage cannot end an admin's sessions."""
    c = tenant.client
    r = await c.post(
        "/api/v1/roles",
        headers=tenant.admin.headers,
        json={
            "name": f"helpdesk-{uuid.uuid4().hex[:6]}",
            # A viewer's permissions and user:manage: enough for a viewer, not an admin.
            "permissions": [
                "user:manage",
                "project:read",
                "task:read",
                "team:read",
                "comment:read",
            ],
            "projectScoped": False,
        },
    )
    assert r.status_code == 201, r.text
    helpdesk = await tenant.member(r.json()["name"])
    viewer = await tenant.member("viewer")
    assert (await c.get(sessions_url(tenant.admin.id), headers=helpdesk.headers)).status_code == 200
    r = await c.delete(sessions_url(tenant.admin.id), headers=helpdesk.headers)
    assert r.status_code == 403, r.text
    assert (await c.get(ME, headers=tenant.admin.headers)).status_code == 200
    r = await c.delete(sessions_url(viewer.id), headers=helpdesk.headers)
    assert r.status_code == 204
    assert (await c.get(ME, headers=viewer.headers)).status_code == 401


async def test_user_manage_on_others_obeys_the_step_up_rule(tenant, services, clock):
    c = tenant.client
    m = await tenant.member("viewer")
    await set_policy(tenant, requireReauthPermissions=["user:manage"], reauthMaxAgeMinutes=5)
    clock.advance(minutes=6)
    # Keep both sessions alive across the jump: a request now counts as activity.
    r = await c.get(sessions_url(m.id), headers=tenant.admin.headers)
    assert r.status_code == 401 and r.json()["type"].endswith("reauth-required"), r.text
    # His own need no recent sign-in: ending one's sessions is never held back.
    assert (await c.get(sessions_url(m.id), headers=m.headers)).status_code == 200


# --- the super admin ---------------------------------------------------------------------


@pytest.fixture
async def super_admin(services, client) -> dict[str, Any]:
    from kanvaro.bootstrap import bootstrap

    email = unique_email("root")
    result = await bootstrap(
        services, tenant_name=None, email=email, password=PASSWORD, super_admin=True
    )
    r = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"id": result.user_id, "tokens": r.json()}


async def test_the_super_admin_sees_his_own_and_a_named_tenants(tenant, services, super_admin):
    c = tenant.client
    root = bearer(super_admin["tokens"]["accessToken"])
    r = await c.get(sessions_url(super_admin["id"]), headers=root)
    assert r.status_code == 200, r.text
    assert [s["current"] for s in r.json()["items"]] == [True]
    m = await tenant.member("viewer")
    # A tenant's people need the tenant named, as on /users.
    assert (await c.get(sessions_url(m.id), headers=root)).status_code == 400
    named = {**root, "X-Tenant-ID": tenant.id}
    r = await c.get(sessions_url(m.id), headers=named)
    assert r.status_code == 200 and len(r.json()["items"]) == 1
    assert (await c.delete(sessions_url(m.id), headers=named)).status_code == 204
    assert (await c.get(ME, headers=m.headers)).status_code == 401
    entries = await audit_entries(services, tenant.id, "auth:session:revoke_all")
    assert any(e.resource_id == m.id and str(e.actor_id) == super_admin["id"] for e in entries)


# --- path parameters -------------------------------------------------------------------------


async def test_path_parameters_are_validated_naming_the_field(tenant):
    c = tenant.client
    admin = tenant.admin
    for method, url, field in (
        ("GET", "/api/v1/users/not-a-uuid/sessions", "userId"),
        ("DELETE", f"/api/v1/users/{admin.id}/sessions/42", "sessionId"),
        ("DELETE", f"/api/v1/users/{admin.id}/devices/ABC", "deviceId"),
        ("POST", f"/api/v1/users/{admin.id}/devices/{'g' * 64}/trust", "deviceId"),
    ):
        r = await c.request(method, url, headers=admin.headers)
        assert r.status_code == 422, (url, r.text)
        assert r.headers["content-type"].startswith(PROBLEM)
        assert [e["field"] for e in r.json()["errors"]] == [field], r.text
    r = await c.get(sessions_url(admin.id), headers=admin.headers, params={"limit": 0})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "limit"


# --- every own_or route, every role ---------------------------------------------------------

# The own-or routes of sessions and devices (MFA's have their tests in tests/identity/mfa/).
OWN_OR = sorted(
    (
        info
        for info in app_routes()
        if info.access
        and info.kind == "own_or"
        and ("/sessions" in info.path or "/devices" in info.path)
    ),
    key=lambda i: i.label,
)
KNOWN = {
    "GET /api/v1/users/{user_id}/sessions",
    "DELETE /api/v1/users/{user_id}/sessions/{session_id}",
    "DELETE /api/v1/users/{user_id}/sessions",
    "GET /api/v1/users/{user_id}/devices",
    "POST /api/v1/users/{user_id}/devices/{device_id}/trust",
    "DELETE /api/v1/users/{user_id}/devices/{device_id}",
}


async def test_the_role_walk_knows_every_own_or_route():
    assert {info.label for info in OWN_OR} == KNOWN, "teach _calls() the new route"


async def _objects(tenant: Any, services: Any, member: Any) -> dict[str, str]:
    """A second session (and its device) of ``member``, to aim the writes at."""
    spare = await tenant.login(member.email)
    r = await tenant.client.get(sessions_url(member.id), headers=tenant.admin.headers)
    [row] = [s for s in r.json()["items"] if s["id"] == sid_of(services, spare)]
    return {"user_id": member.id, "session_id": row["id"], "device_id": row["deviceId"]}


def _calls(ids: dict[str, str]) -> list[tuple[str, str]]:
    """Every own_or route, filled with ``ids``; log out everywhere comes last."""
    user = f"/api/v1/users/{ids['user_id']}"
    return [
        ("GET", f"{user}/sessions"),
        ("GET", f"{user}/devices"),
        ("POST", f"{user}/devices/{ids['device_id']}/trust"),
        ("DELETE", f"{user}/sessions/{ids['session_id']}"),
        ("DELETE", f"{user}/devices/{ids['device_id']}"),
        ("DELETE", f"{user}/sessions"),
    ]


@pytest.mark.parametrize("role", [r.value for r in TENANT_ROLES])
async def test_every_role_manages_its_own(tenant, services, role):
    member = await tenant.member(role)
    for method, url in _calls(await _objects(tenant, services, member)):
        r = await tenant.client.request(method, url, headers=member.headers)
        assert r.status_code in (200, 204), (role, method, url, r.text)
    assert (await tenant.client.get(ME, headers=member.headers)).status_code == 401


@pytest.mark.parametrize("role", [r.value for r in TENANT_ROLES])
async def test_another_users_are_reached_with_user_manage_only(tenant, services, role):
    caller = await tenant.member(role)
    target = await tenant.member("viewer")
    manages = "user:manage" in {str(p) for p in ROLE_PERMISSIONS[BuiltinRole(role)]}
    for method, url in _calls(await _objects(tenant, services, target)):
        r = await tenant.client.request(method, url, headers=caller.headers)
        expected = (200, 204) if manages else (404,)
        assert r.status_code in expected, (role, method, url, r.text)
    alive = (await tenant.client.get(ME, headers=target.headers)).status_code
    assert alive == (401 if manages else 200)
