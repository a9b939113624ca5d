"""Compliance reports (issue 14.4, 14.5, 14.7): every type by API, stored with status, the
chain's verification and a signed checkpoint an auditor can check offline, figures that move
when the system moves, and JSON/HTML/PDF downloads with charts."""

from __future__ import annotations

import base64
import hashlib
from datetime import date, timedelta

import pytest

from kanvaro import background
from kanvaro.audit.hashing import canonical_json
from kanvaro.audit.note import Verifier, open_checkpoint
from tests.compliance.conftest import footprint

TODAY = date.today()
PERIOD = {"periodStart": (TODAY - timedelta(days=7)).isoformat(), "periodEnd": TODAY.isoformat()}


async def _report(client, tenant, kind: str) -> dict:
    r = await client.post(
        "/api/v1/compliance/reports",
        headers=tenant.admin.headers,
        json={"reportType": kind, **PERIOD},
    )
    assert r.status_code == 202, r.text
    asked = r.json()
    assert asked["status"] == "pending" and asked["progress"] == {
        "done": 0, "total": 3, "step": "queued"
    }  # fmt: skip
    assert r.headers["location"] == f"/api/v1/compliance/reports/{asked['id']}"
    await background.drain()  # generated in the background after the request committed
    r = await client.get(r.headers["location"], headers=tenant.admin.headers)
    body = r.json()
    assert body["status"] == "completed", body
    assert body["progress"] == {"done": 3, "total": 3, "step": "completed"}
    assert body["attempts"] == 1
    return body


@pytest.mark.parametrize("kind", ["sox", "gdpr", "hipaa", "pci_dss", "soc2"])
async def test_each_report_embeds_a_verified_chain_and_a_signed_checkpoint(
    services, client, tenant, kind
):
    await footprint(services, client, tenant)
    body = await _report(client, tenant, kind)
    data = body["reportData"]
    assert data["reportType"] == kind and data["period"]["end"] == TODAY.isoformat()
    proof = data["evidence"]
    assert proof["verification"]["ok"] is True and proof["verification"]["entries"] > 5
    assert proof["period"]["coveredByCheckpoint"] is True
    # Offline: the note opens with the published key and names this chain and size.
    verifier = Verifier.parse(proof["publicKey"])
    signed = open_checkpoint(proof["checkpoint"]["signedNote"], verifier)
    assert signed.origin.endswith(f"/{tenant.id}")
    assert signed.tree_size == proof["checkpoint"]["treeSize"] >= proof["period"]["lastSequence"]
    assert (
        data["reportDigest"]
        == hashlib.sha256(
            canonical_json({"figures": data["figures"], "evidence": proof})
        ).hexdigest()
    )
    listed = await client.get("/api/v1/compliance/reports", headers=tenant.admin.headers)
    assert body["id"] in [item["id"] for item in listed.json()["items"]]


async def test_sox_figures_change_when_the_system_changes(services, client, tenant):
    fp = await footprint(services, client, tenant)
    before = (await _report(client, tenant, "sox"))["reportData"]["figures"]
    assert before["financialTransactions"]["count"] == 1
    assert before["segregationOfDutiesViolations"]["count"] == 0
    # The invoice's creator approves it himself: a segregation-of-duties violation.
    r = await client.patch(
        f"/api/v1/invoices/{fp.ids['invoice']}",
        headers=fp.person.headers,
        json={"status": "sent", "version": 1},
    )
    assert r.status_code == 200, r.text
    # A role change is a permission change, and a critical one.
    viewer = await tenant.member("viewer")
    r = await client.patch(
        f"/api/v1/users/{viewer.id}",
        headers=tenant.admin.headers,
        json={"role": "admin", "version": 1},
    )
    assert r.status_code == 200, r.text
    after = (await _report(client, tenant, "sox"))["reportData"]["figures"]
    assert after["financialTransactions"]["count"] == 2
    violations = after["segregationOfDutiesViolations"]["violations"]
    assert [v["invoiceId"] for v in violations] == [fp.ids["invoice"]]
    assert violations[0]["userId"] == fp.person.id
    assert after["accessChanges"]["count"] > before["accessChanges"]["count"]
    assert (
        after["criticalPermissionChanges"]["count"] > before["criticalPermissionChanges"]["count"]
    )
    review = {a["userId"]: a for a in after["userAccessReview"]["accounts"]}
    assert review[viewer.id]["role"] == "admin" and review[viewer.id]["privileged"]


