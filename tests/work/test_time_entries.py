from __future__ import annotations

import pytest

from tests.work.conftest import actions_for, audit_entries, join, new_project, walk

pytestmark = pytest.mark.asyncio
URL = "/api/v1/time-entries"


async def _log(client, headers, project_id, **fields):
    body = {"projectId": project_id, "date": "2025-03-02", "hours": "1.50", **fields}
    r = await client.post(URL, headers=headers, json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def test_time_entry_crud_and_audit(tenant, make_member, services):
    c = tenant.client
    dev = await make_member(tenant, "team_member")
    project = await new_project(tenant)
    await join(tenant, project["id"], dev)
    task = (
        await c.post(
            "/api/v1/tasks",
            headers=tenant.admin.headers,
            json={"projectId": project["id"], "title": "Build"},
        )
    ).json()
    entry = await _log(
        c, dev.headers, project["id"], taskId=task["id"], description="Pairing", billable=False
    )
    assert entry["userId"] == dev.id and entry["hours"] == "1.50" and entry["date"] == "2025-03-02"
    assert entry["billable"] is False and entry["taskId"] == task["id"]
    url = f"{URL}/{entry['id']}"
    assert (await c.get(url, headers=dev.headers)).json()["description"] == "Pairing"

    r = await c.patch(url, headers={**dev.headers, "If-Match": '"v1"'}, json={"hours": 2.25})
    assert r.status_code == 200, r.text
    assert r.json()["hours"] == "2.25" and r.json()["version"] == 2
    stale = await c.patch(url, headers=dev.headers, json={"hours": 3, "version": 1})
    assert stale.status_code == 412
    assert (await c.get(url, headers=dev.headers)).json()["hours"] == "2.25"

    update = (await audit_entries(services, entry["id"]))[1]
    assert update.changes == {"before": {"hours": "1.50"}, "after": {"hours": "2.25"}}
    assert (await c.delete(url, headers=dev.headers)).status_code == 204
    assert (await c.get(url, headers=dev.headers)).status_code == 404
    assert await actions_for(services, entry["id"]) == [
        "api:time_entry:create",
        "api:time_entry:update",
        "api:time_entry:delete",
    ]


async def test_hours_and_fields_are_validated(tenant):
    c, h = tenant.client, tenant.admin.headers
    pid = (await new_project(tenant))["id"]
    base = {"projectId": pid, "date": "2025-03-02"}
    for extra, field in (
        ({"hours": 0}, "hours"),
        ({"hours": -1}, "hours"),
        ({"hours": 24.01}, "hours"),
        ({"hours": 1.234}, "hours"),
        ({"hours": "NaN"}, "hours"),
        ({"hours": 1, "description": "x" * 1001}, "description"),
        ({"hours": 1, "description": "nul\x00"}, "description"),
        ({"hours": 1, "date": "yesterday"}, "date"),
        ({"hours": 1, "rate": 50}, "rate"),
    ):
        r = await c.post(URL, headers=h, json={**base, **extra})
        assert r.status_code == 422, (extra, r.text)
        assert r.json()["errors"][0]["field"] == field, (extra, r.text)
    ok = await _log(c, h, pid, hours=24)
    assert ok["hours"] == "24.00"


async def test_task_must_belong_to_the_project(tenant):
    c, h = tenant.client, tenant.admin.headers
    p1, p2 = await new_project(tenant), await new_project(tenant)
    task = (
        await c.post("/api/v1/tasks", headers=h, json={"projectId": p2["id"], "title": "T"})
    ).json()
    r = await c.post(
        URL,
        headers=h,
        json={"projectId": p1["id"], "taskId": task["id"], "date": "2025-01-01", "hours": 1},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "taskId"


async def test_logging_for_someone_else_needs_time_manage(tenant, make_member, services):
    c = tenant.client
    dev = await make_member(tenant, "team_member")
    peer = await make_member(tenant, "team_member")
    pm = await make_member(tenant, "project_manager")  # holds time:manage
    project = await new_project(tenant)
    for m in (dev, peer):
        await join(tenant, project["id"], m)

    r = await c.post(
        URL,
        headers=dev.headers,
        json={"projectId": project["id"], "userId": peer.id, "date": "2025-01-01", "hours": 1},
    )
    assert r.status_code == 403
    logged = await _log(c, pm.headers, project["id"], userId=peer.id)
    assert logged["userId"] == peer.id and logged["createdBy"] == pm.id

    # The peer's own entry: the peer may edit it, dev may not, the manager may.
    url = f"{URL}/{logged['id']}"
    assert (
        await c.patch(url, headers=dev.headers, json={"hours": 8, "version": 1})
    ).status_code == 403
    assert (await c.delete(url, headers=dev.headers)).status_code == 403
    r = await c.patch(url, headers=peer.headers, json={"hours": 2, "version": 1})
    assert r.status_code == 200
    # Handing one's own entry to someone else is logging for someone else.
    r = await c.patch(url, headers=peer.headers, json={"userId": dev.id, "version": 2})
    assert r.status_code == 403
    r = await c.patch(url, headers=pm.headers, json={"hours": 3, "version": 2})
    assert r.status_code == 200 and r.json()["version"] == 3
    assert await actions_for(services, logged["id"]) == [
        "api:time_entry:create",
        "api:time_entry:update",
        "api:time_entry:update",
    ]
    assert (await c.delete(url, headers=pm.headers)).status_code == 204


async def test_manager_cannot_log_for_a_user_of_another_tenant(tenant, other_tenant, make_member):
    pm = await make_member(tenant, "project_manager")
    pid = (await new_project(tenant))["id"]
    r = await tenant.client.post(
        URL,
        headers=pm.headers,
        json={"projectId": pid, "userId": other_tenant.admin.id, "date": "2025-01-01", "hours": 1},
    )
    assert r.status_code == 404 and r.json()["errors"][0]["field"] == "userId"


async def test_team_member_sees_only_his_projects_entries(tenant, make_member):
    c = tenant.client
    dev = await make_member(tenant, "team_member")
    mine, theirs = await new_project(tenant), await new_project(tenant)
    await join(tenant, mine["id"], dev)
    colleague_entry = await _log(c, tenant.admin.headers, mine["id"])
    hidden = await _log(c, tenant.admin.headers, theirs["id"])
    listed = {e["id"] for e in await walk(c, URL, dev.headers)}
    assert colleague_entry["id"] in listed and hidden["id"] not in listed
    assert (await c.get(f"{URL}/{hidden['id']}", headers=dev.headers)).status_code == 404
    r = await c.post(
        URL, headers=dev.headers, json={"projectId": theirs["id"], "date": "2025-01-01", "hours": 1}
    )
    assert r.status_code == 404


async def test_list_filters(tenant, make_member):
    c, h = tenant.client, tenant.admin.headers
    dev = await make_member(tenant, "team_member")
    p1, p2 = await new_project(tenant), await new_project(tenant)
    await join(tenant, p1["id"], dev)
    a = await _log(c, h, p1["id"], date="2025-01-05")
    b = await _log(c, dev.headers, p1["id"], date="2025-02-05", billable=False)
    d = await _log(c, h, p2["id"], date="2025-03-05")

    def ids(items):
        return {e["id"] for e in items}

    assert ids(await walk(c, URL, h, projectId=p1["id"])) == {a["id"], b["id"]}
    assert ids(await walk(c, URL, h, projectId=p1["id"], userId=dev.id)) == {b["id"]}
    assert ids(await walk(c, URL, h, projectId=p1["id"], billable="false")) == {b["id"]}
    got = ids(await walk(c, URL, h, **{"from": "2025-02-01", "to": "2025-03-31"}))
    assert got >= {b["id"], d["id"]} and a["id"] not in got


async def test_other_tenant_gets_404(tenant, other_tenant, services):
    entry = await _log(tenant.client, tenant.admin.headers, (await new_project(tenant))["id"])
    oc, oh = other_tenant.client, other_tenant.admin.headers
    url = f"{URL}/{entry['id']}"
    assert (await oc.get(url, headers=oh)).status_code == 404
    assert (await oc.patch(url, headers=oh, json={"hours": 5, "version": 1})).status_code == 404
    assert (await oc.delete(url, headers=oh)).status_code == 404
    assert entry["id"] not in {e["id"] for e in await walk(oc, URL, oh)}
    assert await actions_for(services, entry["id"]) == ["api:time_entry:create"]


async def test_a_project_with_logged_time_cannot_be_deleted(tenant, services):
    c, h = tenant.client, tenant.admin.headers
    project = await new_project(tenant)
    entry = await _log(c, h, project["id"])
    r = await c.delete(f"/api/v1/projects/{project['id']}", headers=h)
    assert r.status_code == 409, r.text
    assert (await c.get(f"{URL}/{entry['id']}", headers=h)).status_code == 200
    assert "api:project:delete" not in await actions_for(services, project["id"])
    assert (await c.delete(f"{URL}/{entry['id']}", headers=h)).status_code == 204
    assert (await c.delete(f"/api/v1/projects/{project['id']}", headers=h)).status_code == 204


async def test_deleting_a_task_keeps_its_logged_time(tenant):
    c, h = tenant.client, tenant.admin.headers
    project = await new_project(tenant)
    task = (
        await c.post("/api/v1/tasks", headers=h, json={"projectId": project["id"], "title": "T"})
    ).json()
    entry = await _log(c, h, project["id"], taskId=task["id"])
    assert (await c.delete(f"/api/v1/tasks/{task['id']}", headers=h)).status_code == 204
    kept = (await c.get(f"{URL}/{entry['id']}", headers=h)).json()
    assert kept["taskId"] is None and kept["hours"] == "1.50"
