# ruff: noqa: F811  (pytest fixtures imported from policy_support and sessions/conftest)
"""Who must use MFA and what a sign-in then gets (issue 11 points 6, 7, 8): enforcement by
role and by permission, enrollment-only sessions within the grace period and refusal after
it, WebAuthn only for phishing-resistant roles, trusted devices skipping the step only while
trusted and only if the policy allows it, and the per-user limit on wrong codes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from kanvaro.identity.mfa.flow import ENROLLMENT_ONLY
from kanvaro.identity.mfa.models import MfaConfiguration
from kanvaro.identity.models import UserSession
from kanvaro.security.tokens import REFRESH
from tests.identity.conftest import audit_entries
from tests.identity.mfa.policy_support import (
    GOOD_CODE,
    VERIFY,
    add_method,
    bearer,
    set_mfa_policy,
    sign_in,
    stand_in_totp,  # noqa: F401
)
from tests.identity.sessions.conftest import clock  # noqa: F401

pytestmark = pytest.mark.asyncio

PROJECTS = "/api/v1/projects"
ENROLLMENT_REQUIRED = "mfa-enrollment-required"


async def session_row(services: Any, tokens: dict[str, Any]) -> UserSession:
    sid = services.tokens.verify(tokens["refreshToken"], REFRESH)["sid"]
    async with services.db.session(all_tenants=True) as db:
        row = await db.get(UserSession, uuid.UUID(sid))
        assert row is not None
        return row


async def enrollment_only_session(tenant: Any, services: Any, email: str) -> dict[str, Any]:
    r = await sign_in(tenant, email)
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert not tokens.get("requiresMFA") and tokens["accessToken"]
    assert ENROLLMENT_ONLY in (await session_row(services, tokens)).auth_methods
    return tokens


# --- enforcement and the grace period -------------------------------------------------------


async def test_a_role_named_by_the_policy_gets_an_enrollment_only_session(tenant, services):
    m = await tenant.member("team_member")
    # Before the change, the member's sign-in is a full one.
    assert (await tenant.client.get(PROJECTS, headers=m.headers)).status_code == 200
    await set_mfa_policy(tenant, enforceForRoles=["team_member"])

    tokens = await enrollment_only_session(tenant, services, m.email)
    headers = bearer(tokens["accessToken"])
    r = await tenant.client.get(PROJECTS, headers=headers)
    assert r.status_code == 403
    assert r.json()["type"].endswith(ENROLLMENT_REQUIRED)
    # Enrollment and one's own account stay reachable.
    assert (await tenant.client.get("/api/v1/auth/me", headers=headers)).status_code == 200
    r = await tenant.client.get(f"/api/v1/users/{m.id}/mfa", headers=headers)
    assert r.status_code == 200 and r.json()["required"] is True
    r = await tenant.client.post("/api/v1/auth/mfa/setup", headers=headers, json={"method": "totp"})
    assert r.status_code != 403, r.text
    # ... but not someone else's methods.
    r = await tenant.client.get(f"/api/v1/users/{tenant.admin.id}/mfa", headers=headers)
    assert r.status_code == 403 and r.json()["type"].endswith(ENROLLMENT_REQUIRED)
    # Another role is untouched.
    viewer = await tenant.member("viewer")
    assert (await tenant.client.get(PROJECTS, headers=viewer.headers)).status_code == 200


async def test_after_the_grace_period_sign_in_is_refused(tenant, services, clock):
    m = await tenant.member("team_member")
    await set_mfa_policy(tenant, enforceForRoles=["team_member"], enrollmentGraceDays=3)
    await enrollment_only_session(tenant, services, m.email)  # the grace period starts here
    clock.advance(days=2, hours=23)
    await enrollment_only_session(tenant, services, m.email)  # it does not restart
    clock.advance(hours=2)
    r = await sign_in(tenant, m.email)
    assert r.status_code == 401, r.text
    problem = r.json()
    assert problem["type"].endswith("mfa-required")
    assert "administrator" in problem["detail"]
    assert "accessToken" not in r.text
    entries = await audit_entries(services, tenant.id, "auth:mfa:enrollment_overdue")
    assert [str(e.resource_id) for e in entries] == [m.id]


async def test_grace_zero_refuses_at_once_and_a_method_lets_the_user_in(tenant, services):
    m = await tenant.member("team_member")
    await set_mfa_policy(tenant, enforceForRoles=["team_member"], enrollmentGraceDays=0)
    r = await sign_in(tenant, m.email)
    assert r.status_code == 401 and r.json()["type"].endswith("mfa-required")
    await add_method(services, tenant.id, m.id, "totp")
    r = await sign_in(tenant, m.email)
    assert r.status_code == 200, r.text
    assert r.json()["requiresMFA"] is True and r.json()["methods"] == ["totp"]


async def test_holding_an_enforced_permission_requires_mfa(tenant, services):
    admin = await tenant.member("admin")
    member = await tenant.member("team_member")
    await set_mfa_policy(tenant, enforceForPermissions=["user:manage"])
    await enrollment_only_session(tenant, services, admin.email)
    r = await sign_in(tenant, member.email)
    assert (
        r.status_code == 200
        and ENROLLMENT_ONLY not in (await session_row(services, r.json())).auth_methods
    )
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as db:
        config = (
            await db.execute(
                select(MfaConfiguration).where(MfaConfiguration.user_id == uuid.UUID(admin.id))
            )
        ).scalar_one()
        assert config.required_since is not None and config.enforced_by_policy


async def test_backup_codes_alone_do_not_satisfy_the_policy(tenant, services):
    m = await tenant.member("team_member")
    await add_method(services, tenant.id, m.id, "backup_code")
    await add_method(services, tenant.id, m.id, "totp", verified=False)  # never confirmed
    await set_mfa_policy(tenant, enforceForRoles=["team_member"])
    await enrollment_only_session(tenant, services, m.email)


# --- phishing-resistant roles ---------------------------------------------------------------


async def test_a_phishing_resistant_role_may_use_webauthn_only(tenant, services, stand_in_totp):
    pm = await tenant.member("project_manager")
    await add_method(services, tenant.id, pm.id, "totp")
    await set_mfa_policy(tenant, phishingResistantRoles=["project_manager"])
    # TOTP does not count: enrollment only, and TOTP cannot be enrolled either.
    tokens = await enrollment_only_session(tenant, services, pm.email)
    r = await tenant.client.post(
        "/api/v1/auth/mfa/setup", headers=bearer(tokens["accessToken"]), json={"method": "totp"}
    )
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["method"]
    # With a security key, only it is offered; a right TOTP code is refused like a wrong one.
    await add_method(services, tenant.id, pm.id, "webauthn", name="YubiKey")
    r = await sign_in(tenant, pm.email)
    assert r.json()["requiresMFA"] is True and r.json()["methods"] == ["webauthn"]
    session_id = r.json()["sessionId"]
    right = await tenant.client.post(
        VERIFY, json={"sessionId": session_id, "code": GOOD_CODE, "method": "totp"}
    )
    wrong = await tenant.client.post(
        VERIFY, json={"sessionId": session_id, "code": "000000", "method": "totp"}
    )
    assert right.status_code == wrong.status_code == 401
    assert right.json()["detail"] == wrong.json()["detail"]
    assert stand_in_totp.calls == 0  # the factor was never asked
    # Other roles keep TOTP.
    member = await tenant.member("team_member")
    await add_method(services, tenant.id, member.id, "totp")
    r = await sign_in(tenant, member.email)
    assert r.json()["methods"] == ["totp"]


# --- trusted devices ------------------------------------------------------------------------


async def test_a_trusted_device_skips_the_step_only_while_trusted_and_allowed(
    tenant, services, clock
):
    m = await tenant.member("team_member")
    device_token = m.tokens["deviceToken"]
    device_id = (await session_row(services, m.tokens)).device_id
    r = await tenant.client.post(
        f"/api/v1/users/{m.id}/devices/{device_id}/trust", headers=m.headers
    )
    assert r.status_code == 200, r.text
    await add_method(services, tenant.id, m.id, "totp")

    trusted = await sign_in(tenant, m.email, deviceToken=device_token)
    assert trusted.status_code == 200 and trusted.json().get("accessToken"), trusted.text
    other = await sign_in(tenant, m.email)  # another device: the step is asked
    assert other.json()["requiresMFA"] is True

    await set_mfa_policy(tenant, trustedDevicesSkipMfa=False)
    r = await sign_in(tenant, m.email, deviceToken=device_token)
    assert r.json()["requiresMFA"] is True

    await set_mfa_policy(tenant, trustedDevicesSkipMfa=True)
    r = await sign_in(tenant, m.email, deviceToken=device_token)
    assert r.json().get("accessToken")
    clock.advance(days=31)  # the trust (30 days by default) has run out
    r = await sign_in(tenant, m.email, deviceToken=device_token)
    assert r.json()["requiresMFA"] is True


async def test_a_phishing_resistant_role_never_skips_on_a_trusted_device(tenant, services):
    pm = await tenant.member("project_manager")
    device_id = (await session_row(services, pm.tokens)).device_id
    r = await tenant.client.post(
        f"/api/v1/users/{pm.id}/devices/{device_id}/trust", headers=pm.headers
    )
    assert r.status_code == 200, r.text
    await add_method(services, tenant.id, pm.id, "webauthn")
    await set_mfa_policy(tenant, phishingResistantRoles=["project_manager"])
    r = await sign_in(tenant, pm.email, deviceToken=pm.tokens["deviceToken"])
    assert r.json()["requiresMFA"] is True


# --- brute force ----------------------------------------------------------------------------


async def _challenge(tenant: Any, email: str) -> str:
    r = await sign_in(tenant, email)
    assert r.status_code == 200 and r.json()["requiresMFA"] is True, r.text
    return r.json()["sessionId"]


async def _verify(tenant: Any, challenge: str, code: str) -> Any:
    return await tenant.client.post(
        VERIFY, json={"sessionId": challenge, "code": code, "method": "totp"}
    )


async def test_wrong_codes_are_limited_per_user_across_challenges(tenant, services, stand_in_totp):
    m = await tenant.member("team_member")
    await add_method(services, tenant.id, m.id, "totp")
    first = await _challenge(tenant, m.email)
    for _ in range(3):
        assert (await _verify(tenant, first, "111111")).status_code == 401
    # A fresh challenge does not reset the user's count (5 per window in the suite).
    second = await _challenge(tenant, m.email)
    for _ in range(2):
        assert (await _verify(tenant, second, "222222")).status_code == 401
    r = await _verify(tenant, second, GOOD_CODE)
    assert r.status_code == 429 and "Retry-After" in r.headers
    assert "accessToken" not in r.text

    failures = await audit_entries(services, tenant.id, "auth:mfa:failure")
    assert len(failures) == 5
    assert all(str(f.resource_id) == m.id and f.category == "authentication" for f in failures)
    payloads = " ".join(str(f.changes) for f in failures)
    assert "111111" not in payloads and "222222" not in payloads


async def test_a_right_code_clears_the_count_and_records_both_methods(
    tenant, services, stand_in_totp
):
    m = await tenant.member("team_member")
    await add_method(services, tenant.id, m.id, "totp")
    challenge = await _challenge(tenant, m.email)
    for _ in range(4):
        assert (await _verify(tenant, challenge, "333333")).status_code == 401
    r = await _verify(tenant, challenge, GOOD_CODE)
    assert r.status_code == 200, r.text
    assert (await session_row(services, r.json())).auth_methods == ["password", "totp"]
    # The count starts again: four more wrong codes are answered 401, not 429.
    again = await _challenge(tenant, m.email)
    for _ in range(4):
        assert (await _verify(tenant, again, "444444")).status_code == 401


async def test_an_unknown_challenge_and_a_wrong_code_look_alike(tenant, services, stand_in_totp):
    m = await tenant.member("team_member")
    await add_method(services, tenant.id, m.id, "totp")
    challenge = await _challenge(tenant, m.email)
    wrong = await _verify(tenant, challenge, "555555")
    unknown = await _verify(tenant, str(uuid.uuid4()), "555555")
    assert wrong.status_code == unknown.status_code == 401
    for r in (wrong, unknown):
        assert m.email not in r.text and "totp" not in r.text
