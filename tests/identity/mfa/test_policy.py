"""The tenant's MFA policy API (issue 11.6): read by members, changed with settings:update,
every field validated with a 422 naming it, every change audited with before and after."""

from __future__ import annotations

import pytest

from kanvaro.identity.mfa.policy import DEFAULT
from tests.identity.conftest import audit_entries
from tests.identity.mfa.policy_support import POLICY, set_mfa_policy

pytestmark = pytest.mark.asyncio

FIELDS = {
    "enforceForRoles", "enforceForPermissions", "allowedMethods", "backupCodesCount",
    "totpWindow", "phishingResistantRoles", "requireUserVerification", "allowedAaguids",
    "enrollmentGraceDays", "trustedDevicesSkipMfa",
}  # fmt: skip


async def test_the_defaults_are_served_to_any_member(tenant):
    viewer = await tenant.member("viewer")
    r = await tenant.client.get(POLICY, headers=viewer.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == FIELDS
    assert body == DEFAULT.to_json()
    assert body["allowedMethods"] == ["totp", "email", "sms", "webauthn", "backup_code"]
    assert body["backupCodesCount"] == 10 and body["enrollmentGraceDays"] == 7


async def test_a_change_is_kept_merged_and_audited(tenant, services):
    await tenant.client.post(
        "/api/v1/roles",
        headers=tenant.admin.headers,
        json={"name": "Auditors", "permissions": ["audit:read"]},
    )
    body = await set_mfa_policy(
        tenant,
        enforceForRoles=["admin", "Auditors"],
        enforceForPermissions=["user:manage"],
        allowedMethods=["totp", "webauthn", "backup_code"],
        backupCodesCount=12,
        totpWindow=0,
        phishingResistantRoles=["admin"],
        allowedAaguids=["ADCE0002-35BC-C60A-648B-0B25F1F05503"],
        enrollmentGraceDays=0,
    )
    assert body["enforceForRoles"] == ["admin", "Auditors"]
    assert body["allowedAaguids"] == ["adce0002-35bc-c60a-648b-0b25f1f05503"]  # lower-cased
    # A later change keeps what it does not name.
    again = await set_mfa_policy(tenant, trustedDevicesSkipMfa=False)
    assert again == {**body, "trustedDevicesSkipMfa": False}
    r = await tenant.client.get(POLICY, headers=tenant.admin.headers)
    assert r.json() == again

    entries = await audit_entries(services, tenant.id, "api:mfa_policy:update")
    assert len(entries) == 2
    first, second = (e.changes for e in entries)
    assert first["before"]["backupCodesCount"] == 10 and first["after"]["backupCodesCount"] == 12
    assert first["after"]["enforceForRoles"] == ["admin", "Auditors"]
    # Only what changed.
    assert second == {
        "before": {"trustedDevicesSkipMfa": True},
        "after": {"trustedDevicesSkipMfa": False},
    }


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"enforceForRoles": ["no-such-role"]}, "enforceForRoles"),
        ({"phishingResistantRoles": ["nobody"]}, "phishingResistantRoles"),
        ({"enforceForPermissions": ["project:fly"]}, "enforceForPermissions"),
        ({"allowedMethods": ["carrier-pigeon"]}, "allowedMethods"),
        ({"allowedMethods": ["backup_code"]}, "allowedMethods"),
        ({"allowedMethods": []}, "allowedMethods"),
        (
            {"allowedMethods": ["totp"], "phishingResistantRoles": ["admin"]},
            "phishingResistantRoles",
        ),
        ({"backupCodesCount": 4}, "backupCodesCount"),
        ({"backupCodesCount": 21}, "backupCodesCount"),
        ({"totpWindow": 3}, "totpWindow"),
        ({"totpWindow": -1}, "totpWindow"),
        ({"enrollmentGraceDays": 91}, "enrollmentGraceDays"),
        ({"allowedAaguids": ["not-a-uuid"]}, "allowedAaguids"),
        ({"requireUserVerification": "maybe"}, "requireUserVerification"),
        ({"enforceForRoles": None}, "enforceForRoles"),
        ({"surprise": 1}, "surprise"),
    ],
)
async def test_a_bad_change_is_refused_naming_its_field(tenant, change, field):
    before = (await tenant.client.get(POLICY, headers=tenant.admin.headers)).json()
    r = await tenant.client.patch(POLICY, headers=tenant.admin.headers, json=change)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    named = [e["field"] for e in r.json()["errors"]]
    assert any(n == field or n.startswith(f"{field}.") for n in named), named
    assert (await tenant.client.get(POLICY, headers=tenant.admin.headers)).json() == before


async def test_an_empty_change_is_refused(tenant):
    r = await tenant.client.patch(POLICY, headers=tenant.admin.headers, json={})
    assert r.status_code == 422


async def test_changing_needs_settings_update(tenant):
    manager = await tenant.member("project_manager")
    r = await tenant.client.patch(POLICY, headers=manager.headers, json={"totpWindow": 0})
    assert r.status_code == 403
    r = await tenant.client.get(POLICY, headers=tenant.admin.headers)
    assert r.json()["totpWindow"] == 1


async def test_a_policy_is_the_tenants_own(tenant, other_tenant):
    await set_mfa_policy(tenant, enforceForRoles=["viewer"])
    r = await other_tenant.client.get(POLICY, headers=other_tenant.admin.headers)
    assert r.json()["enforceForRoles"] == []
    # Role names are checked against the tenant's own roles.
    await tenant.client.post(
        "/api/v1/roles", headers=tenant.admin.headers, json={"name": "Only-Here", "permissions": []}
    )
    r = await other_tenant.client.patch(
        POLICY, headers=other_tenant.admin.headers, json={"enforceForRoles": ["Only-Here"]}
    )
    assert r.status_code == 422


async def test_a_renamed_role_stays_enforced(tenant, services):
    r = await tenant.client.post(
        "/api/v1/roles", headers=tenant.admin.headers, json={"name": "Finance", "permissions": []}
    )
    assert r.status_code == 201, r.text
    role = r.json()
    await set_mfa_policy(tenant, enforceForRoles=["Finance", "viewer"])
    r = await tenant.client.patch(
        f"/api/v1/roles/{role['id']}",
        headers=tenant.admin.headers,
        json={"name": "Treasury", "version": role["version"]},
    )
    assert r.status_code == 200, r.text
    policy = (await tenant.client.get(POLICY, headers=tenant.admin.headers)).json()
    assert policy["enforceForRoles"] == ["Treasury", "viewer"]
    entries = await audit_entries(services, tenant.id, "api:mfa_policy:update")
    assert entries[-1].changes["via"] == "role rename: Finance"
