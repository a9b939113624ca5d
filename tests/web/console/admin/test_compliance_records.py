"""The compliance registers' pages: processing activities (list, add, edit, remove), legal holds
(list, place, view, release) and breaches (list, record, view). Each change is checked
through the API and in the audit log; refused input re-renders the form with the field's
message; another tenant's ids are 404."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select

from kanvaro.audit.models import AuditLog
from kanvaro.services import Services
from tests.conftest import TenantFixture
from tests.web.console.admin.conftest import sign_in_as
from tests.web.console.conftest import sign_in, submit

COMPLIANCE = "/api/v1/compliance"


def base(tenant: TenantFixture) -> str:
    return f"/t/{tenant.slug}/admin/compliance"


async def audit_of(
    services: Services, tenant: TenantFixture, action: str
) -> list[tuple[str | None, uuid.UUID | None, dict]]:
    """(resource id, actor, changes) of the tenant's audit entries with ``action``."""
    await services.audit.drain()
    tenant_id = uuid.UUID(tenant.id)
    async with services.db.session(tenant_id=tenant_id) as db:
        rows = await db.execute(
            select(AuditLog.resource_id, AuditLog.actor_id, AuditLog.changes)
            .where(AuditLog.tenant_id == tenant_id, AuditLog.action == action)
            .order_by(AuditLog.sequence_number)
        )
        return [tuple(r) for r in rows.all()]


async def api_get(tenant: TenantFixture, path: str) -> httpx.Response:
    return await tenant.client.get(f"{COMPLIANCE}{path}", headers=tenant.admin.headers)


# --- processing activities -------------------------------------------------------------------


async def test_the_register_lists_the_defaults_and_adds_an_activity(
    browser: httpx.AsyncClient, tenant: TenantFixture, services: Services
):
    await sign_in_as(browser, tenant, "admin")
    path = f"{base(tenant)}/processing-activities"
    listed = await browser.get(path)
    assert listed.status_code == 200
    for item in (await api_get(tenant, "/processing-activities")).json()["items"]:
        assert f"/processing-activities/{item['id']}" in listed.text
        assert item["purpose"] in listed.text
    r = await submit(
        browser,
        path,
        path,
        {
            "purpose": "Support tickets",
            "legalBasis": "legitimate_interests",
            "dataTypes": "email\nticket text, attachments",
            "retentionPeriod": "2 years",
            "recipients": "Helpdesk vendor",
        },
    )
    assert r.status_code == 303 and r.headers["location"].endswith("notice=activity-created")
    items = (await api_get(tenant, "/processing-activities")).json()["items"]
    (made,) = [a for a in items if a["purpose"] == "Support tickets"]
    assert made["legalBasis"] == "legitimate_interests"
    assert made["dataTypes"] == ["email", "ticket text", "attachments"]
    assert made["retentionPeriod"] == "2 years" and made["recipients"] == "Helpdesk vendor"
    assert len(items) == 4  # the three defaults stay
    entries = await audit_of(services, tenant, "api:processing_activity:create")
    assert [(e[0], str(e[1])) for e in entries] == [(made["id"], tenant.admin.id)]
    assert entries[0][2]["dataTypes"] == ["email", "ticket text", "attachments"]
    page = await browser.get(path)
    assert "Support tickets" in page.text and "ticket text, attachments" in page.text


