"""A task's page: its fields and edit form (with its version), assignees, comments (one's own
deleted, anyone's moderated with comment:delete) and time logged on it."""

from __future__ import annotations

import httpx

from tests.conftest import TenantFixture
from tests.web.console.conftest import sign_in, submit
from tests.web.console.work.conftest import api_get, api_member, api_project, api_task


async def test_the_task_page_shows_its_fields_comments_and_time(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    project = await api_project(tenant, "Task page")
    task = await api_task(
        tenant, project["id"], "Detailed", description="<p>Some <b>bold</b> words</p>"
    )
    r = await tenant.client.post(
        f"/api/v1/tasks/{task['id']}/comments",
        headers=tenant.admin.headers,
        json={"body": "First remark <script>alert(1)</script>"},
    )
    assert r.status_code == 201, r.text
    r = await tenant.client.post(
        "/api/v1/time-entries",
        headers=tenant.admin.headers,
        json={
            "projectId": project["id"],
            "taskId": task["id"],
            "date": "2026-01-05",
            "hours": "2.5",
            "description": "Reading",
        },
    )
    assert r.status_code == 201, r.text
    await sign_in(browser, tenant, tenant.admin.email)
    page = await browser.get(f"/t/{tenant.slug}/tasks/{task['id']}")
    assert page.status_code == 200
    assert "Detailed" in page.text and "<b>bold</b>" in page.text
    assert "First remark" in page.text and "<script>alert" not in page.text
    assert "2.50" in page.text and "Reading" in page.text and "2026-01-05" in page.text
    assert f'name="version" value="{task["version"]}"' in page.text


async def test_editing_a_task_and_a_stale_version(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    project = await api_project(tenant, "Task edit")
    task = await api_task(tenant, project["id"], "Old title")
    await sign_in(browser, tenant, tenant.admin.email)
    page_path = f"/t/{tenant.slug}/tasks/{task['id']}"
    saved = await submit(
        browser,
        page_path,
        f"{page_path}/edit",
        {
            "title": "New title",
            "description": "Now with words",
            "priority": "low",
            "status": "review",
            "dueDate": "2026-07-07",
            "version": str(task["version"]),
        },
    )
    assert saved.status_code == 303
    now = await api_get(tenant, f"/api/v1/tasks/{task['id']}")
    assert (now["title"], now["priority"], now["status"], now["dueDate"]) == (
        "New title",
        "low",
        "review",
        "2026-07-07",
    )
    stale = await submit(
        browser,
        page_path,
        f"{page_path}/edit",
        {
            "title": "Lost update",
            "priority": "high",
            "status": "todo",
            "version": str(task["version"]),
        },
    )
    assert stale.status_code == 412 and "changed by someone else" in stale.text
    assert 'value="Lost update"' in stale.text  # what was typed is not thrown away
    after = await api_get(tenant, f"/api/v1/tasks/{task['id']}")
    assert after["title"] == "New title" and after["version"] == now["version"]
    bad = await submit(
        browser,
        page_path,
        f"{page_path}/edit",
        {"title": "", "priority": "urgent", "version": str(now["version"])},
    )
    assert bad.status_code == 422 and "title" in bad.text and "priority" in bad.text


async def test_assigning_and_unassigning(browser: httpx.AsyncClient, tenant: TenantFixture):
    project = await api_project(tenant, "Task assign")
    pm = await tenant.member("project_manager")
    dev = await tenant.member("team_member")
    await api_member(tenant, project["id"], dev.id)
    task = await api_task(tenant, project["id"], "Who does it")
    await sign_in(browser, tenant, pm.email)
    page_path = f"/t/{tenant.slug}/tasks/{task['id']}"
    added = await submit(
        browser,
        page_path,
        f"{page_path}/assignees",
        {"userId": dev.id, "version": str(task["version"])},
    )
    assert added.status_code == 303
    now = await api_get(tenant, f"/api/v1/tasks/{task['id']}")
    assert now["assigneeIds"] == [dev.id]
    removed = await submit(
        browser,
        page_path,
        f"{page_path}/assignees/remove",
        {"userId": dev.id, "version": str(now["version"])},
    )
    assert removed.status_code == 303
    assert (await api_get(tenant, f"/api/v1/tasks/{task['id']}"))["assigneeIds"] == []


async def test_assigning_needs_task_assign(browser: httpx.AsyncClient, tenant: TenantFixture):
    project = await api_project(tenant, "Task no assign")
    dev = await tenant.member("team_member")
    await api_member(tenant, project["id"], dev.id)
    task = await api_task(tenant, project["id"], "Not yours to give")
    await sign_in(browser, tenant, dev.email)
    page_path = f"/t/{tenant.slug}/tasks/{task['id']}"
    page = await browser.get(page_path)
    assert f'{page_path}/assignees"' not in page.text
    r = await submit(
        browser, page_path, f"{page_path}/assignees", {"userId": dev.id, "version": "1"}
    )
    assert r.status_code == 403
    assert (await api_get(tenant, f"/api/v1/tasks/{task['id']}"))["assigneeIds"] == []


async def test_comments_add_delete_own_and_moderate(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    project = await api_project(tenant, "Task comments")
    dev = await tenant.member("team_member")
    await api_member(tenant, project["id"], dev.id)
    task = await api_task(tenant, project["id"], "Talk about it")
    theirs = await tenant.client.post(
        f"/api/v1/tasks/{task['id']}/comments",
        headers=tenant.admin.headers,
        json={"body": "The admin's comment"},
    )
    await sign_in(browser, tenant, dev.email)
    page_path = f"/t/{tenant.slug}/tasks/{task['id']}"
    added = await submit(browser, page_path, f"{page_path}/comments", {"body": "Mine, first"})
    assert added.status_code == 303
    comments = (await api_get(tenant, f"/api/v1/tasks/{task['id']}/comments"))["items"]
    mine = next(c for c in comments if c["body"] == "Mine, first")
    assert mine["authorId"] == dev.id
    empty = await submit(browser, page_path, f"{page_path}/comments", {"body": "  "})
    assert empty.status_code == 422 and "<code>body</code>" in empty.text
    page = await browser.get(page_path)
    assert f"/comments/{theirs.json()['id']}/delete" not in page.text  # not his to delete
    refused = await submit(browser, page_path, f"{page_path}/comments/{theirs.json()['id']}/delete")
    assert refused.status_code == 403
    deleted = await submit(browser, page_path, f"{page_path}/comments/{mine['id']}/delete")
    assert deleted.status_code == 303
    left = (await api_get(tenant, f"/api/v1/tasks/{task['id']}/comments"))["items"]
    assert [c["body"] for c in left] == ["The admin's comment"]
    # A moderator (comment:delete) removes anyone's.
    await sign_in(browser, tenant, tenant.admin.email)
    r = await tenant.client.post(
        f"/api/v1/tasks/{task['id']}/comments",
        headers={"Authorization": dev.headers["Authorization"]},
        json={"body": "Needs moderating"},
    )
    moderated = await submit(browser, page_path, f"{page_path}/comments/{r.json()['id']}/delete")
    assert moderated.status_code == 303
    left = (await api_get(tenant, f"/api/v1/tasks/{task['id']}/comments"))["items"]
    assert [c["body"] for c in left] == ["The admin's comment"]


async def test_logging_time_on_a_task(browser: httpx.AsyncClient, tenant: TenantFixture):
    project = await api_project(tenant, "Task time")
    dev = await tenant.member("team_member")
    await api_member(tenant, project["id"], dev.id)
    task = await api_task(tenant, project["id"], "Hours here")
    await sign_in(browser, tenant, dev.email)
    page_path = f"/t/{tenant.slug}/tasks/{task['id']}"
    logged = await submit(
        browser,
        page_path,
        f"{page_path}/time",
        {"date": "2026-02-02", "hours": "1.75", "description": "Pairing", "billable": "on"},
    )
    assert logged.status_code == 303
    entries = (await api_get(tenant, f"/api/v1/time-entries?taskId={task['id']}"))["items"]
    assert [(e["hours"], e["userId"], e["billable"]) for e in entries] == [("1.75", dev.id, True)]
    for data, field in (
        ({"date": "2026-02-02", "hours": "25"}, "hours"),
        ({"date": "2026-02-02", "hours": "1.234"}, "hours"),
        ({"date": "2026-02-02", "hours": "lots"}, "hours"),
        ({"date": "yesterday", "hours": "1"}, "date"),
        ({"date": "2026-02-02", "hours": "23"}, "hours"),  # 24.75 on one day
    ):
        r = await submit(browser, page_path, f"{page_path}/time", data)
        assert r.status_code == 422, (data, r.status_code)
        assert f"<code>{field}</code>" in r.text, data
    assert len((await api_get(tenant, f"/api/v1/time-entries?taskId={task['id']}"))["items"]) == 1
    deleted = await submit(
        browser,
        page_path,
        f"/t/{tenant.slug}/time-entries/{entries[0]['id']}/delete",
        {"back": "task"},
    )
    assert deleted.status_code == 303 and deleted.headers["location"].startswith(page_path)
    assert (await api_get(tenant, f"/api/v1/time-entries?taskId={task['id']}"))["items"] == []


async def test_someone_elses_time_entry_is_not_deleted(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    project = await api_project(tenant, "Task time two")
    dev = await tenant.member("team_member")
    await api_member(tenant, project["id"], dev.id)
    task = await api_task(tenant, project["id"], "Admin hours")
    r = await tenant.client.post(
        "/api/v1/time-entries",
        headers=tenant.admin.headers,
        json={"projectId": project["id"], "taskId": task["id"], "date": "2026-01-05", "hours": 3},
    )
    entry = r.json()
    await sign_in(browser, tenant, dev.email)
    page_path = f"/t/{tenant.slug}/tasks/{task['id']}"
    page = await browser.get(page_path)
    assert f"/time-entries/{entry['id']}/delete" not in page.text
    refused = await submit(
        browser, page_path, f"/t/{tenant.slug}/time-entries/{entry['id']}/delete"
    )
    assert refused.status_code == 403
    assert len((await api_get(tenant, f"/api/v1/time-entries?taskId={task['id']}"))["items"]) == 1


async def test_a_viewer_reads_but_has_no_forms(browser: httpx.AsyncClient, tenant: TenantFixture):
    project = await api_project(tenant, "Task viewer")
    viewer = await tenant.member("viewer")
    await api_member(tenant, project["id"], viewer.id, "observer")
    task = await api_task(tenant, project["id"], "Read only")
    await sign_in(browser, tenant, viewer.email)
    page_path = f"/t/{tenant.slug}/tasks/{task['id']}"
    page = await browser.get(page_path)
    assert page.status_code == 200 and "Read only" in page.text
    for action in ("/edit", '/comments"', '/time"', "/delete"):
        assert f"{page_path}{action}" not in page.text, action
    for action, data in (
        ("/edit", {"title": "x", "version": "1"}),
        ("/comments", {"body": "x"}),
        ("/time", {"date": "2026-01-01", "hours": "1"}),
        ("/delete", {}),
    ):
        r = await submit(browser, page_path, f"{page_path}{action}", data)
        assert r.status_code == 403, action


async def test_deleting_a_task(browser: httpx.AsyncClient, tenant: TenantFixture):
    project = await api_project(tenant, "Task delete")
    task = await api_task(tenant, project["id"], "Short lived")
    await sign_in(browser, tenant, tenant.admin.email)
    page_path = f"/t/{tenant.slug}/tasks/{task['id']}"
    r = await submit(browser, page_path, f"{page_path}/delete")
    assert r.status_code == 303 and "/board?notice=task-deleted" in r.headers["location"]
    gone = await tenant.client.get(f"/api/v1/tasks/{task['id']}", headers=tenant.admin.headers)
    assert gone.status_code == 404


async def test_assigning_by_email_past_the_picker(
    browser: httpx.AsyncClient, tenant: TenantFixture, other_tenant: TenantFixture, monkeypatch
):
    from kanvaro.web.console.work import board, task_pages

    monkeypatch.setattr(board, "MEMBER_PICKER_LIMIT", 1)
    monkeypatch.setattr(task_pages, "MEMBER_PICKER_LIMIT", 1)
    project = await api_project(tenant, "Task assign by email")
    first, second = await tenant.member("team_member"), await tenant.member("team_member")
    for person in (first, second):
        await api_member(tenant, project["id"], person.id)
    stranger = await other_tenant.member("team_member")
    task = await api_task(tenant, project["id"], "Big team")
    pm = await tenant.member("project_manager")
    await sign_in(browser, tenant, pm.email)
    page_path = f"/t/{tenant.slug}/tasks/{task['id']}"
    page = await browser.get(page_path)
    assert 'name="userEmail"' in page.text and "first members only" in page.text
    refused = await submit(
        browser,
        page_path,
        f"{page_path}/assignees",
        {"userEmail": stranger.email, "version": str(task["version"])},
    )
    assert refused.status_code == 422 and "<code>userEmail</code>" in refused.text
    for person in (first, second):
        now = await api_get(tenant, f"/api/v1/tasks/{task['id']}")
        added = await submit(
            browser,
            page_path,
            f"{page_path}/assignees",
            {"userEmail": person.email.upper(), "version": str(now["version"])},
        )
        assert added.status_code == 303, added.text
    now = await api_get(tenant, f"/api/v1/tasks/{task['id']}")
    assert sorted(now["assigneeIds"]) == sorted([first.id, second.id])
