"""The roles pages: built-in roles read-only, the custom-role editor (create, edit, delete)
through role_service, the no-escalation rule's refusal on the page."""

from __future__ import annotations

import httpx

from tests.conftest import TenantFixture
from tests.web.console.admin.conftest import sign_in_as
from tests.web.console.conftest import submit


async def api_roles(tenant: TenantFixture) -> dict[str, dict]:
    r = await tenant.client.get(
        "/api/v1/roles", params={"limit": 200}, headers=tenant.admin.headers
    )
    assert r.status_code == 200, r.text
    return {role["name"]: role for role in r.json()["items"]}


async def test_the_list_shows_built_in_and_custom_roles(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    made = await tenant.client.post(
        "/api/v1/roles",
        headers=tenant.admin.headers,
        json={"name": "Auditor", "permissions": ["audit:read"], "projectScoped": False},
    )
    assert made.status_code == 201, made.text
    await sign_in_as(browser, tenant, "admin")
    page = await browser.get(f"/t/{tenant.slug}/admin/roles")
    assert page.status_code == 200
    assert "project manager" in page.text and "Auditor" in page.text
    builtin = (await api_roles(tenant))["viewer"]
    detail = await browser.get(f"/t/{tenant.slug}/admin/roles/{builtin['id']}")
    assert detail.status_code == 200
    assert "cannot be changed" in detail.text and "Save role" not in detail.text
    assert 'value="task:read" checked disabled' in detail.text


async def test_creating_editing_and_deleting_a_custom_role(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    await sign_in_as(browser, tenant, "admin")
    new = f"/t/{tenant.slug}/admin/roles/new"
    editor = await browser.get(new)
    assert editor.status_code == 200 and "<legend>task</legend>" in editor.text
    r = await submit(
        browser,
        new,
        new,
        {
            "name": "Reviewer",
            "description": "Reads tasks",
            "permissions": ["task:read", "project:read"],
            "projectScoped": "on",
        },
    )
    assert r.status_code == 303, r.text
    role = (await api_roles(tenant))["Reviewer"]
    assert role["permissions"] == ["project:read", "task:read"] and role["projectScoped"] is True
    path = f"/t/{tenant.slug}/admin/roles/{role['id']}"
    r = await submit(
        browser,
        path,
        path,
        {
            "name": "Reviewer",
            "description": "Reads and comments",
            "version": str(role["version"]),
            "permissions": ["task:read", "project:read", "comment:create"],
        },
    )
    assert r.status_code == 303, r.text
    changed = (await api_roles(tenant))["Reviewer"]
    assert "comment:create" in changed["permissions"] and changed["projectScoped"] is False
    r = await submit(browser, path, f"{path}/delete")
    assert r.status_code == 303
    assert "Reviewer" not in await api_roles(tenant)


async def test_bad_role_input_is_the_editor_again_with_the_reason(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    await sign_in_as(browser, tenant, "admin")
    new = f"/t/{tenant.slug}/admin/roles/new"
    r = await submit(browser, new, new, {"name": "admin", "permissions": ["task:read"]})
    assert r.status_code == 422 and "built-in role" in r.text
    r = await submit(browser, new, new, {"name": "Odd", "permissions": ["task:fly"]})
    assert r.status_code == 422 and "Unknown permissions" in r.text
    # No escalation: the admin does not hold system:admin, so he cannot grant it.
    r = await submit(browser, new, new, {"name": "Climber", "permissions": ["system:admin"]})
    assert r.status_code == 403 and "you do not hold it" in r.text
    assert "Climber" not in await api_roles(tenant)


async def test_a_stale_edit_saves_nothing(browser: httpx.AsyncClient, tenant: TenantFixture):
    made = await tenant.client.post(
        "/api/v1/roles",
        headers=tenant.admin.headers,
        json={"name": "Stale", "permissions": ["task:read"]},
    )
    role = made.json()
    await sign_in_as(browser, tenant, "admin")
    path = f"/t/{tenant.slug}/admin/roles/{role['id']}"
    r = await submit(
        browser, path, path, {"name": "Stale2", "permissions": ["task:read"], "version": "999"}
    )
    assert r.status_code == 412 and "changed by someone else" in r.text
    assert "Stale" in await api_roles(tenant)


async def test_who_may_see_and_change_roles(
    browser: httpx.AsyncClient, tenant: TenantFixture, other_tenant: TenantFixture
):
    theirs = (await api_roles(other_tenant))["viewer"]
    await sign_in_as(browser, tenant, "project_manager")  # role:read, not role:manage
    assert (await browser.get(f"/t/{tenant.slug}/admin/roles")).status_code == 200
    assert (await browser.get(f"/t/{tenant.slug}/admin/roles/new")).status_code == 403
    assert (await browser.get(f"/t/{tenant.slug}/admin/roles/{theirs['id']}")).status_code == 404


async def test_a_team_member_may_not_read_roles(browser: httpx.AsyncClient, tenant: TenantFixture):
    await sign_in_as(browser, tenant, "team_member")
    assert (await browser.get(f"/t/{tenant.slug}/admin/roles")).status_code == 403
