"""A person with a footprint everywhere: projects, tasks, comments, time, an invoice, a
session, a TOTP method (with a planted secret canary) and a phone number."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import httpx

from kanvaro.identity.mfa.models import MfaMethod
from kanvaro.identity.models import User
from tests.conftest import Member, TenantFixture

TOTP_CANARY = "CANARYSECRETCANARYSECRETCANARY22"  # base32, 160 bits: never in any output
PHONE = "+49 30 1234567"


@dataclass
class Footprint:
    person: Member
    ids: dict[str, str] = field(default_factory=dict)


async def _ok(r: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json()


async def footprint(services: Any, client: httpx.AsyncClient, tenant: TenantFixture) -> Footprint:
    person = await tenant.member("project_manager")
    h = person.headers
    ids: dict[str, str] = {}
    project = await _ok(
        await client.post("/api/v1/projects", headers=h, json={"name": "Person's project"})
    )
    ids["project"] = project["id"]
    task = await _ok(
        await client.post(
            "/api/v1/tasks",
            headers=h,
            json={"projectId": project["id"], "title": "Their task", "assigneeIds": [person.id]},
        )
    )
    ids["task"] = task["id"]
    ids["comment"] = (
        await _ok(
            await client.post(
                f"/api/v1/tasks/{task['id']}/comments", headers=h, json={"body": "My comment"}
            )
        )
    )["id"]
    ids["time"] = (
        await _ok(
            await client.post(
                "/api/v1/time-entries",
                headers=h,
                json={
                    "projectId": project["id"],
                    "taskId": task["id"],
                    "date": date.today().isoformat(),
                    "hours": 2,
                    "description": "Work",
                },
            )
        )
    )["id"]
    invoice = await _ok(
        await client.post(
            "/api/v1/invoices",
            headers=h,
            json={
                "projectId": project["id"],
                "clientName": "Client AG",
                "currency": "USD",
                "lines": [{"description": "Work", "quantity": "2", "unitPriceMinor": 5000}],
            },
        )
    )
    ids["invoice"] = invoice["id"]
    ids["invoiceNumber"] = invoice["number"]
    tenant_id = uuid.UUID(tenant.id)
    async with services.db.session(tenant_id=tenant_id) as db:
        user = await db.get(User, uuid.UUID(person.id))
        user.phone = PHONE
        method = MfaMethod(tenant_id=tenant_id, user_id=user.id, method_type="totp")
        method.secret = TOTP_CANARY
        method.verified_at = services.clock.now()
        db.add(method)
        await db.flush()
        ids["mfa"] = str(method.id)
    return Footprint(person, ids)
