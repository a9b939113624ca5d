"""The projects pages: the list with its filter, creating a project, a project's page with its
edit form (a stale version changes nothing) and its members."""

from __future__ import annotations

import re

import httpx

from tests.conftest import TenantFixture
from tests.web.console.conftest import sign_in, submit
from tests.web.console.work.conftest import api_get, api_member, api_project


async def test_the_list_shows_the_tenants_projects_with_filter_and_search(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    await api_project(tenant, "Apollo landing", status="active", budgetMinor=125000)
    await api_project(tenant, "Gemini", status="planning")
    await sign_in(browser, tenant, tenant.admin.email)
    page = await browser.get(f"/t/{tenant.slug}/projects")
    assert page.status_code == 200
    assert "Apollo landing" in page.text and "Gemini" in page.text
    assert "1,250.00 USD" in page.text
    assert f'href="/t/{tenant.slug}/projects/new"' in page.text
    active = await browser.get(f"/t/{tenant.slug}/projects", params={"status": "active"})
    assert "Apollo landing" in active.text and "Gemini" not in active.text
    found = await browser.get(f"/t/{tenant.slug}/projects", params={"q": "gem"})
    assert "Gemini" in found.text and "Apollo landing" not in found.text
    odd = await browser.get(
        f"/t/{tenant.slug}/projects", params={"status": "<b>nope", "q": "%_" * 80}
    )
    assert odd.status_code == 200 and "<b>nope" not in odd.text


async def test_a_project_scoped_role_sees_only_its_projects(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    mine = await api_project(tenant, "Shared with the member")
    other = await api_project(tenant, "Not for the member")
    member = await tenant.member("team_member")
    await api_member(tenant, mine["id"], member.id)
    await sign_in(browser, tenant, member.email)
    page = await browser.get(f"/t/{tenant.slug}/projects")
    assert "Shared with the member" in page.text and "Not for the member" not in page.text
    assert "New project" not in page.text  # no project:create
    assert (await browser.get(f"/t/{tenant.slug}/projects/{mine['id']}")).status_code == 200
    for path in ("", "/board", "/time"):
        hidden = await browser.get(f"/t/{tenant.slug}/projects/{other['id']}{path}")
        assert hidden.status_code == 404, path
        assert "Not for the member" not in hidden.text


async def test_another_tenants_project_is_not_found(
    browser: httpx.AsyncClient, tenant: TenantFixture, other_tenant: TenantFixture
):
    theirs = await api_project(other_tenant, "Their secret project")
    await sign_in(browser, tenant, tenant.admin.email)
    for path in ("", "/board", "/budget", "/invoices", "/time"):
        r = await browser.get(f"/t/{tenant.slug}/projects/{theirs['id']}{path}")
        assert r.status_code == 404, path
        assert "Their secret project" not in r.text
    edit = await submit(
        browser,
        f"/t/{tenant.slug}/projects",
        f"/t/{tenant.slug}/projects/{theirs['id']}/edit",
        {"name": "Taken over", "version": str(theirs["version"])},
    )
    assert edit.status_code == 404
    after = await other_tenant.client.get(
        f"/api/v1/projects/{theirs['id']}", headers=other_tenant.admin.headers
    )
    assert after.json()["name"] == "Their secret project"


async def test_creating_a_project_through_the_form(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    await sign_in(browser, tenant, tenant.admin.email)
    r = await submit(
        browser,
        f"/t/{tenant.slug}/projects/new",
        f"/t/{tenant.slug}/projects",
        {
            "name": "Mercury",
            "description": "The first flight",
            "status": "active",
            "budget": "2500.50",
            "currency": "eur",
            "startDate": "2026-03-01",
            "endDate": "2026-06-30",
        },
    )
    assert r.status_code == 303, r.text
    project_id = r.headers["location"].split("/projects/")[1].split("?")[0]
    made = await api_get(tenant, f"/api/v1/projects/{project_id}")
    assert made["name"] == "Mercury" and made["status"] == "active"
    assert made["budgetMinor"] == 250050 and made["currency"] == "EUR"
    assert made["endDate"] == "2026-06-30"
    page = await browser.get(r.headers["location"])
    assert "Project created." in page.text and "The first flight" in page.text


async def test_bad_input_gives_the_form_back_with_messages(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    await sign_in(browser, tenant, tenant.admin.email)
    before = await api_get(tenant, "/api/v1/projects")
    cases = [
        ({"name": "   "}, "name"),
        ({"name": "Late", "startDate": "2026-05-01", "endDate": "2026-04-01"}, "endDate"),
        ({"name": "Bad money", "budget": "12.345"}, "budgetMinor"),
        ({"name": "Bad date", "startDate": "tomorrow"}, "startDate"),
        ({"name": "Bad status", "status": "finished"}, "status"),
        ({"name": "Bad currency", "currency": "euro"}, "currency"),
    ]
    for data, field in cases:
        r = await submit(
            browser, f"/t/{tenant.slug}/projects/new", f"/t/{tenant.slug}/projects", data
        )
        assert r.status_code == 422, (data, r.status_code)
        assert f"<code>{field}</code>" in r.text, data
        assert 'name="csrf_token"' in r.text  # the form again, ready to send
    after = await api_get(tenant, "/api/v1/projects")
    assert len(after["items"]) == len(before["items"])


async def test_the_new_project_page_needs_project_create(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    member = await tenant.member("team_member")
    await sign_in(browser, tenant, member.email)
    r = await browser.get(f"/t/{tenant.slug}/projects/new")
    assert r.status_code == 403 and "text/html" in r.headers["content-type"]
    home = await browser.get(f"/t/{tenant.slug}/")
    page = await browser.get(f"/t/{tenant.slug}/projects")
    assert page.status_code == 200 and home.status_code == 200
    forged = await browser.post(
        f"/t/{tenant.slug}/projects",
        data={
            "csrf_token": home.text.split('name="csrf_token" value="')[1].split('"')[0],
            "name": "X",
        },
    )
    assert forged.status_code == 403


async def test_a_role_without_project_read_gets_a_403_page(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    # A custom role with nothing but comment:read: signed in, but no project pages.
    r = await tenant.client.post(
        "/api/v1/roles",
        headers=tenant.admin.headers,
        json={"name": "reader-of-nothing", "permissions": ["comment:read"]},
    )
    assert r.status_code == 201, r.text
    someone = await tenant.member("reader-of-nothing")
    await sign_in(browser, tenant, someone.email)
    page = await browser.get(f"/t/{tenant.slug}/projects")
    assert page.status_code == 403
    assert "project:read" in page.text


async def test_editing_a_project_and_a_stale_version(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    project = await api_project(tenant, "Vostok", description="Old words")
    await sign_in(browser, tenant, tenant.admin.email)
    page_path = f"/t/{tenant.slug}/projects/{project['id']}"
    page = await browser.get(page_path)
    assert page.status_code == 200
    assert f'name="version" value="{project["version"]}"' in page.text
    saved = await submit(
        browser,
        page_path,
        f"{page_path}/edit",
        {
            "name": "Vostok 2",
            "description": "New words",
            "status": "active",
            "currency": "USD",
            "version": str(project["version"]),
        },
    )
    assert saved.status_code == 303
    now = await api_get(tenant, f"/api/v1/projects/{project['id']}")
    assert now["name"] == "Vostok 2" and now["status"] == "active"
    assert now["version"] == project["version"] + 1
    # The same form again, from the version before: someone else's change came in between.
    stale = await submit(
        browser,
        page_path,
        f"{page_path}/edit",
        {
            "name": "Overwritten",
            "description": "",
            "status": "cancelled",
            "currency": "USD",
            "version": str(project["version"]),
        },
    )
    assert stale.status_code == 412
    assert "changed by someone else" in stale.text and "reload" in stale.text
    unchanged = await api_get(tenant, f"/api/v1/projects/{project['id']}")
    assert unchanged["name"] == "Vostok 2" and unchanged["version"] == now["version"]
    # A rule the action checks after changing its fields in memory: nothing of it is kept.
    bad = await submit(
        browser,
        page_path,
        f"{page_path}/edit",
        {
            "name": "Renamed too",
            "startDate": "2026-09-01",
            "endDate": "2026-01-01",
            "currency": "USD",
            "version": str(now["version"]),
        },
    )
    assert bad.status_code == 422 and "endDate" in bad.text
    kept = await api_get(tenant, f"/api/v1/projects/{project['id']}")
    assert kept["name"] == "Vostok 2" and kept["version"] == now["version"]


async def test_members_add_change_role_and_remove(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    project = await api_project(tenant, "Soyuz")
    person = await tenant.member("team_member")
    await sign_in(browser, tenant, tenant.admin.email)
    page_path = f"/t/{tenant.slug}/projects/{project['id']}"
    page = await browser.get(page_path)
    assert person.email in page.text  # offered in the picker
    added = await submit(
        browser, page_path, f"{page_path}/members", {"userId": person.id, "projectRole": "observer"}
    )
    assert added.status_code == 303
    members = (await api_get(tenant, f"/api/v1/projects/{project['id']}/members"))["items"]
    assert [(m["userId"], m["projectRole"]) for m in members] == [(person.id, "observer")]
    again = await submit(
        browser, page_path, f"{page_path}/members", {"userId": person.id, "projectRole": "observer"}
    )
    assert again.status_code == 409 and "already a member" in again.text
    unknown = await submit(browser, page_path, f"{page_path}/members", {"userId": "not-a-uuid"})
    assert unknown.status_code == 422 and "userId" in unknown.text
    member = members[0]
    changed = await submit(
        browser,
        page_path,
        f"{page_path}/members/{member['id']}/role",
        {"projectRole": "manager", "version": str(member["version"])},
    )
    assert changed.status_code == 303
    now = (await api_get(tenant, f"/api/v1/projects/{project['id']}/members"))["items"][0]
    assert now["projectRole"] == "manager"
    stale = await submit(
        browser,
        page_path,
        f"{page_path}/members/{member['id']}/role",
        {"projectRole": "observer", "version": str(member["version"])},
    )
    assert stale.status_code == 412 and "changed by someone else" in stale.text
    removed = await submit(browser, page_path, f"{page_path}/members/{member['id']}/remove")
    assert removed.status_code == 303
    assert (await api_get(tenant, f"/api/v1/projects/{project['id']}/members"))["items"] == []


async def test_a_member_added_by_email_past_the_picker(
    browser: httpx.AsyncClient,
    tenant: TenantFixture,
    other_tenant: TenantFixture,
    monkeypatch,
):
    """A tenant larger than the picker: anyone is added by typing their address (any case);
    an unknown address, a deactivated person's or another tenant's is a 422 naming userEmail."""
    from kanvaro.web.console import people
    from kanvaro.web.console.work import common

    monkeypatch.setattr(people, "PICKER_LIMIT", 1)
    monkeypatch.setattr(common, "PICKER_LIMIT", 1)
    project = await api_project(tenant, "Vostok")
    person = await tenant.member("team_member")
    gone = await tenant.member("viewer")
    version = (await api_get(tenant, f"/api/v1/users/{gone.id}"))["version"]
    r = await tenant.client.patch(
        f"/api/v1/users/{gone.id}",
        headers=tenant.admin.headers,
        json={"isActive": False, "version": version},
    )
    assert r.status_code == 200, r.text
    stranger = await other_tenant.member("team_member")
    await sign_in(browser, tenant, tenant.admin.email)
    page_path = f"/t/{tenant.slug}/projects/{project['id']}"
    page = await browser.get(page_path)
    assert "type anyone else" in page.text
    for address in ("nobody@nowhere.example", gone.email, stranger.email):
        refused = await submit(browser, page_path, f"{page_path}/members", {"userEmail": address})
        assert refused.status_code == 422 and "<code>userEmail</code>" in refused.text, address
    added = await submit(
        browser,
        page_path,
        f"{page_path}/members",
        {"userEmail": person.email.upper(), "userId": ""},
    )
    assert added.status_code == 303
    members = (await api_get(tenant, f"/api/v1/projects/{project['id']}/members"))["items"]
    assert [m["userId"] for m in members] == [person.id]


async def test_members_are_managed_only_with_project_update(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    project = await api_project(tenant, "Salyut")
    member = await tenant.member("team_member")
    await api_member(tenant, project["id"], member.id)
    await sign_in(browser, tenant, member.email)
    page_path = f"/t/{tenant.slug}/projects/{project['id']}"
    page = await browser.get(page_path)
    assert page.status_code == 200
    assert f'{page_path}/members"' not in page.text and "Edit the project" not in page.text
    r = await submit(browser, page_path, f"{page_path}/members", {"userId": member.id})
    assert r.status_code == 403
    edit = await submit(
        browser, page_path, f"{page_path}/edit", {"name": "Mine now", "version": "1"}
    )
    assert edit.status_code == 403
    assert (await api_get(tenant, f"/api/v1/projects/{project['id']}"))["name"] == "Salyut"


async def test_deleting_a_project(browser: httpx.AsyncClient, tenant: TenantFixture):
    project = await api_project(tenant, "Skylab")
    await sign_in(browser, tenant, tenant.admin.email)
    page_path = f"/t/{tenant.slug}/projects/{project['id']}"
    r = await submit(browser, page_path, f"{page_path}/delete")
    assert r.status_code == 303 and r.headers["location"].endswith("notice=project-deleted")
    gone = await tenant.client.get(
        f"/api/v1/projects/{project['id']}", headers=tenant.admin.headers
    )
    assert gone.status_code == 404


async def test_a_long_member_list_pages_on(
    browser: httpx.AsyncClient, tenant: TenantFixture, monkeypatch
):
    from kanvaro.web.console.work import projects

    monkeypatch.setattr(projects, "MEMBERS_PAGE", 1)
    project = await api_project(tenant, "Many members")
    first, second = await tenant.member("team_member"), await tenant.member("viewer")
    for person in (first, second):
        await api_member(tenant, project["id"], person.id)
    await sign_in(browser, tenant, tenant.admin.email)
    page = await browser.get(f"/t/{tenant.slug}/projects/{project['id']}")
    more = re.search(r'href="([^"]*\?members=[^"]+)">More members', page.text)
    assert page.status_code == 200 and more, "no link to the other members"
    rest = await browser.get(more.group(1).replace("&amp;", "&"))
    assert rest.status_code == 200
    listed = (await api_get(tenant, f"/api/v1/projects/{project['id']}/members"))["items"]
    removable = re.compile(r"/members/([0-9a-f-]{36})/remove")
    on_first, on_rest = removable.findall(page.text), removable.findall(rest.text)
    assert len(on_first) == 1 and len(on_rest) == 1
    assert sorted(on_first + on_rest) == sorted(m["id"] for m in listed)
    bad = await browser.get(f"/t/{tenant.slug}/projects/{project['id']}", params={"members": "x"})
    assert bad.status_code in (400, 422)
