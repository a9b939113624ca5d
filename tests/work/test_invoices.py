from __future__ import annotations

import asyncio
from decimal import Decimal

from kanvaro.work.invoices import line_amount
from tests.work.conftest import actions_for, audit_entries, join, new_project, walk

URL = "/api/v1/invoices"
LINES = [
    {"description": "Design", "quantity": "1.5", "unitPriceMinor": 3},  # 4.5 -> 4
    {"description": "Build", "quantity": 0.5, "unitPriceMinor": 3},  # 1.5 -> 2
    {"description": "Hosting", "quantity": 2, "unitPriceMinor": 12_000},  # 24000
]


async def _invoice(tenant, headers=None, **fields):
    body = {"clientName": "ACME GmbH", "currency": "EUR", "lines": LINES, **fields}
    r = await tenant.client.post(URL, headers=headers or tenant.admin.headers, json=body)
    assert r.status_code == 201, r.text
    return r.json()


def test_line_amount_rounds_half_to_even():
    assert line_amount(Decimal("1.5"), 3) == 4
    assert line_amount(Decimal("0.5"), 3) == 2
    assert line_amount(Decimal("0.5"), 1) == 0
    assert line_amount(Decimal("1.01"), 50) == 50  # 50.5
    assert line_amount(Decimal("1.03"), 50) == 52  # 51.5
    assert line_amount(Decimal("0.01"), 49) == 0
    assert line_amount(Decimal("0.01"), 51) == 1
    assert line_amount(Decimal("9999999999.99"), 10**13) == 999999999999 * 10**11


