"""The users page: the list with its filters, inviting, changing a role, deactivating and
reactivating, sending an invitation again and revoking it; each through the API's action."""

from __future__ import annotations

import httpx

from tests.conftest import TenantFixture, unique_email
from tests.web.console.admin.conftest import mails_to, sign_in_as
from tests.web.console.conftest import submit


def users_path(tenant: TenantFixture) -> str:
    return f"/t/{tenant.slug}/admin/users"


async def api_user(tenant: TenantFixture, user_id: str) -> dict:
    r = await tenant.client.get(f"/api/v1/users/{user_id}", headers=tenant.admin.headers)
    assert r.status_code == 200, r.text
    return r.json()


async def test_the_admin_index_lists_only_what_a_role_opens(
    browser: httpx.AsyncClient, tenant: TenantFixture, other_tenant: TenantFixture
):
    await sign_in_as(browser, tenant, "admin")
    page = await browser.get(f"/t/{tenant.slug}/admin")
    assert page.status_code == 200
    for section in (
        "/admin/users",
        "/admin/roles",
        "/admin/policies",
        "/admin/audit",
        "/admin/keys",
        "/admin/compliance",
        "/admin/sso",
        "/admin/rate-limits",
    ):
        assert f'href="/t/{tenant.slug}{section}"' in page.text, section
    assert (await browser.get(f"/t/{other_tenant.slug}/admin")).status_code == 404


