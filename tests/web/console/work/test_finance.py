"""A project's budget and time, and invoices (a project's and the tenant's): the pages, their
forms, and who may see them."""

from __future__ import annotations

import re
import uuid

import httpx

from kanvaro.services import Services
from kanvaro.work.models import BudgetEntry, TimeEntry
from tests.conftest import TenantFixture
from tests.web.console.conftest import sign_in, submit
from tests.web.console.work.conftest import api_get, api_member, api_project, api_task


async def test_the_budget_page_lists_entries_with_totals(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    project = await api_project(tenant, "Budgeted", budgetMinor=1_000_00, currency="EUR")
    for kind, amount in (("expense", 250_00), ("adjustment", -50_00), ("planned", 900_00)):
        r = await tenant.client.post(
            "/api/v1/budget-entries",
            headers=tenant.admin.headers,
            json={
                "projectId": project["id"],
                "kind": kind,
                "amountMinor": amount,
                "date": "2026-01-10",
                "description": f"A {kind}",
            },
        )
        assert r.status_code == 201, r.text
    await sign_in(browser, tenant, tenant.admin.email)
    page = await browser.get(f"/t/{tenant.slug}/projects/{project['id']}/budget")
    assert page.status_code == 200
    assert "A expense" in page.text and "250.00 EUR" in page.text
    assert "-50.00 EUR" in page.text
    assert "700.00 EUR" in page.text  # 1000 - 250 - 50 remaining


async def test_adding_and_deleting_a_budget_entry(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    project = await api_project(tenant, "Budget form")
    await sign_in(browser, tenant, tenant.admin.email)
    page_path = f"/t/{tenant.slug}/projects/{project['id']}/budget"
    r = await submit(
        browser,
        page_path,
        page_path,
        {
            "kind": "expense",
            "category": "travel",
            "description": "Train",
            "amount": "42.10",
            "date": "2026-03-03",
        },
    )
    assert r.status_code == 303
    entries = (await api_get(tenant, f"/api/v1/budget-entries?projectId={project['id']}"))["items"]
    assert [(e["category"], e["amountMinor"], e["currency"]) for e in entries] == [
        ("travel", 4210, "USD")
    ]
    for data, field in (
        ({"kind": "expense", "amount": "-5", "date": "2026-03-03"}, "amountMinor"),
        ({"kind": "expense", "amount": "1.001", "date": "2026-03-03"}, "amountMinor"),
        ({"kind": "expense", "amount": "ten", "date": "2026-03-03"}, "amountMinor"),
        ({"kind": "expense", "amount": "", "date": "2026-03-03"}, "amountMinor"),
        ({"kind": "gift", "amount": "1", "date": "2026-03-03"}, "kind"),
        ({"kind": "expense", "amount": "1", "date": "soon"}, "date"),
    ):
        bad = await submit(browser, page_path, page_path, data)
        assert bad.status_code == 422, (data, bad.status_code)
        assert f"<code>{field}</code>" in bad.text, data
    deleted = await submit(
        browser, page_path, f"/t/{tenant.slug}/budget-entries/{entries[0]['id']}/delete"
    )
    assert deleted.status_code == 303
    assert (await api_get(tenant, f"/api/v1/budget-entries?projectId={project['id']}"))[
        "items"
    ] == []


async def test_budget_and_invoices_need_their_permissions(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    project = await api_project(tenant, "Money hidden")
    dev = await tenant.member("team_member")
    await api_member(tenant, project["id"], dev.id)
    await sign_in(browser, tenant, dev.email)
    for path in (
        f"/projects/{project['id']}/budget",
        f"/projects/{project['id']}/invoices",
        "/invoices",
    ):
        r = await browser.get(f"/t/{tenant.slug}{path}")
        assert r.status_code == 403, path
    overview = await browser.get(f"/t/{tenant.slug}/projects/{project['id']}")
    assert '/budget"' not in overview.text and '/invoices"' not in overview.text
    r = await submit(
        browser,
        f"/t/{tenant.slug}/projects/{project['id']}",
        f"/t/{tenant.slug}/projects/{project['id']}/budget",
        {"kind": "expense", "amount": "1", "date": "2026-01-01"},
    )
    assert r.status_code == 403
    r = await submit(
        browser,
        f"/t/{tenant.slug}/projects/{project['id']}",
        f"/t/{tenant.slug}/invoices",
        {"clientName": "Acme"},
    )
    assert r.status_code == 403


async def test_creating_an_invoice_and_moving_it_to_paid(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    project = await api_project(tenant, "Billable", currency="GBP")
    await sign_in(browser, tenant, tenant.admin.email)
    page_path = f"/t/{tenant.slug}/projects/{project['id']}/invoices"
    r = await submit(
        browser,
        page_path,
        f"/t/{tenant.slug}/invoices",
        {
            "projectId": project["id"],
            "clientName": "Acme Ltd",
            "clientEmail": "ap@acme.example",
            "currency": "",
            "issueDate": "2026-04-01",
            "dueDate": "2026-05-01",
            "notes": "Thanks",
            "back": project["id"],
            "line0Description": "Design",
            "line0Quantity": "2",
            "line0Price": "150.25",
            "line1Description": "Hosting",
            "line1Quantity": "1.5",
            "line1Price": "10",
        },
    )
    assert r.status_code == 303, r.text
    invoice_id = r.headers["location"].split("/invoices/")[1].split("?")[0]
    made = await api_get(tenant, f"/api/v1/invoices/{invoice_id}")
    assert made["currency"] == "GBP" and made["totalMinor"] == 2 * 15025 + 1500
    assert [line["description"] for line in made["lines"]] == ["Design", "Hosting"]
    page = await browser.get(r.headers["location"])
    assert "315.50 GBP" in page.text and "Acme Ltd" in page.text
    sent = await submit(
        browser,
        r.headers["location"],
        f"/t/{tenant.slug}/invoices/{invoice_id}/status",
        {"status": "sent", "version": str(made["version"])},
    )
    assert sent.status_code == 303
    now = await api_get(tenant, f"/api/v1/invoices/{invoice_id}")
    assert now["status"] == "sent" and now["sentAt"]
    stale = await submit(
        browser,
        r.headers["location"],
        f"/t/{tenant.slug}/invoices/{invoice_id}/status",
        {"status": "void", "version": str(made["version"])},
    )
    assert stale.status_code == 412 and "changed by someone else" in stale.text
    wrong = await submit(
        browser,
        r.headers["location"],
        f"/t/{tenant.slug}/invoices/{invoice_id}/status",
        {"status": "draft", "version": str(now["version"])},
    )
    assert wrong.status_code == 409 and "cannot go from sent to draft" in wrong.text
    paid = await submit(
        browser,
        r.headers["location"],
        f"/t/{tenant.slug}/invoices/{invoice_id}/status",
        {"status": "paid", "version": str(now["version"])},
    )
    assert paid.status_code == 303
    assert (await api_get(tenant, f"/api/v1/invoices/{invoice_id}"))["status"] == "paid"
    projects = await browser.get(f"/t/{tenant.slug}/projects")
    assert f'href="/t/{tenant.slug}/invoices"' in projects.text
    listed = await browser.get(f"/t/{tenant.slug}/invoices")
    assert made["number"] in listed.text and "Billable" in listed.text
    only_draft = await browser.get(f"/t/{tenant.slug}/invoices", params={"status": "draft"})
    assert made["number"] not in only_draft.text


async def test_bad_invoice_input_gives_the_form_back(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    await sign_in(browser, tenant, tenant.admin.email)
    page_path = f"/t/{tenant.slug}/invoices"
    before = len((await api_get(tenant, "/api/v1/invoices"))["items"])
    for data, field in (
        ({"clientName": ""}, "clientName"),
        ({"clientName": "A", "clientEmail": "not-an-email"}, "clientEmail"),
        ({"clientName": "A", "issueDate": "2026-05-02", "dueDate": "2026-05-01"}, "dueDate"),
        ({"clientName": "A", "currency": "dollars"}, "currency"),
        ({"clientName": "No project, no currency"}, "currency"),
        ({"clientName": "A", "line0Description": "X", "line0Quantity": "0"}, "lines.0.quantity"),
        (
            {"clientName": "A", "line0Description": "X", "line0Price": "1.999"},
            "lines.0.unitPriceMinor",
        ),
        ({"clientName": "A", "projectId": "00000000-0000-0000-0000-000000000000"}, None),
    ):
        r = await submit(browser, page_path, page_path, data)
        assert r.status_code in (404, 422), (data, r.status_code)
        if field:
            assert field in r.text, data
    assert len((await api_get(tenant, "/api/v1/invoices"))["items"]) == before


async def test_a_draft_invoice_is_deleted_and_another_tenants_is_not_found(
    browser: httpx.AsyncClient, tenant: TenantFixture, other_tenant: TenantFixture
):
    r = await tenant.client.post(
        "/api/v1/invoices",
        headers=tenant.admin.headers,
        json={"clientName": "Draft Co", "currency": "USD"},
    )
    draft = r.json()
    r = await other_tenant.client.post(
        "/api/v1/invoices",
        headers=other_tenant.admin.headers,
        json={"clientName": "Their client", "currency": "USD"},
    )
    theirs = r.json()
    await sign_in(browser, tenant, tenant.admin.email)
    hidden = await browser.get(f"/t/{tenant.slug}/invoices/{theirs['id']}")
    assert hidden.status_code == 404 and "Their client" not in hidden.text
    page_path = f"/t/{tenant.slug}/invoices/{draft['id']}"
    gone = await submit(browser, page_path, f"{page_path}/delete")
    assert gone.status_code == 303
    missing = await tenant.client.get(
        f"/api/v1/invoices/{draft['id']}", headers=tenant.admin.headers
    )
    assert missing.status_code == 404


async def test_the_time_page_lists_and_logs_project_time(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    project = await api_project(tenant, "Timed")
    task = await api_task(tenant, project["id"], "Timed task")
    dev = await tenant.member("team_member")
    await api_member(tenant, project["id"], dev.id)
    r = await tenant.client.post(
        "/api/v1/time-entries",
        headers=tenant.admin.headers,
        json={"projectId": project["id"], "date": "2026-01-07", "hours": "4", "billable": False},
    )
    assert r.status_code == 201
    await sign_in(browser, tenant, dev.email)
    page_path = f"/t/{tenant.slug}/projects/{project['id']}/time"
    page = await browser.get(page_path)
    assert page.status_code == 200 and "4.00" in page.text and "Timed task" in page.text
    logged = await submit(
        browser,
        page_path,
        page_path,
        {
            "taskId": task["id"],
            "date": "2026-01-08",
            "hours": "2",
            "description": "Fixing",
            "billable": "on",
        },
    )
    assert logged.status_code == 303
    entries = (await api_get(tenant, f"/api/v1/time-entries?projectId={project['id']}"))["items"]
    assert sorted((e["hours"], e["taskId"]) for e in entries) == [
        ("2.00", task["id"]),
        ("4.00", None),
    ]
    bad = await submit(
        browser, page_path, page_path, {"taskId": "nonsense", "date": "2026-01-08", "hours": "1"}
    )
    assert bad.status_code == 422 and "taskId" in bad.text
    other = await api_project(tenant, "Other timed")
    other_task = await api_task(tenant, other["id"], "Elsewhere")
    wrong = await submit(
        browser,
        page_path,
        page_path,
        {"taskId": other_task["id"], "date": "2026-01-08", "hours": "1"},
    )
    assert wrong.status_code == 422 or wrong.status_code == 404
    assert "Elsewhere" not in wrong.text


async def test_editing_a_draft_invoice_and_its_lines(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    r = await tenant.client.post(
        "/api/v1/invoices",
        headers=tenant.admin.headers,
        json={
            "clientName": "Draft Co",
            "currency": "EUR",
            "issueDate": "2026-04-01",
            "lines": [
                {"description": "Design", "quantity": "2", "unitPriceMinor": 10000},
                {"description": "Hosting", "quantity": "1", "unitPriceMinor": 500},
            ],
        },
    )
    assert r.status_code == 201, r.text
    made = r.json()
    invoice_path = f"/t/{tenant.slug}/invoices/{made['id']}"
    edit_path = f"{invoice_path}/edit"
    await sign_in(browser, tenant, tenant.admin.email)
    assert edit_path in (await browser.get(invoice_path)).text
    page = await browser.get(edit_path)
    assert page.status_code == 200
    assert 'value="Design"' in page.text and 'value="100.00"' in page.text
    assert 'name="line3Description"' in page.text  # its two lines and more empty rows
    form = {
        "clientName": "Draft Company",
        "clientEmail": "",
        "currency": "EUR",
        "number": made["number"],
        "issueDate": "2026-04-02",
        "dueDate": "2026-05-02",
        "notes": "Net 30",
        "lineCount": "5",
        # Hosting cleared (removed), a new third line.
        "line0Description": "Design",
        "line0Quantity": "3",
        "line0Price": "100.00",
        "line2Description": "Support",
        "line2Quantity": "1",
        "line2Price": "49.50",
    }
    saved = await submit(browser, edit_path, edit_path, form | {"version": str(made["version"])})
    assert saved.status_code == 303, saved.text
    now = await api_get(tenant, f"/api/v1/invoices/{made['id']}")
    assert now["clientName"] == "Draft Company" and now["dueDate"] == "2026-05-02"
    assert [(line["description"], line["amountMinor"]) for line in now["lines"]] == [
        ("Design", 30000),
        ("Support", 4950),
    ]
    assert now["totalMinor"] == 34950 and now["version"] == made["version"] + 1
    # Bad input names its field; a stale version and a sent invoice change nothing.
    bad = await submit(
        browser,
        edit_path,
        edit_path,
        form | {"version": str(now["version"]), "dueDate": "2026-01-01"},
    )
    assert bad.status_code == 422 and "<code>dueDate</code>" in bad.text
    price = await submit(
        browser,
        edit_path,
        edit_path,
        form | {"version": str(now["version"]), "line0Price": "1.234"},
    )
    assert price.status_code == 422 and "unitPriceMinor" in price.text
    stale = await submit(browser, edit_path, edit_path, form | {"version": str(made["version"])})
    assert stale.status_code == 412
    assert (await api_get(tenant, f"/api/v1/invoices/{made['id']}"))["version"] == now["version"]
    sent = await tenant.client.patch(
        f"/api/v1/invoices/{made['id']}",
        headers=tenant.admin.headers,
        json={"status": "sent", "version": now["version"]},
    )
    assert sent.status_code == 200, sent.text
    assert edit_path not in (await browser.get(invoice_path)).text
    assert (await browser.get(edit_path)).status_code == 409
    late = await submit(
        browser, invoice_path, edit_path, form | {"version": str(sent.json()["version"])}
    )
    assert late.status_code == 409  # lines and client are fixed once it is sent
    assert (await api_get(tenant, f"/api/v1/invoices/{made['id']}"))["totalMinor"] == 34950


async def test_long_lists_page_on_and_the_task_total_counts_every_entry(
    browser: httpx.AsyncClient, tenant: TenantFixture, services: Services
):
    """201 budget entries and 201 time entries: the first page shows 200 with a link to the
    rest, and the task's total is of all 201, not of the page."""
    import datetime as dt
    from decimal import Decimal

    project = await api_project(tenant, "Long lists", currency="EUR")
    task = await api_task(tenant, project["id"], "Many hours")
    tenant_id, project_id = uuid.UUID(tenant.id), uuid.UUID(project["id"])
    async with services.db.session(tenant_id=tenant_id) as db:
        for i in range(201):
            day = dt.date(2025, 1, 1) + dt.timedelta(days=i)
            db.add(
                BudgetEntry(
                    tenant_id=tenant_id,
                    project_id=project_id,
                    kind="expense",
                    description=f"Expense {i:03d}",
                    amount_minor=100,
                    currency="EUR",
                    entry_date=day,
                )
            )
            db.add(
                TimeEntry(
                    tenant_id=tenant_id,
                    project_id=project_id,
                    task_id=uuid.UUID(task["id"]),
                    user_id=uuid.UUID(tenant.admin.id),
                    entry_date=day,
                    hours=Decimal("0.5"),
                    description="",
                    billable=True,
                )
            )
    await sign_in(browser, tenant, tenant.admin.email)
    budget_path = f"/t/{tenant.slug}/projects/{project['id']}/budget"
    first = await browser.get(budget_path)
    assert first.status_code == 200 and first.text.count("Expense ") == 200
    more = re.search(r'href="([^"]*\?cursor=[^"]+)">More entries', first.text)
    assert more, "no link to the rest"
    rest = await browser.get(more.group(1).replace("&amp;", "&"))
    assert rest.status_code == 200 and rest.text.count("Expense ") == 1
    assert "201.00 EUR" in first.text  # the totals are of every entry
    task_page = await browser.get(f"/t/{tenant.slug}/tasks/{task['id']}")
    assert "More time entries" in task_page.text and "100.50" in task_page.text
    bad = await browser.get(budget_path, params={"cursor": "not-a-cursor"})
    assert bad.status_code in (400, 422)


async def test_a_draft_keeps_its_lines_and_a_line_error_names_its_own_row(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    lines = [{"description": f"Item {i}", "quantity": "1", "unitPriceMinor": 100} for i in range(8)]
    r = await tenant.client.post(
        "/api/v1/invoices",
        headers=tenant.admin.headers,
        json={
            "clientName": "Rows Ltd",
            "currency": "USD",
            "issueDate": "2026-04-01",
            "lines": lines,
        },
    )
    made = r.json()
    edit_path = f"/t/{tenant.slug}/invoices/{made['id']}/edit"
    await sign_in(browser, tenant, tenant.admin.email)
    form = {"clientName": "Rows Ltd", "currency": "USD", "issueDate": "2026-04-01"}
    for i in range(8):
        form |= {
            f"line{i}Description": f"Item {i}",
            f"line{i}Quantity": "1",
            f"line{i}Price": "1.00",
        }
    # No lineCount (a hand-made or trimmed form): every stored line is read, none dropped.
    saved = await submit(browser, edit_path, edit_path, form | {"version": str(made["version"])})
    assert saved.status_code == 303, saved.text
    now = await api_get(tenant, f"/api/v1/invoices/{made['id']}")
    assert len(now["lines"]) == 8
    # Row 1 cleared, row 3 refused: the message stands at row 3 (the API's lines.2).
    bad = form | {
        "line1Description": "",
        "line1Quantity": "",
        "line1Price": "",
        "line3Quantity": "-1",
    }
    r = await submit(
        browser, edit_path, edit_path, bad | {"version": str(now["version"]), "lineCount": "10"}
    )
    assert r.status_code == 422
    assert "<code>lines.3.quantity</code>" in r.text and "Line 4, quantity" in r.text
    huge = await submit(
        browser,
        edit_path,
        edit_path,
        form | {"version": str(now["version"]), "line0Price": "1e999999"},
    )
    assert huge.status_code == 422 and "lines.0.unitPriceMinor" in huge.text
