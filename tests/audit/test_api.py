"""The audit API: verification, checkpoints, proofs, public key, and the log query/export."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from kanvaro.audit.note import Verifier
from kanvaro.audit.offline import VerificationFailed, verify_bundle

LOGS = "/api/v1/audit/logs"


async def _projects(tenant, n, **headers):
    ids = []
    for i in range(n):
        r = await tenant.client.post(
            "/api/v1/projects", headers={**tenant.admin.headers, **headers}, json={"name": f"P{i}"}
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids


async def _verifier(client) -> Verifier:
    r = await client.get("/api/v1/audit/public-key")
    assert r.status_code == 200
    body = r.json()
    verifier = Verifier.parse(body["verifierKey"])
    assert body["algorithm"] == "Ed25519" and body["keyId"] == verifier.key_id.hex()
    return verifier


async def test_a_tenant_admin_verifies_their_chain(tenant, other_tenant):
    await _projects(tenant, 2)
    c, h = tenant.client, tenant.admin.headers
    r = await c.get("/api/v1/audit/verify", headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ok"] and body["chainId"] == tenant.id and body["entries"] >= 3
    assert body["firstBrokenSequence"] is None and body["breakKind"] is None
    for other in (other_tenant.id, "instance"):
        r = await c.get("/api/v1/audit/verify", headers=h, params={"tenant": other})
        assert r.status_code == 404, r.text
    r = await c.get("/api/v1/audit/verify", headers=h, params={"tenant": "nope"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "tenant"


async def test_audit_read_is_needed(tenant):
    member = await tenant.member("project_manager")
    r = await tenant.client.get("/api/v1/audit/verify", headers=member.headers)
    assert r.status_code == 403
    r = await tenant.client.get(LOGS, headers=member.headers)
    assert r.status_code == 403


async def test_the_super_admin_verifies_any_chain(tenant, super_admin):
    c = tenant.client
    r = await c.get("/api/v1/audit/verify", headers=super_admin.headers)
    assert r.status_code == 200 and r.json()["chainId"] == "instance" and r.json()["ok"]
    r = await c.get(
        "/api/v1/audit/verify", headers=super_admin.headers, params={"tenant": tenant.id}
    )
    assert r.status_code == 200 and r.json()["chainId"] == tenant.id and r.json()["ok"]
    r = await c.get(
        "/api/v1/audit/verify", headers=super_admin.headers, params={"tenant": str(uuid.uuid4())}
    )
    assert r.status_code == 404


async def test_checkpoints_on_demand_and_proofs(tenant):
    c, h = tenant.client, tenant.admin.headers
    verifier = await _verifier(c)
    assert (await c.get("/api/v1/audit/checkpoints/latest", headers=h)).status_code == 404
    first = await c.post("/api/v1/audit/checkpoints", headers=h)
    assert first.status_code == 201, first.text
    await _projects(tenant, 3)
    second = await c.post("/api/v1/audit/checkpoints", headers=h)
    assert second.status_code == 201
    small, big = first.json(), second.json()
    assert small["note"].startswith(f"{verifier.name}/{tenant.id}\n{small['treeSize']}\n")
    assert big["treeSize"] > small["treeSize"]
    latest = (await c.get("/api/v1/audit/checkpoints/latest", headers=h)).json()
    # the checkpoint request itself was audited after signing, so latest is `big`
    assert latest["treeSize"] == big["treeSize"]
    listing = (await c.get("/api/v1/audit/checkpoints", headers=h, params={"limit": 1})).json()
    assert [i["treeSize"] for i in listing["items"]] == [big["treeSize"]]
    older = await c.get(
        "/api/v1/audit/checkpoints", headers=h, params={"before": listing["nextBefore"]}
    )
    assert small["treeSize"] in [i["treeSize"] for i in older.json()["items"]]

    proof = await c.get(
        "/api/v1/audit/proofs/inclusion",
        headers=h,
        params={"sequence": 2, "treeSize": big["treeSize"]},
    )
    assert proof.status_code == 200, proof.text
    bundle = proof.json()
    assert bundle["checkpoint"] == big["note"]
    assert "entry 2 is in the signed tree" in verify_bundle(bundle, verifier)
    forged = {**bundle, "entry": {**bundle["entry"], "action": "api:project:delete"}}
    with pytest.raises(VerificationFailed, match="record hash"):
        verify_bundle(forged, verifier)

    consistency = await c.get(
        "/api/v1/audit/proofs/consistency",
        headers=h,
        params={"from": small["treeSize"], "to": big["treeSize"]},
    )
    assert consistency.status_code == 200, consistency.text
    assert "extends" in verify_bundle(consistency.json(), verifier)

    r = await c.get(
        "/api/v1/audit/proofs/inclusion",
        headers=h,
        params={"sequence": big["treeSize"] + 50, "treeSize": big["treeSize"]},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "sequence"
    r = await c.get(
        "/api/v1/audit/proofs/inclusion", headers=h, params={"sequence": 1, "treeSize": 10**9}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "treeSize"


async def test_checkpoint_permissions(tenant, super_admin):
    c = tenant.client
    r = await c.post(
        "/api/v1/roles",
        headers=tenant.admin.headers,
        json={"name": f"auditor-{uuid.uuid4().hex[:6]}", "permissions": ["audit:read"]},
    )
    assert r.status_code == 201, r.text
    auditor = await tenant.member(r.json()["name"])
    assert (await c.get("/api/v1/audit/verify", headers=auditor.headers)).status_code == 200
    r = await c.post("/api/v1/audit/checkpoints", headers=auditor.headers)
    assert r.status_code == 403  # audit:read is not enough to sign
    r = await c.post(
        "/api/v1/audit/checkpoints", headers=tenant.admin.headers, params={"tenant": "instance"}
    )
    assert r.status_code == 404  # the instance chain is not a tenant admin's
    r = await c.post(
        "/api/v1/audit/checkpoints", headers=super_admin.headers, params={"tenant": "instance"}
    )
    assert r.status_code == 201 and r.json()["chainId"] == "instance"


async def test_log_query_filters_and_pagination(tenant, other_tenant):
    c, h = tenant.client, tenant.admin.headers
    made = await _projects(tenant, 5)
    await _projects(other_tenant, 1)
    seen, cursor = [], None
    while True:
        params = {"resourceType": "project", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await c.get(LOGS, headers=h, params=params)).json()
        seen += page["items"]
        cursor = page["nextCursor"]
        if not cursor:
            break
    assert [e["resourceId"] for e in seen] == made
    assert {e["chainId"] for e in seen} == {tenant.id}
    sequences = [e["sequenceNumber"] for e in seen]
    assert sequences == sorted(sequences)

    one = await c.get(LOGS, headers=h, params={"resourceId": made[2]})
    assert [e["resourceId"] for e in one.json()["items"]] == [made[2]]
    by_actor = (await c.get(LOGS, headers=h, params={"actorId": tenant.admin.id})).json()
    assert by_actor["items"] and all(e["actorId"] == tenant.admin.id for e in by_actor["items"])
    auth = (await c.get(LOGS, headers=h, params={"category": "authentication"})).json()
    assert {e["action"] for e in auth["items"]} >= {"auth:login:success"}
    created = (await c.get(LOGS, headers=h, params={"action": "api:project:create"})).json()
    assert len(created["items"]) == 5
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert (await c.get(LOGS, headers=h, params={"from": future})).json()["items"] == []
    assert (await c.get(LOGS, headers=h, params={"to": past})).json()["items"] == []
    assert len((await c.get(LOGS, headers=h, params={"from": past, "to": future})).json()["items"])
    r = await c.get(LOGS, headers=h, params={"category": "gossip"})
    assert r.status_code == 422
    r = await c.get(LOGS, headers=h, params={"cursor": "!!"})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "cursor"


async def test_the_super_admin_sees_all_tenants_and_can_narrow(tenant, other_tenant, super_admin):
    await _projects(tenant, 1)
    await _projects(other_tenant, 1)
    c = tenant.client
    chains, cursor = set(), None
    for _ in range(200):
        params = {"action": "api:project:create", "limit": 500}
        page = (
            await c.get(
                LOGS,
                headers=super_admin.headers,
                params={**params, "cursor": cursor} if cursor else params,
            )
        ).json()
        chains |= {e["chainId"] for e in page["items"]}
        cursor = page["nextCursor"]
        if not cursor:
            break
    assert {tenant.id, other_tenant.id} <= chains
    narrowed = await c.get(
        LOGS,
        headers={**super_admin.headers, "X-Tenant-ID": other_tenant.id},
        params={"action": "api:project:create"},
    )
    assert {e["chainId"] for e in narrowed.json()["items"]} == {other_tenant.id}


async def test_csv_export_neutralizes_formulas_and_is_audited(tenant):
    c, h = tenant.client, tenant.admin.headers
    evil = '=HYPERLINK("http://evil.example","x")'
    await _projects(tenant, 1, **{"User-Agent": evil})
    r = await c.get(LOGS, headers=h, params={"format": "csv", "action": "api:project:create"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 1
    assert rows[0]["userAgent"] == "'" + evil
    assert rows[0]["action"] == "api:project:create"
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@"))
    exports = (await c.get(LOGS, headers=h, params={"action": "api:audit_log:export"})).json()
    assert exports["items"][-1]["changes"]["format"] == "csv"


async def test_json_export(tenant):
    c, h = tenant.client, tenant.admin.headers
    made = await _projects(tenant, 3)
    r = await c.get(LOGS, headers=h, params={"format": "json", "resourceType": "project"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert [e["resourceId"] for e in r.json()] == made


async def test_the_public_key_needs_no_login(client):
    verifier = await _verifier(client)
    assert verifier.name.endswith("/kanvaro-audit")


async def _last_action(services, tenant_id: str) -> str:
    from sqlalchemy import select

    from kanvaro.audit.models import AuditLog

    await services.audit.drain()  # entries are sequenced after commit
    async with services.db.session(tenant_id=uuid.UUID(tenant_id)) as session:
        return (
            await session.execute(
                select(AuditLog.action)
                .where(AuditLog.chain_id == tenant_id)
                .order_by(AuditLog.sequence_number.desc())
                .limit(1)
            )
        ).scalar_one()


async def test_a_checkpoint_is_audited_the_same_from_the_api_and_the_cli(
    tenant, services, database_url
):
    """One action (``checkpoints.issue_checkpoint``) behind every entry point; the periodic
    job's ``job:`` entry is checked in test_runtime."""
    from tests.audit.conftest import run_cli

    r = await tenant.client.post("/api/v1/audit/checkpoints", headers=tenant.admin.headers)
    assert r.status_code == 201, r.text
    assert await _last_action(services, tenant.id) == "api:audit_checkpoint:create"
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as session:
        from kanvaro.audit import service as audit

        await audit.record(
            session, action="test:entry:create", category="system", tenant_id=uuid.UUID(tenant.id)
        )
    code, _, err = await run_cli(
        "audit",
        "checkpoint",
        "--tenant",
        tenant.id,
        data_dir=services.settings.data_dir,
        database_url=database_url,
    )
    assert code == 0, err
    assert await _last_action(services, tenant.id) == "cli:audit_checkpoint:create"
