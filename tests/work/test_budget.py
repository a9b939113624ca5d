from __future__ import annotations

import pytest

from tests.work.conftest import actions_for, audit_entries, join, new_project, walk

pytestmark = pytest.mark.asyncio
URL = "/api/v1/budget-entries"


async def _entry(tenant, project_id, headers=None, **fields):
    body = {"projectId": project_id, "amountMinor": 12500, "date": "2030-04-01", **fields}
    r = await tenant.client.post(URL, headers=headers or tenant.admin.headers, json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def test_budget_entry_crud_and_financial_audit(tenant, services):
    c, h = tenant.client, tenant.admin.headers
    project = await new_project(tenant, currency="EUR", budgetMinor=1_000_000)
    entry = await _entry(tenant, project["id"], kind="planned", category="Travel")
    assert entry["currency"] == "EUR" and entry["kind"] == "planned"
    assert entry["amountMinor"] == 12500 and entry["date"] == "2030-04-01"
    url = f"{URL}/{entry['id']}"
    assert (await c.get(url, headers=h)).json()["category"] == "Travel"

    r = await c.patch(url, headers={**h, "If-Match": '"v1"'}, json={"amountMinor": 13000})
    assert r.status_code == 200 and r.json()["amountMinor"] == 13000 and r.json()["version"] == 2
    stale = await c.patch(url, headers=h, json={"amountMinor": 1, "version": 1})
    assert stale.status_code == 412
    assert (await c.get(url, headers=h)).json()["amountMinor"] == 13000

    assert (await c.delete(url, headers=h)).status_code == 204
    assert (await c.get(url, headers=h)).status_code == 404
    entries = await audit_entries(services, entry["id"])
    assert [e.action for e in entries] == [
        "api:budget_entry:create",
        "api:budget_entry:update",
        "api:budget_entry:delete",
    ]
    assert {e.category for e in entries} == {"financial"}
    assert entries[1].changes == {
        "before": {"amount_minor": 12500},
        "after": {"amount_minor": 13000},
    }


async def test_currency_must_match_the_project(tenant, services):
    c, h = tenant.client, tenant.admin.headers
    project = await new_project(tenant, currency="EUR")
    r = await c.post(
        URL,
        headers=h,
        json={
            "projectId": project["id"],
            "amountMinor": 1,
            "currency": "USD",
            "date": "2030-01-01",
        },
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "currency"
    entry = await _entry(tenant, project["id"], currency="EUR")
    r = await c.patch(f"{URL}/{entry['id']}", headers=h, json={"currency": "GBP", "version": 1})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "currency"
    assert await actions_for(services, entry["id"]) == ["api:budget_entry:create"]


async def test_validation(tenant):
    c, h = tenant.client, tenant.admin.headers
    pid = (await new_project(tenant))["id"]
    base = {"projectId": pid, "amountMinor": 100, "date": "2030-01-01"}
    for extra, field in (
        ({"kind": "income"}, "kind"),
        ({"category": "x" * 51}, "category"),
        ({"description": "x" * 501}, "description"),
        ({"amountMinor": 10.5}, "amountMinor"),
        ({"amountMinor": "100"}, "amountMinor"),
        ({"amountMinor": -100}, "amountMinor"),  # only an adjustment may be negative
        ({"currency": "usd"}, "currency"),
        ({"vendor": "ACME"}, "vendor"),
    ):
        r = await c.post(URL, headers=h, json={**base, **extra})
        assert r.status_code == 422, (extra, r.text)
        assert r.json()["errors"][0]["field"] == field, (extra, r.text)
    adjustment = await _entry(tenant, pid, kind="adjustment", amountMinor=-2500)
    assert adjustment["amountMinor"] == -2500
    r = await c.patch(
        f"{URL}/{adjustment['id']}", headers=h, json={"kind": "expense", "version": 1}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "amountMinor"


async def test_filters(tenant):
    c, h = tenant.client, tenant.admin.headers
    p1, p2 = await new_project(tenant), await new_project(tenant)
    a = await _entry(tenant, p1["id"], kind="planned", date="2030-01-15")
    b = await _entry(tenant, p1["id"], kind="expense", date="2030-02-15")
    await _entry(tenant, p2["id"])

    def ids(items):
        return {e["id"] for e in items}

    assert ids(await walk(c, URL, h, projectId=p1["id"])) == {a["id"], b["id"]}
    assert ids(await walk(c, URL, h, projectId=p1["id"], kind="planned")) == {a["id"]}
    got = ids(await walk(c, URL, h, projectId=p1["id"], **{"from": "2030-02-01"}))
    assert got == {b["id"]}
    got = ids(await walk(c, URL, h, projectId=p1["id"], to="2030-01-31", limit=1))
    assert got == {a["id"]}


async def test_roles_without_budget_permissions_are_refused(tenant, make_member, services):
    c = tenant.client
    dev = await make_member(tenant, "team_member")
    project = await new_project(tenant)
    await join(tenant, project["id"], dev)
    entry = await _entry(tenant, project["id"])
    assert (await c.get(URL, headers=dev.headers)).status_code == 403
    assert (await c.get(f"{URL}/{entry['id']}", headers=dev.headers)).status_code == 403
    r = await c.patch(f"{URL}/{entry['id']}", headers=dev.headers, json={"amountMinor": 1})
    assert r.status_code == 403
    assert (await c.delete(f"{URL}/{entry['id']}", headers=dev.headers)).status_code == 403
    assert await actions_for(services, entry["id"]) == ["api:budget_entry:create"]
    # The project manager holds budget:update.
    pm = await make_member(tenant, "project_manager")
    await _entry(tenant, project["id"], headers=pm.headers)


async def test_other_tenant_gets_404(tenant, other_tenant):
    project = await new_project(tenant)
    entry = await _entry(tenant, project["id"])
    oc, oh = other_tenant.client, other_tenant.admin.headers
    url = f"{URL}/{entry['id']}"
    assert (await oc.get(url, headers=oh)).status_code == 404
    assert (
        await oc.patch(url, headers=oh, json={"amountMinor": 1, "version": 1})
    ).status_code == 404
    assert (await oc.delete(url, headers=oh)).status_code == 404
    assert entry["id"] not in {e["id"] for e in await walk(oc, URL, oh)}
    r = await oc.post(
        URL, headers=oh, json={"projectId": project["id"], "amountMinor": 1, "date": "2030-01-01"}
    )
    assert r.status_code == 404
