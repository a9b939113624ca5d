from __future__ import annotations

import pytest

pytestmark = pytest.mark.asyncio


async def test_admin_creates_reads_updates_and_deletes_a_project(tenant):
    c, h = tenant.client, tenant.admin.headers
    r = await c.post(
        "/api/v1/projects",
        headers=h,
        json={"name": "Apollo", "budgetMinor": 150000, "currency": "EUR"},
    )
    assert r.status_code == 201, r.text
    project = r.json()
    assert (
        project["name"] == "Apollo" and project["version"] == 1 and project["status"] == "planning"
    )
    assert r.headers["etag"] == '"v1"'

    r = await c.get(f"/api/v1/projects/{project['id']}", headers=h)
    assert r.status_code == 200 and r.json()["budgetMinor"] == 150000

    r = await c.patch(
        f"/api/v1/projects/{project['id']}",
        headers={**h, "If-Match": '"v1"'},
        json={"status": "active"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "active" and r.json()["version"] == 2

    r = await c.delete(f"/api/v1/projects/{project['id']}", headers=h)
    assert r.status_code == 204
    r = await c.get(f"/api/v1/projects/{project['id']}", headers=h)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_stale_update_is_refused_and_nothing_is_lost(tenant):
    c, h = tenant.client, tenant.admin.headers
    pid = (await c.post("/api/v1/projects", headers=h, json={"name": "Gemini"})).json()["id"]
    first = await c.patch(
        f"/api/v1/projects/{pid}", headers=h, json={"name": "Gemini A", "version": 1}
    )
    assert first.status_code == 200
    stale = await c.patch(
        f"/api/v1/projects/{pid}", headers=h, json={"name": "Gemini B", "version": 1}
    )
    assert stale.status_code == 412
    assert stale.json()["currentVersion"] == 2
    assert (await c.get(f"/api/v1/projects/{pid}", headers=h)).json()["name"] == "Gemini A"
    missing = await c.patch(f"/api/v1/projects/{pid}", headers=h, json={"name": "Gemini C"})
    assert missing.status_code == 428


async def test_unknown_field_is_named(tenant):
    r = await tenant.client.post(
        "/api/v1/projects", headers=tenant.admin.headers, json={"name": "X", "owner": "me"}
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "owner"


async def test_other_tenant_sees_404(tenant, other_tenant):
    pid = (
        await tenant.client.post(
            "/api/v1/projects", headers=tenant.admin.headers, json={"name": "Secret"}
        )
    ).json()["id"]
    r = await other_tenant.client.get(f"/api/v1/projects/{pid}", headers=other_tenant.admin.headers)
    assert r.status_code == 404
    listing = await other_tenant.client.get("/api/v1/projects", headers=other_tenant.admin.headers)
    assert pid not in [p["id"] for p in listing.json()["items"]]


async def test_cursor_pagination_walks_every_project_once(tenant):
    c, h = tenant.client, tenant.admin.headers
    made = {
        (await c.post("/api/v1/projects", headers=h, json={"name": f"P{i}"})).json()["id"]
        for i in range(7)
    }
    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await c.get("/api/v1/projects", headers=h, params=params)).json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["nextCursor"]
        if not cursor:
            break
    assert set(seen) == made and len(seen) == len(made)


async def test_invalid_updates_are_422_naming_the_field(tenant):
    c, h = tenant.client, tenant.admin.headers
    pid = (await c.post("/api/v1/projects", headers=h, json={"name": "Vostok"})).json()["id"]
    for field in ("name", "status", "currency", "description"):
        r = await c.patch(f"/api/v1/projects/{pid}", headers=h, json={field: None, "version": 1})
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == field
    r = await c.patch(
        f"/api/v1/projects/{pid}",
        headers=h,
        json={"startDate": "2025-05-02", "endDate": "2025-05-01", "version": 1},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "endDate"
    await c.patch(
        f"/api/v1/projects/{pid}", headers=h, json={"endDate": "2025-05-01", "version": 1}
    )
    r = await c.patch(
        f"/api/v1/projects/{pid}", headers=h, json={"startDate": "2025-06-01", "version": 2}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "endDate"


async def test_a_duplicate_member_is_409_naming_the_field(tenant):
    c, h = tenant.client, tenant.admin.headers
    pid = (await c.post("/api/v1/projects", headers=h, json={"name": "Soyuz"})).json()["id"]
    body = {"userId": tenant.admin.id, "projectRole": "manager"}
    assert (
        await c.post(f"/api/v1/projects/{pid}/members", headers=h, json=body)
    ).status_code == 201
    r = await c.post(f"/api/v1/projects/{pid}/members", headers=h, json=body)
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "userId"


async def test_a_cross_field_rule_names_the_field_to_change(tenant):
    r = await tenant.client.post(
        "/api/v1/projects",
        headers=tenant.admin.headers,
        json={"name": "Backwards", "startDate": "2026-05-01", "endDate": "2026-04-01"},
    )
    assert r.status_code == 422
    assert [(e["field"], e["in"]) for e in r.json()["errors"]] == [("endDate", "body")]
    r = await tenant.client.post(
        "/api/v1/invoices",
        headers=tenant.admin.headers,
        json={"clientName": "Initech", "issueDate": "2026-05-01", "dueDate": "2026-04-01"},
    )
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["dueDate"]
