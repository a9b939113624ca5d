"""The keys page (counts and states, a running rotation followed through the JSON status) and
the compliance page (reports, retention policies, data subject requests)."""

from __future__ import annotations

from datetime import date

import httpx
from sqlalchemy import delete, select

from kanvaro import background
from kanvaro.compliance.reports import worker
from kanvaro.crypto.models import EncryptionKey, KeyRotation
from kanvaro.crypto.rotation import reencrypt
from tests.conftest import TenantFixture
from tests.crypto.conftest import add_user
from tests.web.console.admin.conftest import sign_in_as
from tests.web.console.conftest import submit

COMPLIANCE = "/api/v1/compliance"


async def test_the_keys_page_shows_states_and_no_key_material(
    browser: httpx.AsyncClient, tenant: TenantFixture, services
):
    await tenant.member("viewer")  # a member with an encrypted field or two
    await sign_in_as(browser, tenant, "admin")
    page = await browser.get(f"/t/{tenant.slug}/admin/keys")
    assert page.status_code == 200
    api = await tenant.client.get("/api/v1/admin/keys/status", headers=tenant.admin.headers)
    for k in api.json()["keys"]:
        assert f"<td>{k['scope']}</td>" in page.text
    async with services.db.session(all_tenants=True) as session:
        wrapped = (await session.execute(select(EncryptionKey.wrapped_key))).scalars().all()
    assert not [w for w in wrapped if w and w in page.text]


async def test_a_running_rotation_is_followed_in_the_page(
    browser: httpx.AsyncClient, tenant: TenantFixture, services
):
    await sign_in_as(browser, tenant, "admin")
    idle = await browser.get(f"/t/{tenant.slug}/admin/keys")
    assert "data-poll" not in idle.text
    async with services.db.session(all_tenants=True) as session:
        row = KeyRotation(state="running", reason="manual", total_rows=10, done_rows=4)
        session.add(row)
    try:
        page = await browser.get(f"/t/{tenant.slug}/admin/keys")
        assert 'data-poll="/api/v1/admin/keys/status"' in page.text
        assert 'data-done="rotation.finishedAt"' in page.text
        # The address the page polls answers the browser session (cookie) with the rotation.
        status = await browser.get("/api/v1/admin/keys/status")
        assert status.status_code == 200 and status.json()["rotation"]["state"] == "running"
    finally:
        async with services.db.session(all_tenants=True) as session:
            await session.execute(delete(KeyRotation).where(KeyRotation.id == row.id))


async def test_the_organizations_keys_are_rotated_from_the_page(
    browser: httpx.AsyncClient, tenant: TenantFixture, services, monkeypatch
):
    await sign_in_as(browser, tenant, "admin")
    path = f"/t/{tenant.slug}/admin/keys"
    empty = await browser.get(path)
    assert f'action="{path}/rotate"' not in empty.text  # no key yet: nothing to rotate
    await add_user(services, tenant.id, "+14155550555")  # an encrypted phone: a data key
    page = await browser.get(path)
    assert f'action="{path}/rotate"' in page.text
    # Held back, so the page is seen while the keys are still retiring.
    held: list[str] = []
    monkeypatch.setattr(
        background, "spawn", lambda work, *, name: (work.close(), held.append(name))
    )
    r = await submit(browser, path, f"{path}/rotate", {})
    assert r.status_code == 303 and "notice=rotation-started" in r.headers["location"], r.text
    assert len(held) == 1
    during = await browser.get(path)
    assert "A rotation of these keys is under way" in during.text
    assert f'action="{path}/rotate"' not in during.text
    # A second request (a stale tab) is refused on the page, nothing started.
    again = await submit(browser, path, f"{path}/rotate", {})
    assert again.status_code == 409 and "under way" in again.text and len(held) == 1
    await reencrypt(services.db, services.keyring)
    after = await browser.get(path)
    assert f'action="{path}/rotate"' in after.text


async def test_keys_need_settings_update(browser: httpx.AsyncClient, tenant: TenantFixture):
    await sign_in_as(browser, tenant, "project_manager")
    path = f"/t/{tenant.slug}/admin/keys"
    assert (await browser.get(path)).status_code == 403
    assert (await submit(browser, f"/t/{tenant.slug}/", f"{path}/rotate", {})).status_code == 403


