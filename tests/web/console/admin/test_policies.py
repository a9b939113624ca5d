"""The policies page: the MFA, session and password policies in force, saved through the
API's actions; refused values named next to their field."""

from __future__ import annotations

import httpx

from tests.conftest import TenantFixture
from tests.web.console.admin.conftest import sign_in_as
from tests.web.console.conftest import submit

SETTINGS = "/api/v1/tenant/settings"


async def api_policy(tenant: TenantFixture, name: str) -> dict:
    r = await tenant.client.get(f"{SETTINGS}/{name}-policy", headers=tenant.admin.headers)
    assert r.status_code == 200, r.text
    return r.json()


def policies_path(tenant: TenantFixture) -> str:
    return f"/t/{tenant.slug}/admin/policies"


async def test_the_page_shows_the_policies_in_force(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    r = await tenant.client.patch(
        f"{SETTINGS}/password-policy", headers=tenant.admin.headers, json={"minLength": 17}
    )
    assert r.status_code == 200, r.text
    await sign_in_as(browser, tenant, "admin")
    page = await browser.get(policies_path(tenant))
    assert page.status_code == 200
    assert 'name="minLength" type="number" min="8" max="1024" required value="17"' in page.text
    assert 'name="idleTimeoutMinutes"' in page.text and 'name="enforceForRoles"' in page.text


async def test_requiring_mfa_for_a_role(browser: httpx.AsyncClient, tenant: TenantFixture):
    await sign_in_as(browser, tenant, "admin")
    r = await submit(
        browser,
        policies_path(tenant),
        f"{policies_path(tenant)}/mfa",
        {
            "enforceForRoles": ["team_member"],
            "allowedMethods": ["totp", "webauthn", "backup_code"],
            "enrollmentGraceDays": "0",
            "backupCodesCount": "10",
            "totpWindow": "1",
            "trustedDevicesSkipMfa": "on",
            "allowedAaguids": "",
        },
    )
    assert r.status_code == 303, r.text
    policy = await api_policy(tenant, "mfa")
    assert policy["enforceForRoles"] == ["team_member"]
    assert policy["allowedMethods"] == ["totp", "webauthn", "backup_code"]
    assert policy["enrollmentGraceDays"] == 0 and policy["requireUserVerification"] is False
    page = await browser.get(r.headers["location"])
    assert "MFA policy saved" in page.text


async def test_session_and_password_policies_are_saved(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    await sign_in_as(browser, tenant, "admin")
    session = {
        "idleTimeoutMinutes": "45",
        "absoluteTimeoutHours": "12",
        "reauthMaxAgeMinutes": "15",
        "refreshGraceSeconds": "10",
        "deviceTrustDays": "30",
        "riskNotifyAt": "30",
        "riskMfaAt": "60",
        "riskDenyAt": "101",
        "refreshTokenRotation": "on",
    }
    r = await submit(browser, policies_path(tenant), f"{policies_path(tenant)}/session", session)
    assert r.status_code == 303, r.text
    saved = await api_policy(tenant, "session")
    assert saved["idleTimeoutMinutes"] == 45 and saved["singleDeviceOnly"] is False
    r = await submit(
        browser,
        policies_path(tenant),
        f"{policies_path(tenant)}/password",
        {"minLength": "12", "maxLength": "200", "requireUpper": "on", "checkBlocklist": "on"},
    )
    assert r.status_code == 303, r.text
    pw = await api_policy(tenant, "password")
    assert pw["minLength"] == 12 and pw["requireDigit"] is False and pw["requireUpper"] is True


async def test_bad_policy_input_is_named_next_to_its_field(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    await sign_in_as(browser, tenant, "admin")
    r = await submit(
        browser,
        policies_path(tenant),
        f"{policies_path(tenant)}/password",
        {"minLength": "3", "maxLength": "many"},
    )
    assert r.status_code == 422
    assert 'id="password-minLength-error"' in r.text and 'id="password-maxLength-error"' in r.text
    assert (await api_policy(tenant, "password"))["minLength"] == 8
    r = await submit(
        browser,
        policies_path(tenant),
        f"{policies_path(tenant)}/mfa",
        {
            "enforceForRoles": ["no-such-role"],
            "allowedMethods": ["totp"],
            "backupCodesCount": "10",
            "totpWindow": "1",
            "enrollmentGraceDays": "7",
        },
    )
    assert r.status_code == 422 and "no role named" in r.text
    assert (await api_policy(tenant, "mfa"))["enforceForRoles"] == []
    r = await submit(
        browser,
        policies_path(tenant),
        f"{policies_path(tenant)}/mfa",
        {
            "allowedMethods": [],
            "backupCodesCount": "10",
            "totpWindow": "1",
            "enrollmentGraceDays": "7",
        },
    )
    assert r.status_code == 422 and 'id="mfa-allowedMethods-error"' in r.text


async def test_only_settings_update_opens_the_policies(
    browser: httpx.AsyncClient, tenant: TenantFixture, other_tenant: TenantFixture
):
    await sign_in_as(browser, tenant, "team_member")
    assert (await browser.get(policies_path(tenant))).status_code == 403


async def test_another_tenants_policies_are_not_found(
    browser: httpx.AsyncClient, tenant: TenantFixture, other_tenant: TenantFixture
):
    await sign_in_as(browser, tenant, "admin")
    assert (await browser.get(policies_path(other_tenant))).status_code == 404
    r = await submit(
        browser,
        policies_path(tenant),
        f"{policies_path(other_tenant)}/password",
        {"minLength": "20", "maxLength": "100"},
    )
    assert r.status_code == 404
    assert (await api_policy(other_tenant, "password"))["minLength"] == 8