async def test_mfa_coverage_follows_enrollment(services, client, tenant):
    first = (await _report(client, tenant, "hipaa"))["reportData"]["figures"]
    assert first["mfaCoverage"]["byRole"]["admin"] == {"users": 1, "withMfa": 0,
                                                        "coveragePercent": 0}  # fmt: skip
    fp = await footprint(services, client, tenant)  # a project manager with TOTP
    second = (await _report(client, tenant, "pci_dss"))["reportData"]["figures"]
    assert second["mfaCoverage"]["byRole"]["project_manager"]["withMfa"] == 1
    assert second["mfaCoverage"]["withMfa"] == 1 and second["mfaCoverage"]["activeUsers"] == 2
    enc = second["encryption"]
    phone = next(f for f in enc["fields"] if f["field"] == "users.phone")
    assert phone == {"field": "users.phone", "scope": "user", "values": 1, "encrypted": 1}
    assert enc["coveragePercent"] == 100
    # Erasing the person moves the figures again.
    r = await client.post(
        f"/api/v1/users/{fp.person.id}/erase",
        headers=tenant.admin.headers,
        json={"confirmEmail": fp.person.email},
    )
    assert r.status_code == 200
    third = (await _report(client, tenant, "soc2"))["reportData"]["figures"]
    assert third["security"]["accessControls"]["mfa"]["withMfa"] == 0
    assert third["privacy"]["dataMinimization"]["erasuresInPeriod"] == 1
    assert third["availability"]["uptime"]["value"] is None  # not invented


async def test_gdpr_report_lists_requests_breaches_and_the_register(services, client, tenant):
    fp = await footprint(services, client, tenant)
    h = tenant.admin.headers
    await client.get(f"/api/v1/users/{fp.person.id}/export", headers=h)
    r = await client.post(
        "/api/v1/compliance/requests",
        headers=h,
        json={"requestType": "access", "subjectUserId": fp.person.id},
    )
    assert r.status_code == 201
    r = await client.post(
        "/api/v1/compliance/breaches",
        headers=h,
        json={"detectedAt": f"{TODAY.isoformat()}T08:00:00Z", "description": "Lost laptop",
              "severity": "high", "affectedSubjects": 3},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    figures = (await _report(client, tenant, "gdpr"))["reportData"]["figures"]
    assert figures["dataAccessLogs"]["byAction"] == {"api:user:export": 1}
    assert figures["dataSubjectRequests"]["count"] == 1
    assert figures["dataBreaches"]["count"] == 1
    assert figures["processingActivities"][0]["purpose"].startswith("User auth")


async def test_reports_download_as_json_html_and_pdf(services, client, tenant):
    await footprint(services, client, tenant)
    report = await _report(client, tenant, "soc2")
    url = f"/api/v1/compliance/reports/{report['id']}/download"
    h = tenant.admin.headers
    r = await client.get(url, headers=h)
    assert r.status_code == 200 and r.json()["reportDigest"] == report["reportData"]["reportDigest"]
    r = await client.get(url + "?format=html", headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "SOC 2" in html and "MFA coverage by role" in html
    assert html.count('src="data:image/svg+xml;base64,') >= 2  # MFA by role, entries per day
    chart = html.split('src="data:image/svg+xml;base64,', 1)[1].split('"', 1)[0]
    svg = base64.b64decode(chart)
    assert svg.lstrip().startswith(b"<?xml") and b"<svg" in svg and b"<script" not in svg
    r = await client.get(url + "?format=pdf", headers=h)
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.content.startswith(b"%PDF-") and len(r.content) > 5000
    r = await client.get(url + "?format=docx", headers=h)
    assert r.status_code == 422


async def test_report_input_is_checked_and_access_is_declared(services, client, tenant):
    h = tenant.admin.headers
    r = await client.post(
        "/api/v1/compliance/reports",
        headers=h,
        json={"reportType": "iso27001", **PERIOD},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reportType"
    r = await client.post(
        "/api/v1/compliance/reports",
        headers=h,
        json={"reportType": "sox", "periodStart": TODAY.isoformat(), "periodEnd": "2000-01-01"},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "periodEnd"
    viewer = await tenant.member("viewer")
    r = await client.post(
        "/api/v1/compliance/reports",
        headers=viewer.headers,
        json={"reportType": "sox", **PERIOD},
    )
    assert r.status_code == 403
