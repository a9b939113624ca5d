"""Issue 7 point 9: a reference to something the caller cannot see answers exactly like a
reference to something that does not exist (same status, same body)."""

from __future__ import annotations

import uuid

from tests.work.conftest import join, new_project


async def _task(tenant, project_id):
    r = await tenant.client.post(
        "/api/v1/tasks", headers=tenant.admin.headers, json={"projectId": project_id, "title": "T"}
    )
    assert r.status_code == 201, r.text
    return r.json()


async def _world(tenant):
    """dev is a member of ``mine`` only; ``hidden`` and its task exist in the same tenant."""
    mine, hidden = await new_project(tenant), await new_project(tenant)
    dev = await tenant.member("team_member")
    await join(tenant, mine["id"], dev)
    return dev, mine, hidden, await _task(tenant, hidden["id"])


async def _same(first, second):
    assert first.status_code == second.status_code, (first.text, second.text)
    assert first.json() == second.json()
    return first


async def test_time_entry_with_a_task_of_a_hidden_project(tenant):
    dev, mine, _, hidden_task = await _world(tenant)

    async def post(task_id):
        body = {"projectId": mine["id"], "taskId": task_id, "date": "2025-01-01", "hours": 1}
        return await tenant.client.post("/api/v1/time-entries", headers=dev.headers, json=body)

    r = await _same(await post(hidden_task["id"]), await post(str(uuid.uuid4())))
    assert r.status_code == 404 and r.json()["errors"][0]["field"] == "taskId"


async def test_time_entry_update_with_a_task_of_a_hidden_project(tenant):
    dev, mine, _, hidden_task = await _world(tenant)
    body = {"projectId": mine["id"], "date": "2025-01-01", "hours": 1}
    entry = (
        await tenant.client.post("/api/v1/time-entries", headers=dev.headers, json=body)
    ).json()

    async def patch(task_id):
        return await tenant.client.patch(
            f"/api/v1/time-entries/{entry['id']}",
            headers=dev.headers,
            json={"taskId": task_id, "version": 1},
        )

    await _same(await patch(hidden_task["id"]), await patch(str(uuid.uuid4())))


async def test_project_ids_in_bodies(tenant, other_tenant):
    dev, _, hidden, _ = await _world(tenant)
    foreign = await new_project(other_tenant)
    c = tenant.client

    async def post(url, project_id, **extra):
        return await c.post(url, headers=dev.headers, json={"projectId": project_id, **extra})

    for url, extra in (
        ("/api/v1/tasks", {"title": "x"}),
        ("/api/v1/time-entries", {"date": "2025-01-01", "hours": 1}),
    ):
        unknown = await post(url, str(uuid.uuid4()), **extra)
        assert unknown.status_code == 404
        await _same(await post(url, hidden["id"], **extra), unknown)
        await _same(await post(url, foreign["id"], **extra), unknown)


async def test_filters_by_hidden_ids(tenant):
    dev, _, hidden, hidden_task = await _world(tenant)
    c = tenant.client
    for url, name, value in (
        ("/api/v1/tasks", "projectId", hidden["id"]),
        ("/api/v1/time-entries", "projectId", hidden["id"]),
        ("/api/v1/time-entries", "taskId", hidden_task["id"]),
    ):
        seen = await c.get(url, headers=dev.headers, params={name: value})
        unknown = await c.get(url, headers=dev.headers, params={name: str(uuid.uuid4())})
        await _same(seen, unknown)


async def test_paths_under_a_hidden_task_or_project(tenant):
    dev, _, hidden, hidden_task = await _world(tenant)
    c = tenant.client
    for template, real in (
        ("/api/v1/tasks/{}/comments", hidden_task["id"]),
        ("/api/v1/projects/{}/members", hidden["id"]),
    ):
        # The instance differs with the path, so compare all but that.
        seen = await c.get(template.format(real), headers=dev.headers)
        unknown = await c.get(template.format(uuid.uuid4()), headers=dev.headers)
        assert seen.status_code == unknown.status_code == 404
        strip = lambda r: {k: v for k, v in r.json().items() if k != "instance"}  # noqa: E731
        assert strip(seen) == strip(unknown)


async def test_member_with_a_user_of_another_tenant(tenant, other_tenant):
    project = await new_project(tenant)

    async def add(user_id):
        return await tenant.client.post(
            f"/api/v1/projects/{project['id']}/members",
            headers=tenant.admin.headers,
            json={"userId": user_id},
        )

    r = await _same(await add(other_tenant.admin.id), await add(str(uuid.uuid4())))
    assert r.status_code == 404 and r.json()["errors"][0]["field"] == "userId"