async def test_a_refused_activity_names_its_field_and_adds_nothing(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    await sign_in_as(browser, tenant, "admin")
    path = f"{base(tenant)}/processing-activities"
    bad = await submit(
        browser,
        path,
        path,
        {"purpose": "", "legalBasis": "whim", "dataTypes": "email", "retentionPeriod": "1y"},
    )
    assert bad.status_code == 422
    assert 'id="a-purpose-error"' in bad.text and 'id="a-basis-error"' in bad.text
    assert 'value="1y"' in bad.text  # what was typed is shown again
    too_long = await submit(
        browser,
        path,
        path,
        {
            "purpose": "Long",
            "legalBasis": "consent",
            "dataTypes": "x" * 101,
            "retentionPeriod": "1y",
        },
    )
    assert too_long.status_code == 422 and 'id="a-types-error"' in too_long.text
    items = (await api_get(tenant, "/processing-activities")).json()["items"]
    assert [a["purpose"] for a in items if a["purpose"] in ("", "Long")] == []


async def test_an_activity_is_edited_and_removed(
    browser: httpx.AsyncClient, tenant: TenantFixture, services: Services
):
    made = await tenant.client.post(
        f"{COMPLIANCE}/processing-activities",
        headers=tenant.admin.headers,
        json={
            "purpose": "Newsletter",
            "legalBasis": "consent",
            "dataTypes": ["email"],
            "retentionPeriod": "Until unsubscribed",
        },
    )
    assert made.status_code == 201, made.text
    activity = made.json()
    await sign_in_as(browser, tenant, "admin")
    path = f"{base(tenant)}/processing-activities/{activity['id']}"
    shown = await browser.get(path)
    assert shown.status_code == 200
    assert 'value="Newsletter"' in shown.text and 'data-confirm="Remove Newsletter' in shown.text
    form = {
        "purpose": "Newsletter",
        "legalBasis": "consent",
        "dataTypes": "email\nfirst name",
        "retentionPeriod": "Until unsubscribed + 30 days",
        "recipients": "Mail provider",
        "version": str(activity["version"]),
    }
    r = await submit(browser, path, path, form)
    assert r.status_code == 303, r.text
    items = (await api_get(tenant, "/processing-activities")).json()["items"]
    (changed,) = [a for a in items if a["id"] == activity["id"]]
    assert changed["dataTypes"] == ["email", "first name"]
    assert changed["retentionPeriod"] == "Until unsubscribed + 30 days"
    assert changed["recipients"] == "Mail provider"
    assert changed["version"] == activity["version"] + 1
    entries = await audit_of(services, tenant, "api:processing_activity:update")
    assert [e[0] for e in entries] == [activity["id"]]
    # An edit from a page opened before that change is refused and saves nothing.
    stale = await submit(browser, path, path, {**form, "recipients": "Someone else"})
    assert stale.status_code == 412 and "changed by someone else" in stale.text
    bad = await submit(
        browser, path, path, {**form, "purpose": "", "version": str(changed["version"])}
    )
    assert bad.status_code == 422 and 'id="a-purpose-error"' in bad.text
    r = await submit(browser, path, f"{path}/delete")
    assert r.status_code == 303 and r.headers["location"].endswith("notice=activity-deleted")
    items = (await api_get(tenant, "/processing-activities")).json()["items"]
    assert activity["id"] not in [a["id"] for a in items]
    entries = await audit_of(services, tenant, "api:processing_activity:delete")
    assert [(e[0], e[2]) for e in entries] == [(activity["id"], {"purpose": "Newsletter"})]
    assert (await browser.get(path)).status_code == 404


async def test_another_tenants_activity_is_not_found(
    browser: httpx.AsyncClient, tenant: TenantFixture, other_tenant: TenantFixture
):
    theirs = (
        await other_tenant.client.get(
            f"{COMPLIANCE}/processing-activities", headers=other_tenant.admin.headers
        )
    ).json()["items"][0]
    await sign_in_as(browser, tenant, "admin")
    path = f"{base(tenant)}/processing-activities/{theirs['id']}"
    assert (await browser.get(path)).status_code == 404
    own = f"{base(tenant)}/processing-activities"
    r = await submit(browser, own, f"{path}/delete")
    assert r.status_code == 404
    still = await other_tenant.client.get(
        f"{COMPLIANCE}/processing-activities", headers=other_tenant.admin.headers
    )
    assert theirs["id"] in [a["id"] for a in still.json()["items"]]


# --- legal holds -----------------------------------------------------------------------------


async def test_a_hold_is_placed_shown_and_released(
    browser: httpx.AsyncClient, tenant: TenantFixture, services: Services
):
    member = await tenant.member("viewer")
    await sign_in_as(browser, tenant, "admin")
    path = f"{base(tenant)}/legal-holds"
    empty = await browser.get(path)
    assert empty.status_code == 200 and "No active legal holds." in empty.text
    r = await submit(
        browser,
        path,
        path,
        {"userId": member.id, "resourceType": "time_entries", "reason": "Litigation 2026-17"},
    )
    assert r.status_code == 303, r.text
    (hold,) = (await api_get(tenant, "/legal-holds")).json()["items"]
    assert r.headers["location"].startswith(f"{path}/{hold['id']}?")
    assert hold["userId"] == member.id and hold["resourceType"] == "time_entries"
    assert hold["reason"] == "Litigation 2026-17" and hold["releasedAt"] is None
    entries = await audit_of(services, tenant, "api:legal_hold:create")
    assert [(e[0], str(e[1])) for e in entries] == [(hold["id"], tenant.admin.id)]
    listed = await browser.get(path)
    assert member.email in listed.text and "Litigation 2026-17" in listed.text
    shown = await browser.get(f"{path}/{hold['id']}")
    assert shown.status_code == 200
    assert member.email in shown.text and "time entries" in shown.text
    assert f"/legal-holds/{hold['id']}/release" in shown.text
    r = await submit(browser, f"{path}/{hold['id']}", f"{path}/{hold['id']}/release")
    assert r.status_code == 303 and r.headers["location"].endswith("notice=hold-released")
    released = (await api_get(tenant, f"/legal-holds/{hold['id']}")).json()
    assert released["releasedAt"] is not None and released["releasedBy"] == tenant.admin.id
    entries = await audit_of(services, tenant, "api:legal_hold:release")
    assert [e[0] for e in entries] == [hold["id"]]
    shown = await browser.get(f"{path}/{hold['id']}")
    assert "released" in shown.text and f"/legal-holds/{hold['id']}/release" not in shown.text
    listed = await browser.get(path)
    assert "No active legal holds." in listed.text and "Litigation 2026-17" in listed.text


async def test_a_hold_on_the_whole_organization_and_a_second_release(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    await sign_in_as(browser, tenant, "admin")
    path = f"{base(tenant)}/legal-holds"
    r = await submit(browser, path, path, {"userId": "", "resourceType": "", "reason": "Audit"})
    assert r.status_code == 303, r.text
    (hold,) = (await api_get(tenant, "/legal-holds")).json()["items"]
    assert hold["userId"] is None and hold["resourceType"] is None
    assert "the whole organization" in (await browser.get(path)).text
    released = await tenant.client.post(
        f"{COMPLIANCE}/legal-holds/{hold['id']}/release", headers=tenant.admin.headers
    )
    assert released.status_code == 200
    # Released meanwhile through the API: a second release is refused on the page.
    again = await submit(browser, f"{path}/{hold['id']}", f"{path}/{hold['id']}/release")
    assert again.status_code == 409 and "released already" in again.text


async def test_a_refused_hold_names_its_field(
    browser: httpx.AsyncClient, tenant: TenantFixture, other_tenant: TenantFixture
):
    stranger = await other_tenant.member("viewer")
    await sign_in_as(browser, tenant, "admin")
    path = f"{base(tenant)}/legal-holds"
    bad = await submit(browser, path, path, {"resourceType": "secrets", "reason": ""})
    assert bad.status_code == 422
    assert 'id="h-type-error"' in bad.text and 'id="h-reason-error"' in bad.text
    outsider = await submit(browser, path, path, {"userId": stranger.id, "reason": "Theirs"})
    assert outsider.status_code == 422
    assert "No such person" in outsider.text and 'id="h-who-error"' in outsider.text
    assert (await api_get(tenant, "/legal-holds")).json()["items"] == []


async def test_another_tenants_hold_is_not_found(
    browser: httpx.AsyncClient, tenant: TenantFixture, other_tenant: TenantFixture
):
    theirs = await other_tenant.client.post(
        f"{COMPLIANCE}/legal-holds",
        headers=other_tenant.admin.headers,
        json={"reason": "Theirs"},
    )
    assert theirs.status_code == 201, theirs.text
    hold_id = theirs.json()["id"]
    await sign_in_as(browser, tenant, "admin")
    path = f"{base(tenant)}/legal-holds"
    assert (await browser.get(f"{path}/{hold_id}")).status_code == 404
    assert (await submit(browser, path, f"{path}/{hold_id}/release")).status_code == 404
    got = await other_tenant.client.get(
        f"{COMPLIANCE}/legal-holds/{hold_id}", headers=other_tenant.admin.headers
    )
    assert got.json()["releasedAt"] is None


# --- breaches --------------------------------------------------------------------------------


async def test_a_breach_is_recorded_and_shown(
    browser: httpx.AsyncClient, tenant: TenantFixture, services: Services
):
    await sign_in_as(browser, tenant, "admin")
    path = f"{base(tenant)}/breaches"
    empty = await browser.get(path)
    assert empty.status_code == 200 and "No breaches recorded." in empty.text
    r = await submit(
        browser,
        path,
        path,
        {
            "detectedAt": "2026-03-04T05:06",
            "description": "A laptop with an export was stolen.",
            "severity": "high",
            "affectedSubjects": "12",
            "reportedToAuthorityAt": "2026-03-05T09:00",
            "subjectsNotifiedAt": "",
        },
    )
    assert r.status_code == 303, r.text
    (breach,) = (await api_get(tenant, "/breaches")).json()["items"]
    assert r.headers["location"].startswith(f"{path}/{breach['id']}?")
    assert breach["detectedAt"].startswith("2026-03-04T05:06:00")
    assert breach["reportedToAuthorityAt"].startswith("2026-03-05T09:00:00")
    assert breach["subjectsNotifiedAt"] is None
    assert breach["severity"] == "high" and breach["affectedSubjects"] == 12
    assert breach["description"] == "A laptop with an export was stolen."
    entries = await audit_of(services, tenant, "api:data_breach:create")
    assert [(e[0], str(e[1]), e[2]) for e in entries] == [
        (breach["id"], tenant.admin.id, {"severity": "high", "affectedSubjects": 12})
    ]
    listed = await browser.get(path)
    assert "2026-03-04 05:06 UTC" in listed.text and "A laptop with an export" in listed.text
    shown = await browser.get(f"{path}/{breach['id']}")
    assert shown.status_code == 200
    assert "A laptop with an export was stolen." in shown.text
    assert "2026-03-05 09:00 UTC" in shown.text and "not notified" in shown.text
    # The API's defaults for what is left empty.
    r = await submit(
        browser, path, path, {"detectedAt": "2026-04-01T00:00:00", "description": "Misdirected"}
    )
    assert r.status_code == 303, r.text
    items = (await api_get(tenant, "/breaches")).json()["items"]
    (second,) = [b for b in items if b["description"] == "Misdirected"]
    assert second["severity"] == "medium" and second["affectedSubjects"] == 0


async def test_a_refused_breach_names_its_field_and_records_nothing(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    await sign_in_as(browser, tenant, "admin")
    path = f"{base(tenant)}/breaches"
    bad = await submit(
        browser,
        path,
        path,
        {"detectedAt": "last tuesday", "description": "", "affectedSubjects": "many"},
    )
    assert bad.status_code == 422
    for name in ("b-detected", "b-description", "b-affected"):
        assert f'id="{name}-error"' in bad.text, name
    assert 'value="last tuesday"' in bad.text
    missing = await submit(browser, path, path, {"description": "No date"})
    assert missing.status_code == 422 and 'id="b-detected-error"' in missing.text
    assert (await api_get(tenant, "/breaches")).json()["items"] == []


async def test_another_tenants_breach_is_not_found(
    browser: httpx.AsyncClient, tenant: TenantFixture, other_tenant: TenantFixture
):
    theirs = await other_tenant.client.post(
        f"{COMPLIANCE}/breaches",
        headers=other_tenant.admin.headers,
        json={"detectedAt": "2026-01-01T00:00:00Z", "description": "Theirs"},
    )
    assert theirs.status_code == 201, theirs.text
    await sign_in_as(browser, tenant, "admin")
    path = f"{base(tenant)}/breaches/{theirs.json()['id']}"
    assert (await browser.get(path)).status_code == 404


# --- who may ---------------------------------------------------------------------------------


async def test_the_registers_need_compliance_permissions(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    role = await tenant.client.post(
        "/api/v1/roles",
        headers=tenant.admin.headers,
        json={"name": "ComplianceReader", "permissions": ["compliance:read"]},
    )
    assert role.status_code == 201, role.text
    hold = await tenant.client.post(
        f"{COMPLIANCE}/legal-holds", headers=tenant.admin.headers, json={"reason": "Kept"}
    )
    assert hold.status_code == 201, hold.text
    reader = await tenant.member("ComplianceReader")
    await sign_in_as(browser, tenant, "project_manager")
    for section in ("processing-activities", "legal-holds", "breaches"):
        assert (await browser.get(f"{base(tenant)}/{section}")).status_code == 403, section
    browser.cookies.clear()
    await sign_in(browser, tenant, reader.email)
    holds = await browser.get(f"{base(tenant)}/legal-holds")
    assert holds.status_code == 200 and "Kept" in holds.text and "Place hold" not in holds.text
    shown = await browser.get(f"{base(tenant)}/legal-holds/{hold.json()['id']}")
    assert shown.status_code == 200 and "/release" not in shown.text
    activities = await browser.get(f"{base(tenant)}/processing-activities")
    assert activities.status_code == 200 and "Add to the register" not in activities.text
    (first, *_) = (await api_get(tenant, "/processing-activities")).json()["items"]
    one = await browser.get(f"{base(tenant)}/processing-activities/{first['id']}")
    assert one.status_code == 200 and "/delete" not in one.text and first["purpose"] in one.text
    breaches = await browser.get(f"{base(tenant)}/breaches")
    assert breaches.status_code == 200 and "Record breach" not in breaches.text
    r = await submit(
        browser,
        f"{base(tenant)}/breaches",
        f"{base(tenant)}/breaches",
        {"detectedAt": "2026-01-01T00:00", "description": "Not mine to record"},
    )
    assert r.status_code == 403


async def test_the_compliance_page_links_the_registers(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    await sign_in_as(browser, tenant, "admin")
    page = await browser.get(base(tenant))
    for section in ("processing-activities", "legal-holds", "breaches"):
        assert f'href="{base(tenant)}/{section}"' in page.text, section
