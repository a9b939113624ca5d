from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from kanvaro.audit.models import AuditLog
from tests.work.conftest import actions_for, audit_entries, join, new_project, walk

pytestmark = pytest.mark.asyncio


async def _task(tenant, project_id, headers=None, **fields):
    r = await tenant.client.post(
        "/api/v1/tasks",
        headers=headers or tenant.admin.headers,
        json={"projectId": project_id, "title": "Write the plan", **fields},
    )
    assert r.status_code == 201, r.text
    return r.json()


async def test_task_crud_with_assignees_and_audit(tenant, make_member, services):
    c, h = tenant.client, tenant.admin.headers
    pm = await make_member(tenant, "project_manager")
    dev = await make_member(tenant, "team_member")
    project = await new_project(tenant)
    r = await c.post(
        "/api/v1/tasks",
        headers=pm.headers,
        json={
            "projectId": project["id"],
            "title": "Ship it",
            "priority": "high",
            "dueDate": "2030-01-31",
            "assigneeIds": [dev.id],
        },
    )
    assert r.status_code == 201, r.text
    task = r.json()
    assert task["assigneeIds"] == [dev.id] and task["status"] == "todo"
    assert task["priority"] == "high" and task["version"] == 1
    assert r.headers["etag"] == '"v1"'

    r = await c.get(f"/api/v1/tasks/{task['id']}", headers=h)
    assert r.status_code == 200 and r.json()["dueDate"] == "2030-01-31"

    r = await c.patch(
        f"/api/v1/tasks/{task['id']}",
        headers={**pm.headers, "If-Match": '"v1"'},
        json={"status": "in-progress", "assigneeIds": [pm.id, dev.id]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "in-progress" and r.json()["version"] == 2
    assert sorted(r.json()["assigneeIds"]) == sorted([pm.id, dev.id])

    # A change of assignees alone moves the version too (they live in their own table).
    r = await c.patch(
        f"/api/v1/tasks/{task['id']}", headers=pm.headers, json={"assigneeIds": [], "version": 2}
    )
    assert r.status_code == 200 and r.json()["assigneeIds"] == [] and r.json()["version"] == 3
    # Fields and assignees together: still one new version.
    r = await c.patch(
        f"/api/v1/tasks/{task['id']}",
        headers=pm.headers,
        json={"title": "Ship it now", "assigneeIds": [dev.id], "version": 3},
    )
    assert r.status_code == 200 and r.json()["version"] == 4
    r = await c.patch(
        f"/api/v1/tasks/{task['id']}",
        headers=pm.headers,
        json={"priority": "low", "assigneeIds": [], "version": 4},
    )
    assert r.status_code == 200 and r.json()["version"] == 5

    update = (await audit_entries(services, task["id"]))[1]
    assert update.action == "api:task:update"
    assert update.changes["before"] == {"status": "todo", "assignee_ids": [dev.id]}
    assert update.changes["after"]["status"] == "in-progress"

    r = await c.delete(f"/api/v1/tasks/{task['id']}", headers=h)
    assert r.status_code == 204
    assert (await c.get(f"/api/v1/tasks/{task['id']}", headers=h)).status_code == 404
    assert await actions_for(services, task["id"]) == [
        "api:task:create",
        *["api:task:update"] * 4,
        "api:task:delete",
    ]


async def test_list_filters(tenant, make_member):
    c, h = tenant.client, tenant.admin.headers
    dev = await make_member(tenant, "team_member")
    pm = await make_member(tenant, "project_manager")  # the admin role holds no task:assign
    p1, p2 = await new_project(tenant), await new_project(tenant)
    a = await _task(tenant, p1["id"], priority="low", dueDate="2030-01-10")
    b = await _task(tenant, p1["id"], priority="critical", dueDate="2030-02-10")
    await c.patch(f"/api/v1/tasks/{b['id']}", headers=h, json={"status": "done", "version": 1})
    d = await _task(tenant, p2["id"], pm.headers, assigneeIds=[dev.id])

    def ids(items):
        return {t["id"] for t in items}

    url = "/api/v1/tasks"
    assert ids(await walk(c, url, h, projectId=p1["id"])) == {a["id"], b["id"]}
    assert ids(await walk(c, url, h, projectId=p1["id"], status="done")) == {b["id"]}
    assert ids(await walk(c, url, h, projectId=p1["id"], priority="low")) == {a["id"]}
    assert ids(await walk(c, url, h, assigneeId=dev.id)) == {d["id"]}
    assert ids(await walk(c, url, h, projectId=p1["id"], dueBefore="2030-01-31")) == {a["id"]}
    assert ids(await walk(c, url, h, projectId=p1["id"], dueAfter="2030-01-31")) == {b["id"]}
    assert ids(await walk(c, url, h, projectId=p1["id"], limit=1)) == {a["id"], b["id"]}
    r = await c.get(url, headers=h, params={"priority": "urgent"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "priority"


async def test_validation_names_the_field(tenant):
    c, h = tenant.client, tenant.admin.headers
    pid = (await new_project(tenant))["id"]
    cases = [
        ({"projectId": pid, "title": "T", "owner": "me"}, "owner"),
        ({"projectId": pid, "title": ""}, "title"),
        ({"projectId": pid, "title": "x" * 201}, "title"),
        ({"projectId": pid, "title": "bell\x07"}, "title"),
        ({"projectId": pid, "title": "T", "priority": "urgent"}, "priority"),
        ({"projectId": pid, "title": "T", "status": "blocked"}, "status"),
        ({"projectId": pid, "title": "T", "description": "x" * 10001}, "description"),
        ({"projectId": pid, "title": "T", "assigneeIds": ["not-a-uuid"]}, "assigneeIds.0"),
        ({"title": "T"}, "projectId"),
    ]
    for body, field in cases:
        r = await c.post("/api/v1/tasks", headers=h, json=body)
        assert r.status_code == 422, (body, r.text)
        assert field in [e["field"] for e in r.json()["errors"]], (body, r.text)
    task = await _task(tenant, pid)
    r = await c.patch(f"/api/v1/tasks/{task['id']}", headers=h, json={"title": None, "version": 1})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "title"


async def test_description_is_sanitized(tenant):
    pid = (await new_project(tenant))["id"]
    task = await _task(
        tenant,
        pid,
        description='<p onclick="steal()"><strong>Hi</strong><script>alert(1)</script></p>',
    )
    assert task["description"] == "<p><strong>Hi</strong></p>"


async def test_unknown_assignee_names_the_field(tenant, other_tenant, make_member):
    pm = await make_member(tenant, "project_manager")
    pid = (await new_project(tenant))["id"]
    for user_id in (other_tenant.admin.id, "00000000-0000-4000-8000-000000000000"):
        r = await tenant.client.post(
            "/api/v1/tasks",
            headers=pm.headers,
            json={"projectId": pid, "title": "T", "assigneeIds": [user_id]},
        )
        assert r.status_code == 404, r.text
        assert r.json()["errors"][0]["field"] == "assigneeIds"


async def test_stale_version_is_refused_and_nothing_is_lost(tenant):
    c, h = tenant.client, tenant.admin.headers
    task = await _task(tenant, (await new_project(tenant))["id"])
    url = f"/api/v1/tasks/{task['id']}"
    assert (await c.patch(url, headers=h, json={"title": "A", "version": 1})).status_code == 200
    stale = await c.patch(url, headers={**h, "If-Match": '"v1"'}, json={"title": "B"})
    assert stale.status_code == 412 and stale.json()["currentVersion"] == 2
    assert (await c.get(url, headers=h)).json()["title"] == "A"
    assert (await c.patch(url, headers=h, json={"title": "C"})).status_code == 428


async def test_other_tenant_gets_404_and_sees_nothing(tenant, other_tenant, services):
    task = await _task(tenant, (await new_project(tenant))["id"])
    oc, oh = other_tenant.client, other_tenant.admin.headers
    url = f"/api/v1/tasks/{task['id']}"
    assert (await oc.get(url, headers=oh)).status_code == 404
    assert (await oc.patch(url, headers=oh, json={"title": "X", "version": 1})).status_code == 404
    assert (await oc.delete(url, headers=oh)).status_code == 404
    assert task["id"] not in {t["id"] for t in await walk(oc, "/api/v1/tasks", oh)}
    # Nor can a task be created in another tenant's project.
    r = await oc.post(
        "/api/v1/tasks", headers=oh, json={"projectId": task["projectId"], "title": "Sneak"}
    )
    assert r.status_code == 404
    assert await actions_for(services, task["id"]) == ["api:task:create"]


async def test_team_member_sees_only_his_projects(tenant, make_member):
    c = tenant.client
    dev = await make_member(tenant, "team_member")
    mine, theirs = await new_project(tenant), await new_project(tenant)
    await join(tenant, mine["id"], dev)
    visible = await _task(tenant, mine["id"])
    hidden = await _task(tenant, theirs["id"])

    listed = {t["id"] for t in await walk(c, "/api/v1/tasks", dev.headers)}
    assert visible["id"] in listed and hidden["id"] not in listed
    assert (await c.get(f"/api/v1/tasks/{hidden['id']}", headers=dev.headers)).status_code == 404
    r = await c.patch(
        f"/api/v1/tasks/{hidden['id']}", headers=dev.headers, json={"title": "X", "version": 1}
    )
    assert r.status_code == 404
    r = await c.post(
        "/api/v1/tasks", headers=dev.headers, json={"projectId": theirs["id"], "title": "X"}
    )
    assert r.status_code == 404
    own = await _task(tenant, mine["id"], headers=dev.headers)
    assert own["createdBy"] == dev.id


async def test_assigning_needs_task_assign(tenant, make_member, services):
    c = tenant.client
    dev = await make_member(tenant, "team_member")  # task:create and task:update, no task:assign
    project = await new_project(tenant)
    await join(tenant, project["id"], dev)
    r = await c.post(
        "/api/v1/tasks",
        headers=dev.headers,
        json={"projectId": project["id"], "title": "Mine", "assigneeIds": [dev.id]},
    )
    assert r.status_code == 403
    task = await _task(tenant, project["id"], headers=dev.headers)
    url = f"/api/v1/tasks/{task['id']}"
    r = await c.patch(url, headers=dev.headers, json={"assigneeIds": [dev.id], "version": 1})
    assert r.status_code == 403
    # Sending the unchanged (empty) set with another change is not an assignment.
    r = await c.patch(
        url, headers=dev.headers, json={"assigneeIds": [], "status": "review", "version": 1}
    )
    assert r.status_code == 200, r.text
    assert await actions_for(services, task["id"]) == ["api:task:create", "api:task:update"]
    assert (await c.get(url, headers=dev.headers)).json()["assigneeIds"] == []
    # Each refusal is itself audited (outside the rolled-back transaction).
    await services.audit.drain()  # entries are sequenced after commit
    async with services.db.session(all_tenants=True) as session:
        rows = await session.execute(
            select(AuditLog).where(
                AuditLog.action == "api:permission:denied",
                AuditLog.actor_id == uuid.UUID(dev.id),
            )
        )
        denied = [e.changes["permission"] for e in rows.scalars()]
    assert denied == ["task:assign", "task:assign"]


async def test_refused_change_leaves_no_audit_entry(tenant, make_member, services):
    viewer = await make_member(tenant, "viewer")
    project = await new_project(tenant)
    await join(tenant, project["id"], viewer)
    task = await _task(tenant, project["id"])
    r = await tenant.client.patch(
        f"/api/v1/tasks/{task['id']}", headers=viewer.headers, json={"title": "X", "version": 1}
    )
    assert r.status_code == 403
    r = await tenant.client.delete(f"/api/v1/tasks/{task['id']}", headers=viewer.headers)
    assert r.status_code == 403
    assert await actions_for(services, task["id"]) == ["api:task:create"]


async def test_leaving_a_project_hides_its_tasks(tenant, make_member):
    c, h = tenant.client, tenant.admin.headers
    dev = await make_member(tenant, "team_member")
    project = await new_project(tenant)
    r = await c.post(
        f"/api/v1/projects/{project['id']}/members", headers=h, json={"userId": dev.id}
    )
    membership = r.json()["id"]
    task = await _task(tenant, project["id"])
    url = f"/api/v1/tasks/{task['id']}"
    assert (await c.get(url, headers=dev.headers)).status_code == 200
    r = await c.delete(f"/api/v1/projects/{project['id']}/members/{membership}", headers=h)
    assert r.status_code == 204
    assert (await c.get(url, headers=dev.headers)).status_code == 404
    assert task["id"] not in {t["id"] for t in await walk(c, "/api/v1/tasks", dev.headers)}
