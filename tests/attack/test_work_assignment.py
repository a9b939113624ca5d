"""Issue 7 point 13: a fresh tenant's admin gets work assigned without the super admin.

The seed's role sets stay the defaults (its admin holds no ``task:assign``); the project role
``manager`` grants ``task:assign`` within that project, and the admin (``project:update``) can make
himself or anyone a manager of a project.
"""

from __future__ import annotations

from tests.work.conftest import join, new_project


async def _task(tenant, headers, project_id, assignees):
    return await tenant.client.post(
        "/api/v1/tasks",
        headers=headers,
        json={"projectId": project_id, "title": "Do it", "assigneeIds": assignees},
    )


async def test_fresh_admin_assigns_work_in_his_project(tenant):
    dev = await tenant.member("team_member")
    project = await new_project(tenant)  # created by the bootstrap admin
    await join(tenant, project["id"], dev)
    assert (await _task(tenant, tenant.admin.headers, project["id"], [dev.id])).status_code == 403
    r = await tenant.client.post(
        f"/api/v1/projects/{project['id']}/members",
        headers=tenant.admin.headers,
        json={"userId": tenant.admin.id, "projectRole": "manager"},
    )
    assert r.status_code == 201, r.text  # before: the manager project role granted nothing
    r = await _task(tenant, tenant.admin.headers, project["id"], [dev.id])
    assert r.status_code == 201, r.text
    task = r.json()
    r = await tenant.client.patch(
        f"/api/v1/tasks/{task['id']}",
        headers=tenant.admin.headers,
        json={"assigneeIds": [dev.id, tenant.admin.id], "version": 1},
    )
    assert r.status_code == 200 and len(r.json()["assigneeIds"]) == 2


async def test_manager_project_role_is_per_project(tenant):
    pm = await tenant.member("project_manager")
    dev = await tenant.member("team_member")
    r = await tenant.client.post("/api/v1/projects", headers=pm.headers, json={"name": "PM's"})
    assert r.status_code == 201
    theirs = r.json()
    # A project someone else created: the admin is no manager of it and may not assign...
    r = await _task(tenant, tenant.admin.headers, theirs["id"], [dev.id])
    assert r.status_code == 403
    # ...until he is made one (project:update lets him manage memberships).
    r = await tenant.client.post(
        f"/api/v1/projects/{theirs['id']}/members",
        headers=tenant.admin.headers,
        json={"userId": tenant.admin.id, "projectRole": "manager"},
    )
    assert r.status_code == 201, r.text
    assert (await _task(tenant, tenant.admin.headers, theirs["id"], [dev.id])).status_code == 201


async def test_contributor_cannot_assign_and_manager_only_in_his_project(tenant):
    dev = await tenant.member("team_member")
    lead = await tenant.member("team_member")
    a, b = await new_project(tenant), await new_project(tenant)
    await join(tenant, a["id"], dev)
    await join(tenant, b["id"], lead)
    r = await tenant.client.post(
        f"/api/v1/projects/{a['id']}/members",
        headers=tenant.admin.headers,
        json={"userId": lead.id, "projectRole": "manager"},
    )
    assert r.status_code == 201
    assert (await _task(tenant, lead.headers, a["id"], [dev.id])).status_code == 201
    assert (await _task(tenant, lead.headers, b["id"], [lead.id])).status_code == 403
    assert (await _task(tenant, dev.headers, a["id"], [dev.id])).status_code == 403
