# ruff: noqa: F811  (pytest fixtures imported from sessions/conftest)
"""A user's second factors (issue 11 points 5 and 6): the list without secrets, removing one
(step-up; the last one the policy needs is kept), and the administrator's reset (step-up,
audited, mailed; the user's sessions end and his devices lose their trust). Another tenant's
user is 404."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from kanvaro.identity.mfa.models import MfaBackupCode
from kanvaro.identity.sessions.models import TrustedDevice
from kanvaro.services import Services
from tests.conftest import new_tenant
from tests.identity.conftest import audit_entries
from tests.identity.mfa.policy_support import (
    PASSWORD,
    add_method,
    bearer,
    method_ids,
    set_mfa_policy,
    sign_in,
)
from tests.identity.sessions.conftest import ShiftedClock, clock  # noqa: F401

pytestmark = pytest.mark.asyncio

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
METHOD_FIELDS = {"id", "method", "name", "createdAt", "lastUsedAt", "verified"}


def mfa_url(user_id: str, tail: str = "") -> str:
    return f"/api/v1/users/{user_id}/mfa{tail}"


async def add_backup_codes(services: Services, tenant_id: str, user_id: str, count: int) -> None:
    now = services.clock.now()
    batch = uuid.uuid4()
    async with services.db.session(tenant_id=uuid.UUID(tenant_id)) as db:
        for i in range(count):
            db.add(
                MfaBackupCode(
                    tenant_id=uuid.UUID(tenant_id),
                    user_id=uuid.UUID(user_id),
                    batch=batch,
                    code_hash=f"{i:064x}",
                    created_at=now,
                    used_at=now if i == 0 else None,
                )
            )


async def reauth(tenant: Any, headers: dict[str, str]) -> None:
    r = await tenant.client.post(
        "/api/v1/auth/reauth", headers=headers, json={"password": PASSWORD}
    )
    assert r.status_code == 200, r.text


# --- the list -------------------------------------------------------------------------------


async def test_the_list_shows_methods_without_secrets(tenant, services):
    m = await tenant.member("team_member")
    totp = await add_method(services, tenant.id, m.id, "totp", name="Phone", secret=SECRET)
    await add_method(services, tenant.id, m.id, "email", verified=False)
    await add_backup_codes(services, tenant.id, m.id, 4)  # one of them used

    r = await tenant.client.get(mfa_url(m.id), headers=m.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["backupCodesRemaining"] == 3
    assert body["mfaEnabled"] is True and body["required"] is False
    assert [set(x) for x in body["methods"]] == [METHOD_FIELDS, METHOD_FIELDS]
    first, second = body["methods"]
    assert first == {**first, "id": totp, "method": "totp", "name": "Phone", "verified": True}
    assert second["method"] == "email" and second["verified"] is False
    assert SECRET not in r.text and "secret" not in r.text.lower()
    # An administrator of the tenant sees them too.
    r = await tenant.client.get(mfa_url(m.id), headers=tenant.admin.headers)
    assert r.status_code == 200 and len(r.json()["methods"]) == 2


async def test_someone_elses_methods_are_404(tenant, other_tenant, services):
    m = await tenant.member("team_member")
    colleague = await tenant.member("team_member")
    method = await add_method(services, tenant.id, m.id, "totp")
    for headers in (colleague.headers, other_tenant.admin.headers):
        assert (await tenant.client.get(mfa_url(m.id), headers=headers)).status_code == 404
        r = await tenant.client.delete(mfa_url(m.id, f"/{method}"), headers=headers)
        assert r.status_code == 404
    r = await tenant.client.post(mfa_url(m.id, "/reset"), headers=other_tenant.admin.headers)
    assert r.status_code == 404
    assert await method_ids(services, tenant.id, m.id) == [method]


# --- removing a method ----------------------------------------------------------------------


async def test_removing_a_method_needs_a_recent_sign_in_and_is_audited(tenant, services, clock):
    m = await tenant.member("team_member")
    phone = await add_method(services, tenant.id, m.id, "totp")
    key = await add_method(services, tenant.id, m.id, "webauthn")
    clock.advance(minutes=16)  # past the session policy's 15-minute re-authentication age
    r = await tenant.client.delete(mfa_url(m.id, f"/{phone}"), headers=m.headers)
    assert r.status_code == 401 and r.json()["type"].endswith("reauth-required")
    await reauth(tenant, m.headers)
    r = await tenant.client.delete(mfa_url(m.id, f"/{phone}"), headers=m.headers)
    assert r.status_code == 204, r.text
    assert await method_ids(services, tenant.id, m.id) == [key]
    r = await tenant.client.delete(mfa_url(m.id, f"/{phone}"), headers=m.headers)
    assert r.status_code == 404
    [entry] = await audit_entries(services, tenant.id, "auth:mfa:remove")
    assert str(entry.actor_id) == m.id and str(entry.resource_id) == phone
    assert entry.changes["method"] == "totp" and entry.changes["mfaEnabled"] is True


async def test_the_last_method_the_policy_needs_cannot_be_removed(tenant, services):
    m = await tenant.member("team_member")
    only = await add_method(services, tenant.id, m.id, "totp")
    await add_backup_codes(services, tenant.id, m.id, 3)
    await set_mfa_policy(tenant, enforceForRoles=["team_member"])
    r = await tenant.client.delete(mfa_url(m.id, f"/{only}"), headers=m.headers)
    assert r.status_code == 409, r.text
    assert await method_ids(services, tenant.id, m.id) == [only]
    # With a second factor, the first may go; the second is then the last.
    second = await add_method(services, tenant.id, m.id, "email")
    assert (
        await tenant.client.delete(mfa_url(m.id, f"/{only}"), headers=m.headers)
    ).status_code == 204
    r = await tenant.client.delete(mfa_url(m.id, f"/{second}"), headers=m.headers)
    assert r.status_code == 409


async def test_removing_the_last_method_without_a_policy_turns_mfa_off(tenant, services):
    m = await tenant.member("team_member")
    only = await add_method(services, tenant.id, m.id, "totp")
    await add_backup_codes(services, tenant.id, m.id, 3)
    r = await tenant.client.delete(mfa_url(m.id, f"/{only}"), headers=m.headers)
    assert r.status_code == 204, r.text
    body = (await tenant.client.get(mfa_url(m.id), headers=m.headers)).json()
    assert body == {**body, "methods": [], "backupCodesRemaining": 0, "mfaEnabled": False}
    r = await sign_in(tenant, m.email)
    assert r.json().get("accessToken")  # no second step any more


# --- the administrator's reset --------------------------------------------------------------


@pytest.fixture
def mail_clock(smtp_services: Services, monkeypatch: pytest.MonkeyPatch) -> Iterator[ShiftedClock]:
    shifted = ShiftedClock()
    monkeypatch.setattr(smtp_services, "clock", shifted)
    yield shifted


async def test_an_admin_reset_needs_step_up_and_is_audited_and_mailed(
    smtp_services, smtp_client, smtp_server, mail_clock
):
    inbox, _ = smtp_server
    tenant = await new_tenant(smtp_services, smtp_client)
    m = await tenant.member("team_member")
    device_id_token = m.tokens["deviceToken"]
    await add_method(smtp_services, tenant.id, m.id, "totp", secret=SECRET)
    await add_method(smtp_services, tenant.id, m.id, "webauthn")
    await add_backup_codes(smtp_services, tenant.id, m.id, 5)
    await set_mfa_policy(tenant, enforceForRoles=["team_member"])

    mail_clock.advance(minutes=16)
    r = await tenant.client.post(mfa_url(m.id, "/reset"), headers=tenant.admin.headers)
    assert r.status_code == 401 and r.json()["type"].endswith("reauth-required")
    assert len(await method_ids(smtp_services, tenant.id, m.id)) == 2

    await reauth(tenant, tenant.admin.headers)
    r = await tenant.client.post(mfa_url(m.id, "/reset"), headers=tenant.admin.headers)
    assert r.status_code == 200, r.text
    summary = r.json()
    assert summary["methodsRemoved"] == ["totp", "webauthn"]
    assert summary["backupCodesRemoved"] == 5 and summary["sessionsEnded"] == 1
    assert await method_ids(smtp_services, tenant.id, m.id) == []
    # His session ended; his next sign-in starts enrolling again.
    assert (await tenant.client.get("/api/v1/auth/me", headers=m.headers)).status_code == 401
    again = await sign_in(tenant, m.email, deviceToken=device_id_token)
    assert again.status_code == 200 and again.json().get("accessToken")
    r = await tenant.client.get("/api/v1/projects", headers=bearer(again.json()["accessToken"]))
    assert r.status_code == 403 and r.json()["type"].endswith("mfa-enrollment-required")

    [entry] = await audit_entries(smtp_services, tenant.id, "auth:mfa:reset")
    assert str(entry.actor_id) == tenant.admin.id and str(entry.resource_id) == m.id
    assert SECRET not in str(entry.changes)
    mail = inbox.last_to(m.email)
    assert "reset" in mail["Subject"].lower()
    assert SECRET not in mail.get_body(preferencelist=("plain",)).get_content()


async def test_a_reset_withdraws_device_trust(tenant, services):
    m = await tenant.member("team_member")
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as db:
        device = (
            await db.execute(select(TrustedDevice).where(TrustedDevice.user_id == uuid.UUID(m.id)))
        ).scalar_one()
    r = await tenant.client.post(
        f"/api/v1/users/{m.id}/devices/{device.device_id}/trust", headers=m.headers
    )
    assert r.status_code == 200, r.text
    await add_method(services, tenant.id, m.id, "totp")
    r = await tenant.client.post(mfa_url(m.id, "/reset"), headers=tenant.admin.headers)
    assert r.status_code == 200 and r.json()["devicesUntrusted"] == 1
    await add_method(services, tenant.id, m.id, "totp")  # enrolled again
    r = await sign_in(tenant, m.email, deviceToken=m.tokens["deviceToken"])
    assert r.json()["requiresMFA"] is True  # the old trust no longer skips the step


async def test_a_reset_needs_user_manage_and_is_for_someone_else(tenant, services):
    m = await tenant.member("team_member")
    manager = await tenant.member("project_manager")
    await add_method(services, tenant.id, m.id, "totp")
    r = await tenant.client.post(mfa_url(m.id, "/reset"), headers=manager.headers)
    assert r.status_code == 403
    r = await tenant.client.post(mfa_url(tenant.admin.id, "/reset"), headers=tenant.admin.headers)
    assert r.status_code == 409
    assert len(await method_ids(services, tenant.id, m.id)) == 1
