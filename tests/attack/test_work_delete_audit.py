"""Issue 7 point 5: every row a delete removes or changes has an audit entry in the same
transaction (no silent ON DELETE CASCADE / SET NULL)."""

from __future__ import annotations

from sqlalchemy import select

from kanvaro.audit.models import AuditLog
from tests.work.conftest import actions_for, audit_entries, join, new_project


async def _task(tenant, project_id, **fields):
    r = await tenant.client.post(
        "/api/v1/tasks",
        headers=tenant.admin.headers,
        json={"projectId": project_id, "title": "T", **fields},
    )
    assert r.status_code == 201, r.text
    return r.json()


async def test_project_delete_accounts_for_members_tasks_and_comments(tenant, services):
    c, h = tenant.client, tenant.admin.headers
    project = await new_project(tenant)
    dev = await tenant.member("team_member")
    await join(tenant, project["id"], dev)
    r = await c.post(
        f"/api/v1/projects/{project['id']}/members",
        headers=h,
        json={"userId": tenant.admin.id, "projectRole": "manager"},
    )
    assert r.status_code == 201
    members = (await c.get(f"/api/v1/projects/{project['id']}/members", headers=h)).json()
    member_ids = {m["id"] for m in members["items"]}
    assert len(member_ids) == 2
    tasks = [await _task(tenant, project["id"], assigneeIds=[dev.id]) for _ in range(2)]
    comments = []
    for task in tasks:
        r = await c.post(
            f"/api/v1/tasks/{task['id']}/comments", headers=dev.headers, json={"body": "hi"}
        )
        assert r.status_code == 201
        comments.append(r.json())

    assert (await c.delete(f"/api/v1/projects/{project['id']}", headers=h)).status_code == 204

    via = f"project:{project['id']}"
    for member_id in member_ids:
        entry = (await audit_entries(services, member_id))[-1]
        assert entry.action == "api:project_member:delete" and entry.category == "permissions"
        assert entry.changes["via"] == via and entry.changes["before"]["project_role"]
    for task in tasks:
        entry = (await audit_entries(services, task["id"]))[-1]
        assert entry.action == "api:task:delete" and entry.changes["via"] == via
        assert entry.changes["before"]["assignee_ids"] == [dev.id]
    for comment in comments:
        entry = (await audit_entries(services, comment["id"]))[-1]
        assert entry.action == "api:comment:delete" and entry.changes["via"] == via
        assert entry.changes["before"]["body"]
    # One transaction: the children's entries come before the project's, in one run.
    project_entry = (await audit_entries(services, project["id"]))[-1]
    assert project_entry.action == "api:project:delete"
    async with services.db.session(all_tenants=True) as session:
        run = (
            await session.execute(
                select(AuditLog.resource_type)
                .where(
                    AuditLog.chain_id == tenant.id,
                    AuditLog.sequence_number > project_entry.sequence_number - 7,
                    AuditLog.sequence_number <= project_entry.sequence_number,
                )
                .order_by(AuditLog.sequence_number)
            )
        ).scalars()
        assert sorted(run) == sorted(
            ["comment", "task", "comment", "task", "project_member", "project_member", "project"]
        )


async def test_refused_project_delete_writes_no_child_entries(tenant, services):
    c, h = tenant.client, tenant.admin.headers
    project = await new_project(tenant)
    task = await _task(tenant, project["id"])
    r = await c.post(
        "/api/v1/budget-entries",
        headers=h,
        json={"projectId": project["id"], "amountMinor": 100, "date": "2025-01-01"},
    )
    assert r.status_code == 201, r.text
    assert (await c.delete(f"/api/v1/projects/{project['id']}", headers=h)).status_code == 409
    assert await actions_for(services, task["id"]) == ["api:task:create"]
    assert (await c.get(f"/api/v1/tasks/{task['id']}", headers=h)).status_code == 200


async def test_task_delete_audits_the_time_entries_it_detaches(tenant, services):
    c, h = tenant.client, tenant.admin.headers
    project = await new_project(tenant)
    task = await _task(tenant, project["id"])
    r = await c.post(
        "/api/v1/time-entries",
        headers=h,
        json={"projectId": project["id"], "taskId": task["id"], "date": "2025-01-02", "hours": 2},
    )
    assert r.status_code == 201, r.text
    entry = r.json()
    assert (await c.delete(f"/api/v1/tasks/{task['id']}", headers=h)).status_code == 204

    detached = (await audit_entries(services, entry["id"]))[-1]
    assert detached.action == "api:time_entry:update"
    assert detached.changes["before"] == {"task_id": task["id"]}
    assert detached.changes["after"] == {"task_id": None}
    assert detached.changes["via"] == f"task:{task['id']}"
    now = (await c.get(f"/api/v1/time-entries/{entry['id']}", headers=h)).json()
    assert now["taskId"] is None and now["version"] == entry["version"] + 1
