"""Issue 7 point 3: automatic invoice numbers cannot be broken by manual ones, and a
duplicate never reaches a client as a 500."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from kanvaro.db import unique_violation_columns
from kanvaro.problems import install_error_handlers
from kanvaro.work.models import ProjectMember
from tests.conftest import PG_ADMIN_URL
from tests.work.conftest import new_project

URL = "/api/v1/invoices"
LINES = [{"description": "Work", "quantity": 1, "unitPriceMinor": 100}]


async def _create(client, headers, number=None):
    body = {"clientName": "ACME", "currency": "EUR", "lines": LINES}
    if number is not None:
        body["number"] = number
    return await client.post(URL, headers=headers, json=body)


async def test_automatic_number_after_100_manual_ones(tenant):
    c, h = tenant.client, tenant.admin.headers
    assert (await _create(c, h)).json()["number"] == "INV-000001"
    # Longer than the automatic ones and not INV-<digits>: the old scan read only these 100,
    # fell back to INV-000001 (taken) and every automatic create was a 500.
    for i in range(1, 101):
        r = await _create(c, h, f"INV-2025-{i:03d}")
        assert r.status_code == 201, r.text
    r = await _create(c, h)
    assert r.status_code == 201, r.text
    assert r.json()["number"] == "INV-000002"


async def test_automatic_numbers_step_over_taken_ones(tenant):
    c, h = tenant.client, tenant.admin.headers
    for i in range(1, 151):
        assert (await _create(c, h, f"INV-{i:06d}")).status_code == 201
    r = await _create(c, h)
    assert r.status_code == 201 and r.json()["number"] == "INV-000151"
    assert (await _create(c, h)).json()["number"] == "INV-000152"


async def test_a_46_digit_manual_number_does_not_overflow_the_next_one(tenant):
    c, h = tenant.client, tenant.admin.headers
    longest = "INV-" + "9" * 46  # exactly the 50 characters of the column
    assert (await _create(c, h, longest)).status_code == 201
    r = await _create(c, h)
    assert r.status_code == 201, r.text
    number = r.json()["number"]
    assert len(number) <= 50 and number.startswith("INV-") and number != longest


async def test_a_taken_manual_number_is_409_naming_the_field(tenant):
    c, h = tenant.client, tenant.admin.headers
    auto = (await _create(c, h)).json()["number"]
    r = await _create(c, h, auto)
    assert r.status_code == 409
    assert r.json()["errors"][0]["field"] == "number"


@pytest.mark.skipif(not PG_ADMIN_URL, reason="SQLite serialises writers: no concurrency to test")
async def test_20_concurrent_creates_get_distinct_numbers(tenant, app):
    # One client (and so one in-flight request, one pooled connection) per create.
    async def one() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await _create(c, tenant.admin.headers)

    answers = await asyncio.gather(*(one() for _ in range(20)))
    assert [r.status_code for r in answers] == [201] * 20, [r.text for r in answers]
    numbers = [r.json()["number"] for r in answers]
    assert len(set(numbers)) == 20


async def test_a_unique_violation_is_a_409_naming_the_field(tenant, services, app):
    """The generic mapping: whatever check a service forgets, the constraint answers 409."""
    project = await new_project(tenant)
    row = {
        "tenant_id": uuid.UUID(tenant.id),
        "project_id": uuid.UUID(project["id"]),
        "user_id": uuid.UUID(tenant.admin.id),
        "project_role": "manager",
        "version": 1,
    }
    async with services.db.session(tenant_id=row["tenant_id"]) as session:
        await session.execute(insert(ProjectMember).values(id=uuid.uuid4(), **row))
    caught: IntegrityError | None = None
    try:
        async with services.db.session(tenant_id=row["tenant_id"]) as session:
            # A second row for the same person breaks (project_id, user_id).
            await session.execute(insert(ProjectMember).values(id=uuid.uuid4(), **row))
    except IntegrityError as exc:
        caught = exc
    assert caught is not None
    assert unique_violation_columns(caught) == ["project_id", "user_id"]

    probe = FastAPI()
    install_error_handlers(probe)

    @probe.get("/probe")
    async def _raise() -> None:
        raise caught

    transport = httpx.ASGITransport(app=probe, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        r = await c.get("/probe")
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["field"] == "userId"
    assert tenant.admin.id not in r.text  # never echo the rejected value