async def test_totals_are_computed_on_the_server(tenant, services):
    inv = await _invoice(tenant, clientEmail="Billing@ACME.example")
    assert [line["amountMinor"] for line in inv["lines"]] == [4, 2, 24_000]
    assert [line["position"] for line in inv["lines"]] == [1, 2, 3]
    assert inv["lines"][0]["quantity"] == "1.50"
    assert inv["totalMinor"] == 24_006 and inv["status"] == "draft"
    assert inv["number"].startswith("INV-")
    got = await tenant.client.get(f"{URL}/{inv['id']}", headers=tenant.admin.headers)
    assert got.status_code == 200 and got.json()["lines"] == inv["lines"]
    entry = (await audit_entries(services, inv["id"]))[0]
    assert entry.action == "api:invoice:create" and entry.category == "financial"
    assert entry.changes["after"]["total_minor"] == 24_006
    # Amounts are the server's: a client-sent amount is an unknown field.
    r = await tenant.client.post(
        URL,
        headers=tenant.admin.headers,
        json={
            "clientName": "X",
            "currency": "EUR",
            "lines": [{"description": "a", "quantity": 1, "unitPriceMinor": 1, "amountMinor": 9}],
        },
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "lines.0.amountMinor"


async def test_numbers_are_sequential_and_unique_per_tenant(tenant, other_tenant):
    first = await _invoice(tenant)
    second = await _invoice(tenant)
    n = int(first["number"].removeprefix("INV-"))
    assert first["number"] == f"INV-{n:06d}" and second["number"] == f"INV-{n + 1:06d}"
    manual = await _invoice(tenant, number="2030/ACME-7")
    assert manual["number"] == "2030/ACME-7"
    r = await tenant.client.post(
        URL,
        headers=tenant.admin.headers,
        json={"clientName": "X", "currency": "EUR", "number": "2030/ACME-7"},
    )
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "number"
    r = await tenant.client.patch(
        f"{URL}/{second['id']}",
        headers=tenant.admin.headers,
        json={"number": first["number"], "version": 1},
    )
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "number"
    # Another tenant may use the same number, and starts its own sequence.
    theirs = await _invoice(other_tenant, number="2030/ACME-7")
    assert theirs["number"] == "2030/ACME-7"
    assert (await _invoice(other_tenant))["number"] == "INV-000001"


async def test_lines_change_only_in_draft_and_transitions(tenant, services):
    c, h = tenant.client, tenant.admin.headers
    inv = await _invoice(tenant)
    url = f"{URL}/{inv['id']}"
    r = await c.patch(
        url,
        headers={**h, "If-Match": '"v1"'},
        json={
            "notes": "Revised",
            "lines": [{"description": "Only", "quantity": "3", "unitPriceMinor": 250}],
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["totalMinor"] == 750 and len(r.json()["lines"]) == 1
    assert r.json()["version"] == 2

    r = await c.patch(url, headers=h, json={"status": "sent", "version": 2})
    assert r.status_code == 200 and r.json()["status"] == "sent" and r.json()["sentAt"]
    for body, field in (
        ({"lines": [], "version": 3}, "lines"),
        ({"currency": "USD", "version": 3}, "currency"),
        ({"clientName": "Other", "version": 3}, "clientName"),
        ({"status": "draft", "version": 3}, "status"),
    ):
        r = await c.patch(url, headers=h, json=body)
        assert r.status_code == 409, (body, r.text)
        assert r.json()["errors"][0]["field"] == field
    assert (await c.delete(url, headers=h)).status_code == 409
    r = await c.patch(url, headers=h, json={"notes": "Thanks!", "version": 3})
    assert r.status_code == 200
    r = await c.patch(url, headers=h, json={"status": "paid", "version": 4})
    assert r.status_code == 200 and r.json()["paidAt"]
    r = await c.patch(url, headers=h, json={"status": "void", "version": 5})
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "status"
    got = (await c.get(url, headers=h)).json()
    assert got["status"] == "paid" and got["totalMinor"] == 750
    assert (
        await actions_for(services, inv["id"])
        == ["api:invoice:create"] + ["api:invoice:update"] * 4
    )


async def test_void_and_delete_draft(tenant, services):
    c, h = tenant.client, tenant.admin.headers
    draft = await _invoice(tenant)
    assert (await c.delete(f"{URL}/{draft['id']}", headers=h)).status_code == 204
    assert (await c.get(f"{URL}/{draft['id']}", headers=h)).status_code == 404
    assert await actions_for(services, draft["id"]) == ["api:invoice:create", "api:invoice:delete"]
    other = await _invoice(tenant)
    r = await c.patch(f"{URL}/{other['id']}", headers=h, json={"status": "void", "version": 1})
    assert r.status_code == 200 and r.json()["status"] == "void"
    r = await c.patch(f"{URL}/{other['id']}", headers=h, json={"status": "sent", "version": 2})
    assert r.status_code == 409


async def test_stale_update_is_refused(tenant):
    c, h = tenant.client, tenant.admin.headers
    inv = await _invoice(tenant)
    url = f"{URL}/{inv['id']}"
    assert (await c.patch(url, headers=h, json={"notes": "A", "version": 1})).status_code == 200
    r = await c.patch(url, headers=h, json={"lines": [], "version": 1})
    assert r.status_code == 412
    assert (await c.get(url, headers=h)).json()["totalMinor"] == inv["totalMinor"]


async def test_validation(tenant):
    c, h = tenant.client, tenant.admin.headers
    line = {"description": "x", "quantity": 1, "unitPriceMinor": 1}
    for body, field in (
        ({"currency": "EUR"}, "clientName"),
        ({"clientName": "X"}, "currency"),  # no project to take it from
        ({"clientName": "X", "currency": "EUR", "clientEmail": "nope"}, "clientEmail"),
        (
            {"clientName": "X", "currency": "EUR", "lines": [{**line, "quantity": 0}]},
            "lines.0.quantity",
        ),
        (
            {"clientName": "X", "currency": "EUR", "lines": [{**line, "quantity": 1.005}]},
            "lines.0.quantity",
        ),
        (
            {"clientName": "X", "currency": "EUR", "lines": [{**line, "unitPriceMinor": -1}]},
            "lines.0.unitPriceMinor",
        ),
        ({"clientName": "X", "currency": "EUR", "number": "no spaces"}, "number"),
        ({"clientName": "X", "currency": "EUR", "discount": 5}, "discount"),
        (
            {
                "clientName": "X",
                "currency": "EUR",
                "lines": [{**line, "quantity": "9999999999.99", "unitPriceMinor": 10**13}],
            },
            "lines",
        ),
    ):
        r = await c.post(URL, headers=h, json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["errors"][0]["field"] == field, (body, r.text)


async def test_project_currency_filters_and_visibility(tenant, other_tenant, make_member):
    c, h = tenant.client, tenant.admin.headers
    p1, p2 = await new_project(tenant, currency="CHF"), await new_project(tenant)
    a = await _invoice(tenant, projectId=p1["id"], currency=None, issueDate="2030-01-10")
    assert a["currency"] == "CHF" and a["projectId"] == p1["id"]
    b = await _invoice(tenant, projectId=p2["id"], issueDate="2030-02-10")
    await c.patch(f"{URL}/{b['id']}", headers=h, json={"status": "sent", "version": 1})

    def ids(items):
        return {i["id"] for i in items}

    assert ids(await walk(c, URL, h, projectId=p1["id"])) == {a["id"]}
    assert b["id"] in ids(await walk(c, URL, h, status="sent"))
    assert a["id"] not in ids(await walk(c, URL, h, status="sent"))
    got = ids(await walk(c, URL, h, **{"from": "2030-02-01", "to": "2030-02-28"}))
    assert b["id"] in got and a["id"] not in got

    oc, oh = other_tenant.client, other_tenant.admin.headers
    assert (await oc.get(f"{URL}/{a['id']}", headers=oh)).status_code == 404
    r = await oc.patch(f"{URL}/{a['id']}", headers=oh, json={"notes": "x", "version": 1})
    assert r.status_code == 404
    assert (await oc.delete(f"{URL}/{a['id']}", headers=oh)).status_code == 404
    assert a["id"] not in ids(await walk(oc, URL, oh))
    r = await oc.post(URL, headers=oh, json={"clientName": "X", "projectId": p1["id"]})
    assert r.status_code == 404

    # A team member holds no invoice permission at all.
    dev = await make_member(tenant, "team_member")
    await join(tenant, p1["id"], dev)
    assert (await c.get(URL, headers=dev.headers)).status_code == 403
    r = await c.post(URL, headers=dev.headers, json={"clientName": "X", "currency": "EUR"})
    assert r.status_code == 403


async def test_concurrent_creates_get_distinct_numbers(tenant):
    made = await asyncio.gather(*(_invoice(tenant) for _ in range(6)))
    numbers = [inv["number"] for inv in made]
    assert len(set(numbers)) == 6 and all(n.startswith("INV-") for n in numbers)
