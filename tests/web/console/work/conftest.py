"""Data for the work pages' tests, made through the API (each test owns its data)."""

from __future__ import annotations

from typing import Any

from tests.conftest import TenantFixture


async def api_project(tenant: TenantFixture, name: str = "Apollo", **extra: Any) -> dict[str, Any]:
    r = await tenant.client.post(
        "/api/v1/projects", headers=tenant.admin.headers, json={"name": name, **extra}
    )
    assert r.status_code == 201, r.text
    return r.json()


async def api_get(tenant: TenantFixture, path: str) -> dict[str, Any]:
    r = await tenant.client.get(path, headers=tenant.admin.headers)
    assert r.status_code == 200, r.text
    return r.json()


async def api_task(
    tenant: TenantFixture, project_id: str, title: str = "Write the plan", **extra: Any
) -> dict[str, Any]:
    r = await tenant.client.post(
        "/api/v1/tasks",
        headers=tenant.admin.headers,
        json={"projectId": project_id, "title": title, **extra},
    )
    assert r.status_code == 201, r.text
    return r.json()


async def api_member(
    tenant: TenantFixture, project_id: str, user_id: str, role: str = "contributor"
) -> dict[str, Any]:
    r = await tenant.client.post(
        f"/api/v1/projects/{project_id}/members",
        headers=tenant.admin.headers,
        json={"userId": user_id, "projectRole": role},
    )
    assert r.status_code == 201, r.text
    return r.json()