async def test_generating_and_downloading_a_report(
    browser: httpx.AsyncClient, tenant: TenantFixture, services, monkeypatch
):
    # Held back, so the page is seen while the report waits; then generated as the kick would.
    asked: list[tuple] = []
    monkeypatch.setattr(worker, "start", lambda *args: asked.append(args))
    await sign_in_as(browser, tenant, "admin")
    path = f"/t/{tenant.slug}/admin/compliance"
    today = date.today().isoformat()
    r = await submit(
        browser,
        path,
        f"{path}/reports",
        {"reportType": "gdpr", "periodStart": "2026-01-01", "periodEnd": today},
    )
    assert r.status_code == 303, r.text
    assert "notice=report-requested" in r.headers["location"]
    listed = await tenant.client.get(f"{COMPLIANCE}/reports", headers=tenant.admin.headers)
    (report,) = listed.json()["items"]
    # Asked for, not yet generated: the row shows its progress and the module that follows it.
    page = await browser.get(path)
    assert f'data-report="{report["id"]}"' in page.text and "<progress" in page.text
    assert "/static/console/admin-reports.js" in page.text
    assert f"/api/v1/compliance/reports/{report['id']}/download" not in page.text
    # The module follows it through the API with the session cookie.
    followed = await browser.get(f"{COMPLIANCE}/reports/{report['id']}")
    assert followed.status_code == 200 and "progress" in followed.json()
    ((_services, tenant_id, report_id),) = asked
    assert await worker.run_one(services, tenant_id, report_id) is True
    page = await browser.get(path)
    assert f"/api/v1/compliance/reports/{report['id']}/download?format=pdf" in page.text
    assert f'data-report="{report["id"]}"' not in page.text
    download = await browser.get(f"/api/v1/compliance/reports/{report['id']}/download")
    assert download.status_code == 200
    bad = await submit(
        browser,
        path,
        f"{path}/reports",
        {"reportType": "gdpr", "periodStart": "2026-02-01", "periodEnd": "yesterday"},
    )
    assert bad.status_code == 422 and 'id="r-end-error"' in bad.text


async def test_retention_policies_are_created_and_edited(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    await sign_in_as(browser, tenant, "admin")
    path = f"/t/{tenant.slug}/admin/compliance"
    r = await submit(
        browser,
        path,
        f"{path}/retention",
        {"resourceType": "time_entries", "retentionDays": "400", "regulation": "gdpr"},
    )
    assert r.status_code == 303, r.text
    listed = await tenant.client.get(
        f"{COMPLIANCE}/retention-policies", headers=tenant.admin.headers
    )
    (policy,) = listed.json()["items"]
    assert policy["retentionDays"] == 400 and policy["regulation"] == "gdpr"
    r = await submit(
        browser,
        path,
        f"{path}/retention/{policy['id']}",
        {"retentionDays": "500", "archiveAfterDays": "100", "version": str(policy["version"])},
    )
    assert r.status_code == 303, r.text
    changed = await tenant.client.get(
        f"{COMPLIANCE}/retention-policies/{policy['id']}", headers=tenant.admin.headers
    )
    assert changed.json()["retentionDays"] == 500 and changed.json()["archiveAfterDays"] == 100
    bad = await submit(
        browser,
        path,
        f"{path}/retention",
        {"resourceType": "invoices", "retentionDays": "10", "archiveAfterDays": "20"},
    )
    assert bad.status_code == 422 and "retentionDays" in bad.text


async def test_data_subject_requests_are_recorded_and_moved_on(
    browser: httpx.AsyncClient, tenant: TenantFixture, other_tenant: TenantFixture
):
    member = await tenant.member("viewer")
    stranger = await other_tenant.member("viewer")
    await sign_in_as(browser, tenant, "admin")
    path = f"/t/{tenant.slug}/admin/compliance"
    r = await submit(
        browser,
        path,
        f"{path}/requests",
        {"requestType": "access", "subjectUserId": member.id, "notes": "by mail"},
    )
    assert r.status_code == 303, r.text
    listed = await tenant.client.get(f"{COMPLIANCE}/requests", headers=tenant.admin.headers)
    (req,) = listed.json()["items"]
    r = await submit(
        browser,
        path,
        f"{path}/requests/{req['id']}",
        {"status": "in_progress", "notes": "by mail", "version": str(req["version"])},
    )
    assert r.status_code == 303, r.text
    got = await tenant.client.get(
        f"{COMPLIANCE}/requests/{req['id']}", headers=tenant.admin.headers
    )
    assert got.json()["status"] == "in_progress"
    outsider = await submit(
        browser, path, f"{path}/requests", {"requestType": "access", "subjectUserId": stranger.id}
    )
    assert outsider.status_code == 422 and "No such person" in outsider.text
    theirs = await other_tenant.client.post(
        f"{COMPLIANCE}/requests",
        headers=other_tenant.admin.headers,
        json={"requestType": "access", "subjectUserId": stranger.id},
    )
    assert theirs.status_code == 201, theirs.text
    r = await submit(
        browser,
        path,
        f"{path}/requests/{theirs.json()['id']}",
        {"status": "rejected", "version": "1"},
    )
    assert r.status_code == 404


async def test_compliance_needs_compliance_read(browser: httpx.AsyncClient, tenant: TenantFixture):
    await sign_in_as(browser, tenant, "team_member")
    assert (await browser.get(f"/t/{tenant.slug}/admin/compliance")).status_code == 403
