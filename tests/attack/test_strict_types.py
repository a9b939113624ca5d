"""A schema-violating date or boolean is a 422 naming the field, not silently reinterpreted.

Pydantic's lax mode read ``0`` as 1970-01-01 and ``0``/``1``/``"yes"`` as booleans, so
``{"startDate": 0}`` created a project starting in 1970 and ``?to=0`` filtered on 1970; the
OpenAPI document says ``format: date`` and ``type: boolean``, and schemathesis'
``negative_data_rejection`` check found the gap.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.work.conftest import new_project

BAD_DATES: list[Any] = [0, 1700000000, "0", "1700000000", "2026-01-31T00:00:00", True]
BAD_BOOLS: list[Any] = [0, 1, "true", "yes", "on", 0.0]


def _fields(r: Any) -> set[str]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return {e["field"] for e in r.json()["errors"]}


@pytest.mark.parametrize("value", BAD_DATES)
async def test_project_dates_must_be_iso_strings(tenant, value):
    c, h = tenant.client, tenant.admin.headers
    r = await c.post("/api/v1/projects", headers=h, json={"name": "Apollo", "startDate": value})
    assert "startDate" in _fields(r)
    p = await new_project(tenant)
    r = await c.patch(
        f"/api/v1/projects/{p['id']}", headers=h, json={"endDate": value, "version": 1}
    )
    assert "endDate" in _fields(r)


@pytest.mark.parametrize("value", BAD_DATES)
async def test_task_invoice_time_budget_dates_must_be_iso_strings(tenant, value):
    c, h = tenant.client, tenant.admin.headers
    p = await new_project(tenant)
    pid = p["id"]
    r = await c.post(
        "/api/v1/tasks", headers=h, json={"projectId": pid, "title": "T", "dueDate": value}
    )
    assert "dueDate" in _fields(r)
    r = await c.post(
        "/api/v1/time-entries",
        headers=h,
        json={"projectId": pid, "date": value, "hours": "1.00"},
    )
    assert "date" in _fields(r)
    r = await c.post(
        "/api/v1/invoices",
        headers=h,
        json={"projectId": pid, "clientName": "ACME", "currency": "EUR", "issueDate": value},
    )
    assert "issueDate" in _fields(r)


@pytest.mark.parametrize("value", ["0", "1700000000", "2026-01-31T00:00:00", "yesterday"])
@pytest.mark.parametrize(
    "path,param",
    [
        ("/api/v1/time-entries", "to"),
        ("/api/v1/time-entries", "from"),
        ("/api/v1/invoices", "to"),
        ("/api/v1/budget-entries", "from"),
    ],
)
async def test_date_query_filters_must_be_iso_strings(tenant, path, param, value):
    r = await tenant.client.get(path, headers=tenant.admin.headers, params={param: value})
    assert param in _fields(r)


async def test_date_query_filters_still_take_iso_dates(tenant):
    for path in ("/api/v1/time-entries", "/api/v1/invoices", "/api/v1/budget-entries"):
        r = await tenant.client.get(
            path, headers=tenant.admin.headers, params={"from": "2026-01-01", "to": "2026-12-31"}
        )
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("value", BAD_BOOLS)
async def test_body_booleans_must_be_true_or_false(tenant, value):
    c, h = tenant.client, tenant.admin.headers
    p = await new_project(tenant)
    r = await c.post(
        "/api/v1/time-entries",
        headers=h,
        json={"projectId": p["id"], "date": "2026-01-31", "hours": "1.00", "billable": value},
    )
    assert "billable" in _fields(r)
    r = await c.post(
        "/api/v1/roles",
        headers=h,
        json={"name": "Auditor", "permissions": [], "projectScoped": value},
    )
    assert "projectScoped" in _fields(r)
    r = await c.patch(f"/api/v1/users/{tenant.admin.id}", headers=h, json={"isActive": value})
    assert "isActive" in _fields(r)


@pytest.mark.parametrize("value", ["0", "1", "yes", "off", "True"])
async def test_boolean_query_filters_must_be_true_or_false(tenant, value):
    for path, param in (("/api/v1/users", "isActive"), ("/api/v1/roles", "isSystem")):
        r = await tenant.client.get(path, headers=tenant.admin.headers, params={param: value})
        assert param in _fields(r)
    r = await tenant.client.get(
        "/api/v1/roles", headers=tenant.admin.headers, params={"isSystem": "true"}
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("value", [False, True, "5", "1"])
async def test_body_integers_are_json_numbers(tenant, value):
    c, h = tenant.client, tenant.admin.headers
    r = await c.post("/api/v1/projects", headers=h, json={"name": "Apollo", "budgetMinor": value})
    assert "budgetMinor" in _fields(r)
    p = await new_project(tenant)
    r = await c.patch(f"/api/v1/projects/{p['id']}", headers=h, json={"version": value})
    assert "version" in _fields(r)