async def test_a_project_manager_sees_users_and_roles_but_not_policies(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    await sign_in_as(browser, tenant, "project_manager")
    page = await browser.get(f"/t/{tenant.slug}/admin")
    assert page.status_code == 200
    assert f"/t/{tenant.slug}/admin/users" in page.text
    assert f"/t/{tenant.slug}/admin/policies" not in page.text
    assert (await browser.get(f"/t/{tenant.slug}/admin/policies")).status_code == 403


async def test_a_team_member_is_refused_the_administration(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    await sign_in_as(browser, tenant, "team_member")
    for path in ("/admin", "/admin/users"):
        r = await browser.get(f"/t/{tenant.slug}{path}")
        assert r.status_code == 403, path
        assert "text/html" in r.headers["content-type"]


async def test_the_list_shows_people_and_filters_them(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    viewer = await tenant.member("viewer")
    manager = await tenant.member("project_manager")
    await sign_in_as(browser, tenant, "admin")
    page = await browser.get(users_path(tenant))
    assert page.status_code == 200
    assert viewer.email in page.text and manager.email in page.text
    only = await browser.get(users_path(tenant), params={"role": "viewer"})
    assert viewer.email in only.text and manager.email not in only.text
    found = await browser.get(users_path(tenant), params={"q": manager.email[:14]})
    assert manager.email in found.text and viewer.email not in found.text
    odd = await browser.get(users_path(tenant), params={"role": "no-such", "status": "x"})
    assert odd.status_code == 200  # an unknown filter value is no filter, never a 500


async def test_inviting_creates_a_pending_member_and_mails_him(
    browser: httpx.AsyncClient, tenant: TenantFixture, services
):
    await sign_in_as(browser, tenant, "admin")
    address = unique_email("invited")
    r = await submit(
        browser,
        users_path(tenant),
        f"{users_path(tenant)}/invite",
        {"email": address, "firstName": "Ines", "lastName": "Vited", "role": "team_member"},
    )
    assert r.status_code == 303, r.text
    assert r.headers["location"].endswith("?notice=user-invited")
    listed = await tenant.client.get(
        "/api/v1/users", params={"q": address}, headers=tenant.admin.headers
    )
    (user,) = listed.json()["items"]
    assert user["invitationPending"] is True and user["role"] == "team_member"
    assert mails_to(services, address), "no invitation mail in the outbox"
    page = await browser.get(r.headers["location"])
    assert "Invitation sent." in page.text and "Pending invitations" in page.text
    # Sending again and revoking: the API's actions.
    again = await submit(
        browser, users_path(tenant), f"{users_path(tenant)}/{user['id']}/invitation"
    )
    assert again.status_code == 303
    assert len(mails_to(services, address)) == 2
    revoked = await submit(browser, users_path(tenant), f"{users_path(tenant)}/{user['id']}/delete")
    assert revoked.status_code == 303
    assert (await api_user(tenant, user["id"]))["isActive"] is False


async def test_bad_invitation_input_is_the_form_again_with_messages(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    await sign_in_as(browser, tenant, "admin")
    r = await submit(
        browser,
        users_path(tenant),
        f"{users_path(tenant)}/invite",
        {"email": "not-an-address", "firstName": "", "lastName": "X", "role": "team_member"},
    )
    assert r.status_code == 422
    assert "Some input is invalid" in r.text and "not-an-address" in r.text  # kept in the form
    unknown = await submit(
        browser,
        users_path(tenant),
        f"{users_path(tenant)}/invite",
        {"email": unique_email("x"), "firstName": "A", "lastName": "B", "role": "emperor"},
    )
    assert unknown.status_code == 422 and "No role named" in unknown.text


async def test_role_change_deactivation_and_reactivation(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    member = await tenant.member("viewer")
    await sign_in_as(browser, tenant, "admin")
    base = f"{users_path(tenant)}/{member.id}"
    r = await submit(browser, users_path(tenant), f"{base}/role", {"role": "team_member"})
    assert r.status_code == 303, r.text
    assert (await api_user(tenant, member.id))["role"] == "team_member"
    r = await submit(browser, users_path(tenant), f"{base}/deactivate")
    assert r.status_code == 303
    assert (await api_user(tenant, member.id))["isActive"] is False
    r = await submit(browser, users_path(tenant), f"{base}/reactivate")
    assert r.status_code == 303
    assert (await api_user(tenant, member.id))["isActive"] is True
    bad = await submit(browser, users_path(tenant), f"{base}/role", {"role": "no-such-role"})
    assert bad.status_code == 422 and "No role named" in bad.text


async def test_the_last_admin_cannot_deactivate_himself_and_sees_why(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    await sign_in_as(browser, tenant, "admin")
    r = await submit(
        browser, users_path(tenant), f"{users_path(tenant)}/{tenant.admin.id}/deactivate"
    )
    assert r.status_code == 409 and "yourself" in r.text
    assert (await api_user(tenant, tenant.admin.id))["isActive"] is True


async def test_another_tenants_user_is_not_found(
    browser: httpx.AsyncClient, tenant: TenantFixture, other_tenant: TenantFixture
):
    stranger = await other_tenant.member("viewer")
    await sign_in_as(browser, tenant, "admin")
    r = await submit(browser, users_path(tenant), f"{users_path(tenant)}/{stranger.id}/deactivate")
    assert r.status_code == 404
    r = await browser.get(users_path(other_tenant))
    assert r.status_code == 404


async def test_a_team_member_cannot_post_an_invitation(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    await sign_in_as(browser, tenant, "team_member")
    home = await browser.get(f"/t/{tenant.slug}/")
    from tests.web.console.conftest import csrf_field

    r = await browser.post(
        f"{users_path(tenant)}/invite",
        data={
            "csrf_token": csrf_field(home),
            "email": unique_email("x"),
            "firstName": "A",
            "lastName": "B",
            "role": "viewer",
        },
    )
    assert r.status_code == 403


async def test_an_admin_resets_a_members_mfa(browser: httpx.AsyncClient, tenant: TenantFixture):
    member = await tenant.member("team_member")
    await sign_in_as(browser, tenant, "admin")  # a fresh sign-in: recent enough for a reset
    r = await submit(browser, users_path(tenant), f"{users_path(tenant)}/{member.id}/mfa-reset")
    assert r.status_code == 303, r.text
    assert r.headers["location"].endswith("?notice=mfa-reset")
    # The member's sessions ended with the reset (the API's action ran).
    after = await tenant.client.get("/api/v1/auth/me", headers=member.headers)
    assert after.status_code == 401
    own = await submit(
        browser, users_path(tenant), f"{users_path(tenant)}/{tenant.admin.id}/mfa-reset"
    )
    assert own.status_code == 409 and "another user" in own.text
