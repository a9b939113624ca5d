"""Issue 7 point 8: a person's day holds at most 24 hours; dates outside the configured range
are refused."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import date, timedelta

import pytest

from kanvaro.acting import Acting
from kanvaro.config import Settings
from kanvaro.errors import Unprocessable
from kanvaro.work.time_entries import _check_date
from tests.work.conftest import join, new_project

URL = "/api/v1/time-entries"


async def _log(tenant, headers, project_id, **fields):
    body = {"projectId": project_id, "date": "2025-06-02", "hours": 1, **fields}
    return await tenant.client.post(URL, headers=headers, json=body)


async def test_one_day_adds_up_to_at_most_24_hours(tenant):
    h = tenant.admin.headers
    p1, p2 = await new_project(tenant), await new_project(tenant)
    dev = await tenant.member("team_member")
    await join(tenant, p1["id"], dev)
    await join(tenant, p2["id"], dev)
    assert (await _log(tenant, dev.headers, p1["id"], hours=20)).status_code == 201
    # Across projects, and when someone with time:manage logs for him.
    r = await _log(tenant, h, p2["id"], hours="4.25", userId=dev.id)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["errors"][0]["field"] == "hours"
    assert "20.00" in problem["detail"] and problem["dayTotal"] == "20.00"
    last = await _log(tenant, dev.headers, p2["id"], hours=4)
    assert last.status_code == 201  # exactly 24 is fine
    # Another day, another person: unaffected.
    assert (
        await _log(tenant, dev.headers, p1["id"], hours=8, date="2025-06-03")
    ).status_code == 201
    assert (await _log(tenant, h, p1["id"], hours=8)).status_code == 201

    # Moving an entry onto a full day, or raising its hours, is refused the same way.
    r = await _log(tenant, dev.headers, p1["id"], hours=1, date="2025-06-04")
    entry = r.json()
    moved = await tenant.client.patch(
        f"{URL}/{entry['id']}", headers=dev.headers, json={"date": "2025-06-02", "version": 1}
    )
    assert moved.status_code == 422 and moved.json()["errors"][0]["field"] == "hours"
    raised = await tenant.client.patch(
        f"{URL}/{last.json()['id']}", headers=dev.headers, json={"hours": 5, "version": 1}
    )
    assert raised.status_code == 422 and "24" in raised.json()["detail"]
    same = await tenant.client.patch(
        f"{URL}/{last.json()['id']}", headers=dev.headers, json={"hours": 4, "version": 1}
    )
    assert same.status_code == 200, same.text  # its own hours are not counted twice


@pytest.mark.parametrize("day", ["0001-01-01", "1999-12-31", "9999-12-31"])
async def test_dates_outside_the_range_are_refused(tenant, day):
    project = await new_project(tenant)
    r = await _log(tenant, tenant.admin.headers, project["id"], date=day)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "date"


async def test_the_range_is_inclusive_and_reaches_a_year_ahead(tenant):
    project = await new_project(tenant)
    h = tenant.admin.headers
    assert (await _log(tenant, h, project["id"], date="2000-01-01")).status_code == 201
    ahead = (date.today() + timedelta(days=300)).isoformat()
    assert (await _log(tenant, h, project["id"], date=ahead)).status_code == 201
    too_far = (date.today() + timedelta(days=400)).isoformat()
    assert (await _log(tenant, h, project["id"], date=too_far)).status_code == 422
    entry = (await _log(tenant, h, project["id"])).json()
    r = await tenant.client.patch(
        f"{URL}/{entry['id']}", headers=h, json={"date": "1999-01-01", "version": 1}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "date"


async def test_the_range_is_configurable(services, monkeypatch):
    monkeypatch.setenv("KANVARO_TIME_ENTRY_MIN_DATE", "2020-01-01")
    monkeypatch.setenv("KANVARO_TIME_ENTRY_MAX_DAYS_AHEAD", "0")
    settings = Settings(master_key="x" * 40)
    assert settings.time_entry_min_date == date(2020, 1, 1)
    custom = dataclasses.replace(services, settings=settings)
    async with services.db.session(all_tenants=True) as session:
        ctx = Acting.system(custom, session, tenant_id=uuid.uuid4())
        _check_date(ctx, date(2020, 1, 1))
        for refused in (date(2019, 12, 31), services.clock.now().date() + timedelta(days=1)):
            with pytest.raises(Unprocessable):
                _check_date(ctx, refused)
