"""Editing one's comment (the author only, a moderator cannot reword it) and a time entry
(one's own, anyone's with time:manage) on pages of their own: a stale version is refused and
nothing changes, bad input names its field, and the audit log records the change."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select

from kanvaro.audit.models import AuditLog
from kanvaro.services import Services
from tests.conftest import TenantFixture
from tests.web.console.conftest import sign_in, submit
from tests.web.console.work.conftest import api_get, api_member, api_project, api_task


async def _comment(tenant: TenantFixture, task_id: str, headers: dict[str, str], body: str):
    r = await tenant.client.post(
        f"/api/v1/tasks/{task_id}/comments", headers=headers, json={"body": body}
    )
    assert r.status_code == 201, r.text
    return r.json()


async def test_the_author_edits_his_comment_and_a_stale_version_changes_nothing(
    browser: httpx.AsyncClient, tenant: TenantFixture, services: Services
):
    project = await api_project(tenant, "Edit comments")
    dev = await tenant.member("team_member")
    await api_member(tenant, project["id"], dev.id)
    task = await api_task(tenant, project["id"], "Wording")
    mine = await _comment(tenant, task["id"], dev.headers, "First wording")
    await sign_in(browser, tenant, dev.email)
    task_path = f"/t/{tenant.slug}/tasks/{task['id']}"
    edit_path = f"{task_path}/comments/{mine['id']}/edit"
    assert edit_path in (await browser.get(task_path)).text
    page = await browser.get(edit_path)
    assert page.status_code == 200 and "First wording" in page.text
    saved = await submit(browser, edit_path, edit_path, {"body": "Better wording", "version": "1"})
    assert saved.status_code == 303 and "notice=comment-saved" in saved.headers["location"]
    stored = await api_get(tenant, f"/api/v1/tasks/{task['id']}/comments/{mine['id']}")
    assert stored["body"] == "Better wording" and stored["version"] == 2
    # The same form again (version 1): someone changed it since; nothing is saved.
    stale = await submit(browser, edit_path, edit_path, {"body": "Lost update", "version": "1"})
    assert stale.status_code == 412 and "changed by someone else" in stale.text
    empty = await submit(browser, edit_path, edit_path, {"body": "  ", "version": "2"})
    assert empty.status_code == 422 and "<code>body</code>" in empty.text
    stored = await api_get(tenant, f"/api/v1/tasks/{task['id']}/comments/{mine['id']}")
    assert stored["body"] == "Better wording" and stored["version"] == 2
    await services.audit.drain()
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as db:
        actions = (
            await db.execute(select(AuditLog.action).where(AuditLog.resource_id == mine["id"]))
        ).scalars()
        assert "api:comment:update" in list(actions)


async def test_nobody_rewords_someone_elses_comment_not_even_a_moderator(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    project = await api_project(tenant, "Edit comments two")
    dev = await tenant.member("team_member")
    await api_member(tenant, project["id"], dev.id)
    task = await api_task(tenant, project["id"], "Theirs")
    theirs = await _comment(tenant, task["id"], dev.headers, "The member's words")
    await sign_in(browser, tenant, tenant.admin.email)  # holds comment:delete
    task_path = f"/t/{tenant.slug}/tasks/{task['id']}"
    edit_path = f"{task_path}/comments/{theirs['id']}/edit"
    page = await browser.get(task_path)
    assert edit_path not in page.text and f"/comments/{theirs['id']}/delete" in page.text
    assert (await browser.get(edit_path)).status_code == 403
    refused = await submit(browser, task_path, edit_path, {"body": "Reworded", "version": "1"})
    assert refused.status_code == 403
    stored = await api_get(tenant, f"/api/v1/tasks/{task['id']}/comments/{theirs['id']}")
    assert stored["body"] == "The member's words"


async def test_editing_a_time_entry_from_the_task_and_from_the_project(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    project = await api_project(tenant, "Edit time")
    dev = await tenant.member("team_member")
    await api_member(tenant, project["id"], dev.id)
    task = await api_task(tenant, project["id"], "Hours")
    r = await tenant.client.post(
        "/api/v1/time-entries",
        headers=dev.headers,
        json={"projectId": project["id"], "taskId": task["id"], "date": "2026-03-02", "hours": 2},
    )
    entry = r.json()
    await sign_in(browser, tenant, dev.email)
    task_path = f"/t/{tenant.slug}/tasks/{task['id']}"
    edit_path = f"/t/{tenant.slug}/time-entries/{entry['id']}/edit"
    assert f"{edit_path}?back=task" in (await browser.get(task_path)).text
    form = {"date": "2026-03-03", "hours": "2.5", "description": "Review", "back": "task"}
    saved = await submit(browser, f"{edit_path}?back=task", edit_path, form | {"version": "1"})
    assert saved.status_code == 303 and saved.headers["location"].startswith(task_path)
    stored = await api_get(tenant, f"/api/v1/time-entries/{entry['id']}")
    assert (stored["date"], stored["hours"], stored["description"], stored["billable"]) == (
        "2026-03-03",
        "2.50",
        "Review",
        False,  # the box was not ticked
    )
    for bad, field in (({"hours": "25"}, "hours"), ({"date": "soon"}, "date")):
        r = await submit(browser, edit_path, edit_path, form | {"version": "2"} | bad)
        assert r.status_code == 422 and f"<code>{field}</code>" in r.text, bad
    stale = await submit(browser, edit_path, edit_path, form | {"version": "1", "hours": "1"})
    assert stale.status_code == 412
    assert (await api_get(tenant, f"/api/v1/time-entries/{entry['id']}"))["version"] == 2
    # From the project's time overview, back there.
    time_path = f"/t/{tenant.slug}/projects/{project['id']}/time"
    assert f"{edit_path}?back=project" in (await browser.get(time_path)).text
    again = await submit(
        browser, edit_path, edit_path, form | {"version": "2", "back": "project", "hours": "3"}
    )
    assert again.status_code == 303 and again.headers["location"].startswith(time_path)
    assert (await api_get(tenant, f"/api/v1/time-entries/{entry['id']}"))["hours"] == "3.00"


async def test_someone_elses_time_entry_needs_time_manage(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    project = await api_project(tenant, "Edit time two")
    dev = await tenant.member("team_member")
    await api_member(tenant, project["id"], dev.id)
    r = await tenant.client.post(
        "/api/v1/time-entries",
        headers=tenant.admin.headers,
        json={"projectId": project["id"], "date": "2026-03-02", "hours": 4},
    )
    entry = r.json()
    edit_path = f"/t/{tenant.slug}/time-entries/{entry['id']}/edit"
    await sign_in(browser, tenant, dev.email)
    time_path = f"/t/{tenant.slug}/projects/{project['id']}/time"
    assert edit_path not in (await browser.get(time_path)).text
    assert (await browser.get(edit_path)).status_code == 403
    refused = await submit(
        browser, time_path, edit_path, {"date": "2026-03-02", "hours": "1", "version": "1"}
    )
    assert refused.status_code == 403
    assert (await api_get(tenant, f"/api/v1/time-entries/{entry['id']}"))["hours"] == "4.00"
    # The admin (time:manage) corrects the member's... own entry here: his, edited by him.
    await sign_in(browser, tenant, tenant.admin.email)
    ok = await submit(
        browser, edit_path, edit_path, {"date": "2026-03-02", "hours": "1", "version": "1"}
    )
    assert ok.status_code == 303


async def test_editing_a_budget_entry_in_its_own_currency(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    project = await api_project(tenant, "Edit budget", currency="JPY")
    r = await tenant.client.post(
        "/api/v1/budget-entries",
        headers=tenant.admin.headers,
        json={
            "projectId": project["id"],
            "kind": "expense",
            "amountMinor": 1200,
            "date": "2026-03-01",
        },
    )
    entry = r.json()
    budget_path = f"/t/{tenant.slug}/projects/{project['id']}/budget"
    edit_path = f"/t/{tenant.slug}/budget-entries/{entry['id']}/edit"
    await sign_in(browser, tenant, tenant.admin.email)
    assert edit_path in (await browser.get(budget_path)).text
    page = await browser.get(edit_path)
    assert page.status_code == 200 and 'value="1200"' in page.text and "(JPY)" in page.text
    form = {"kind": "expense", "category": "travel", "description": "Taxi", "date": "2026-03-04"}
    saved = await submit(browser, edit_path, edit_path, form | {"amount": "1500", "version": "1"})
    assert saved.status_code == 303 and saved.headers["location"].startswith(budget_path)
    stored = await api_get(tenant, f"/api/v1/budget-entries/{entry['id']}")
    assert (stored["amountMinor"], stored["category"], stored["version"]) == (1500, "travel", 2)
    for bad, field in (
        ({"amount": "15.5"}, "amountMinor"),  # the yen has no minor unit
        ({"amount": "-3"}, "amountMinor"),  # only an adjustment may be negative
        ({"date": "later"}, "date"),
    ):
        r = await submit(
            browser, edit_path, edit_path, form | {"amount": "1", "version": "2"} | bad
        )
        assert r.status_code == 422 and f"<code>{field}</code>" in r.text, bad
    stale = await submit(browser, edit_path, edit_path, form | {"amount": "9", "version": "1"})
    assert stale.status_code == 412
    assert (await api_get(tenant, f"/api/v1/budget-entries/{entry['id']}"))["amountMinor"] == 1500


async def test_a_budget_entry_needs_budget_update(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    project = await api_project(tenant, "Edit budget two")
    r = await tenant.client.post(
        "/api/v1/budget-entries",
        headers=tenant.admin.headers,
        json={
            "projectId": project["id"],
            "kind": "planned",
            "amountMinor": 500,
            "date": "2026-03-01",
        },
    )
    entry = r.json()
    dev = await tenant.member("team_member")
    await api_member(tenant, project["id"], dev.id)
    await sign_in(browser, tenant, dev.email)
    edit_path = f"/t/{tenant.slug}/budget-entries/{entry['id']}/edit"
    assert (await browser.get(edit_path)).status_code == 403
    assert (await api_get(tenant, f"/api/v1/budget-entries/{entry['id']}"))["version"] == 1
