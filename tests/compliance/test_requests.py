"""Data subject requests and the register of processing activities (issue 14.3)."""

from __future__ import annotations

from datetime import datetime, timedelta


async def test_a_request_is_tracked_with_its_due_date_and_handler(services, client, tenant):
    person = await tenant.member("team_member")
    h = tenant.admin.headers
    received = "2026-01-05T09:00:00Z"
    r = await client.post(
        "/api/v1/compliance/requests",
        headers=h,
        json={"requestType": "access", "subjectUserId": person.id, "receivedAt": received},
    )
    assert r.status_code == 201, r.text
    item = r.json()
    due = datetime.fromisoformat(item["dueAt"]) - datetime.fromisoformat(item["receivedAt"])
    assert due == timedelta(days=30) and item["status"] == "received"
    assert item["requestedBy"] == tenant.admin.id and item["version"] == 1
    overdue = item["overdue"] == (services.clock.now() > datetime.fromisoformat(item["dueAt"]))
    assert overdue
    url = f"/api/v1/compliance/requests/{item['id']}"
    r = await client.patch(url, headers=h, json={"status": "in_progress"})
    assert r.status_code == 428
    r = await client.patch(url, headers=h, json={"status": "in_progress", "version": 1})
    assert r.status_code == 200 and r.json()["handledBy"] == tenant.admin.id
    r = await client.patch(url, headers=h, json={"status": "completed", "version": 2})
    assert r.status_code == 200 and r.json()["completedAt"] and not r.json()["overdue"]
    r = await client.patch(url, headers=h, json={"status": "received", "version": 3})
    assert r.status_code == 409
    r = await client.get("/api/v1/compliance/requests?status=completed", headers=h)
    assert item["id"] in [i["id"] for i in r.json()["items"]]
    r = await client.post(
        "/api/v1/compliance/requests",
        headers=h,
        json={"requestType": "erasure", "subjectUserId": tenant.id},  # not a person
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "subjectUserId"
    r = await client.post(
        "/api/v1/compliance/requests",
        headers=h,
        json={"requestType": "forget-me", "subjectUserId": person.id},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "requestType"


async def test_requests_need_compliance_permissions_and_stay_in_their_tenant(
    services, client, tenant, other_tenant
):
    person = await tenant.member("team_member")
    r = await client.post(
        "/api/v1/compliance/requests",
        headers=tenant.admin.headers,
        json={"requestType": "rectification", "subjectUserId": person.id},
    )
    request_id = r.json()["id"]
    r = await client.get("/api/v1/compliance/requests", headers=person.headers)
    assert r.status_code == 403
    r = await client.get(
        f"/api/v1/compliance/requests/{request_id}", headers=other_tenant.admin.headers
    )
    assert r.status_code == 404
    r = await client.get("/api/v1/compliance/requests", headers=other_tenant.admin.headers)
    assert request_id not in r.text


async def test_the_register_starts_with_the_seed_defaults_and_is_editable(services, client, tenant):
    h = tenant.admin.headers
    r = await client.get("/api/v1/compliance/processing-activities", headers=h)
    assert r.status_code == 200
    items = r.json()["items"]
    assert [i["purpose"] for i in items] == [
        "User authentication and account management",
        "Project management and collaboration",
        "Time tracking and billing",
    ]
    assert items[2]["retentionPeriod"] == "7 years for tax compliance"
    first = items[0]
    r = await client.patch(
        f"/api/v1/compliance/processing-activities/{first['id']}",
        headers=h,
        json={"recipients": "Hosting provider (EU)", "version": first["version"]},
    )
    assert r.status_code == 200 and r.json()["recipients"] == "Hosting provider (EU)"
    r = await client.post(
        "/api/v1/compliance/processing-activities",
        headers=h,
        json={"purpose": "Newsletter", "legalBasis": "consent", "dataTypes": ["email"],
              "retentionPeriod": "Until consent is withdrawn"},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    added = r.json()["id"]
    r = await client.delete(f"/api/v1/compliance/processing-activities/{items[1]['id']}", headers=h)
    assert r.status_code == 204
    r = await client.get("/api/v1/compliance/processing-activities", headers=h)
    purposes = [i["purpose"] for i in r.json()["items"]]
    assert len(purposes) == 3 and "Newsletter" in purposes and added
    assert "Project management and collaboration" not in purposes
