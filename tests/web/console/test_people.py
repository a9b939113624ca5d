"""Forms past the picker: with more people than a list shows, anyone is named by email (any
case) on the admin forms (audit filter, rate-limit block, data subject request, legal hold)
and the project member form; an address of nobody here, or of another tenant's person, is a
422 naming the email field; names next to rows are of those rows, not of the picker's list."""

from __future__ import annotations

import httpx
import pytest

from kanvaro.web.console import people
from kanvaro.web.console.work import common
from tests.conftest import TenantFixture
from tests.web.console.admin.conftest import sign_in_as
from tests.web.console.conftest import submit


@pytest.fixture
def tiny_picker(monkeypatch):
    monkeypatch.setattr(people, "PICKER_LIMIT", 1)
    monkeypatch.setattr(common, "PICKER_LIMIT", 1)


async def test_admin_forms_take_a_person_by_email(
    browser: httpx.AsyncClient, tenant: TenantFixture, other_tenant: TenantFixture, tiny_picker
):
    person = await tenant.member("viewer")
    stranger = await other_tenant.member("viewer")
    await sign_in_as(browser, tenant, "admin")
    base = f"/t/{tenant.slug}/admin"
    h = tenant.admin.headers

    # A data subject request.
    path = f"{base}/compliance"
    r = await submit(
        browser,
        path,
        f"{path}/requests",
        {"requestType": "access", "subjectUserId": "", "subjectUserEmail": person.email.upper()},
    )
    assert r.status_code == 303, r.text
    (req,) = (await tenant.client.get("/api/v1/compliance/requests", headers=h)).json()["items"]
    assert req["subjectUserId"] == person.id
    page = await browser.get(path)
    assert person.email in page.text  # the row's name, though the picker lists one person
    refused = await submit(
        browser,
        path,
        f"{path}/requests",
        {"requestType": "access", "subjectUserEmail": stranger.email},
    )
    assert refused.status_code == 422 and "<code>subjectUserEmail</code>" in refused.text

    # A legal hold.
    path = f"{base}/compliance/legal-holds"
    r = await submit(browser, path, path, {"userEmail": person.email, "reason": "Case 9"})
    assert r.status_code == 303, r.text
    (hold,) = (await tenant.client.get("/api/v1/compliance/legal-holds", headers=h)).json()["items"]
    assert hold["userId"] == person.id
    refused = await submit(
        browser, path, path, {"userEmail": "nobody@nowhere.example", "reason": "x"}
    )
    assert refused.status_code == 422 and "<code>userEmail</code>" in refused.text

    # A rate-limit block.
    path = f"{base}/rate-limits"
    r = await submit(browser, path, f"{path}/blocks", {"userEmail": person.email, "minutes": "30"})
    assert r.status_code == 303, r.text
    (block,) = (await tenant.client.get("/api/v1/admin/rate-limits/blocks", headers=h)).json()
    assert block["userId"] == person.id
    assert person.email in (await browser.get(path)).text
    refused = await submit(
        browser, path, f"{path}/blocks", {"userEmail": stranger.email, "minutes": "5"}
    )
    assert refused.status_code == 422 and "<code>userEmail</code>" in refused.text

    # The audit filter: the person's entries only (a deactivated actor's too).
    path = f"{base}/audit"
    mine = await browser.get(path, params={"actorEmail": tenant.admin.email})
    assert mine.status_code == 200 and "api:legal_hold:create" in mine.text
    nobody = await browser.get(path, params={"actorEmail": person.email})
    assert nobody.status_code == 200 and "api:legal_hold:create" not in nobody.text
    unknown = await browser.get(path, params={"actorEmail": stranger.email})
    assert unknown.status_code == 422 and "<code>actorEmail</code>" in unknown.text
