"""Retention (issue 14.6): policies by API, the job (dry run, archive to JSON lines, delete,
legal holds), audit-log retention that keeps the chain verifiable with its archive."""

from __future__ import annotations

import gzip
import json
import os
import stat
import uuid
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from kanvaro.audit.keys import load_trusted
from kanvaro.audit.models import AuditLog
from kanvaro.audit.verify import verify_chain
from kanvaro.compliance import archive_check, retention
from kanvaro.identity.models import UserSession
from tests.compliance.conftest import footprint


def _lines(path: Path) -> list[bytes]:
    return gzip.decompress(path.read_bytes()).splitlines()


async def _policy(client, tenant, **body):
    r = await client.post(
        "/api/v1/compliance/retention-policies", headers=tenant.admin.headers, json=body
    )
    assert r.status_code == 201, r.text
    return r.json()


async def test_policies_are_validated_and_versioned(services, client, tenant):
    h = tenant.admin.headers
    policy = await _policy(
        client, tenant, resourceType="user_sessions", retentionDays=90, archiveAfterDays=30,
        autoDelete=True, regulation="gdpr",
    )  # fmt: skip
    assert policy["retentionDays"] == 90 and policy["version"] == 1
    r = await client.post(
        "/api/v1/compliance/retention-policies",
        headers=h,
        json={"resourceType": "user_sessions", "retentionDays": 10},
    )
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "resourceType"
    r = await client.post(
        "/api/v1/compliance/retention-policies",
        headers=h,
        json={"resourceType": "invoices", "retentionDays": 3650, "autoDelete": True},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "autoDelete"
    r = await client.post(
        "/api/v1/compliance/retention-policies",
        headers=h,
        json={"resourceType": "audit_logs", "retentionDays": 10, "archiveAfterDays": 20},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "archiveAfterDays"
    url = f"/api/v1/compliance/retention-policies/{policy['id']}"
    r = await client.patch(url, headers=h, json={"retentionDays": 120})
    assert r.status_code == 428
    r = await client.patch(url, headers=h, json={"retentionDays": 120, "version": 1})
    assert r.status_code == 200 and r.json()["version"] == 2
    r = await client.patch(url, headers=h, json={"retentionDays": 10, "version": 2})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "archiveAfterDays"


async def test_audit_retention_archives_content_and_the_chain_still_verifies(
    services, client, tenant
):
    fp = await footprint(services, client, tenant)
    policy = await _policy(
        client, tenant, resourceType="audit_logs", retentionDays=3650, archiveAfterDays=1
    )
    tenant_id = uuid.UUID(tenant.id)
    await services.audit.drain()
    later = services.clock.now() + timedelta(days=2)
    dry = await retention.run(services, tenant_id=tenant_id, dry_run=True, now=later)
    assert dry[0].archived > 5 and dry[0].archive is None
    async with services.db.session(tenant_id=tenant_id) as db:
        kept = (
            await db.execute(
                select(AuditLog.id).where(
                    AuditLog.chain_id == tenant.id, AuditLog.content_salt.is_(None)
                )
            )
        ).all()
        assert kept == []  # the dry run changed nothing

    [outcome] = await retention.run(services, tenant_id=tenant_id, now=later)
    assert outcome.archived == dry[0].archived and outcome.archive
    path = Path(outcome.archive)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    lines = [json.loads(line) for line in _lines(path)]
    assert lines[0]["format"] == retention.ARCHIVE_FORMAT and lines[1]["type"] == "checkpoint"
    assert any(fp.person.email in json.dumps(line) for line in lines)  # the content is here now
    await services.audit.drain()
    async with services.db.session(tenant_id=tenant_id) as db:
        trusted = await load_trusted(db, services.master_key)
        report = await verify_chain(db, tenant.id, trusted)
        assert report.ok and report.erased == outcome.archived
        rows = list(
            (await db.execute(select(AuditLog).where(AuditLog.chain_id == tenant.id))).scalars()
        )
        assert not any(fp.person.email in str(r.changes) for r in rows if r.content_salt is None)
        checked = await archive_check.verify_audit_archive(db, path, trusted)
        assert checked["archivedEntries"] == outcome.archived and checked["database"]["ok"]
    r = await client.get(
        f"/api/v1/compliance/retention-policies/{policy['id']}", headers=tenant.admin.headers
    )
    assert r.json()["lastRunAt"]
    # A second run archives only what was written since (the first run's own entries).
    [again] = await retention.run(services, tenant_id=tenant_id, now=later)
    assert 0 < again.archived <= 3


async def test_a_tampered_archive_is_refused(services, client, tenant, tmp_path):
    await footprint(services, client, tenant)
    await _policy(client, tenant, resourceType="audit_logs", retentionDays=3650, archiveAfterDays=1)
    tenant_id = uuid.UUID(tenant.id)
    await services.audit.drain()
    later = services.clock.now() + timedelta(days=2)
    [outcome] = await retention.run(services, tenant_id=tenant_id, now=later)
    lines = _lines(Path(outcome.archive))
    doc = json.loads(lines[3])
    doc["ipAddress"] = "198.51.100.99"
    lines[3] = json.dumps(doc).encode()
    forged = tmp_path / "forged.jsonl.gz"
    forged.write_bytes(gzip.compress(b"\n".join(lines)))
    async with services.db.session(tenant_id=tenant_id) as db:
        trusted = await load_trusted(db, services.master_key)
        try:
            await archive_check.verify_audit_archive(db, forged, trusted)
        except archive_check.ArchiveMismatch as exc:
            assert "digest" in str(exc)
        else:
            raise AssertionError("a changed archive verified")


async def test_ended_sessions_are_archived_and_deleted_unless_held(services, client, tenant):
    person = await tenant.member("team_member")
    held = await tenant.member("team_member")
    r = await client.post(
        "/api/v1/compliance/legal-holds",
        headers=tenant.admin.headers,
        json={"userId": held.id, "reason": "Investigation"},
    )
    assert r.status_code == 201
    await _policy(
        client, tenant, resourceType="user_sessions", retentionDays=1, archiveAfterDays=1,
        autoDelete=True,
    )  # fmt: skip
    tenant_id = uuid.UUID(tenant.id)
    later = services.clock.now() + timedelta(days=3)  # every session has expired by then
    [outcome] = await retention.run(services, tenant_id=tenant_id, now=later)
    assert outcome.deleted >= 2 and outcome.archived == outcome.deleted
    rows = retention.read_archive(Path(outcome.archive))
    assert {r["user_id"] for r in rows if r["type"] == "row"} >= {person.id, tenant.admin.id}
    async with services.db.session(tenant_id=tenant_id) as db:
        left = {str(s.user_id) for s in (await db.execute(select(UserSession))).scalars()}
    assert held.id in left and person.id not in left


async def test_a_hold_on_the_resource_type_skips_the_policy_and_the_job_is_shared(
    services, client, tenant
):
    await _policy(client, tenant, resourceType="compliance_reports", retentionDays=1,
                  autoDelete=True)  # fmt: skip
    r = await client.post(
        "/api/v1/compliance/legal-holds",
        headers=tenant.admin.headers,
        json={"resourceType": "compliance_reports", "reason": "Regulator's request"},
    )
    assert r.status_code == 201
    [outcome] = await retention.run(
        services, tenant_id=uuid.UUID(tenant.id), now=services.clock.now() + timedelta(days=5)
    )
    assert outcome.held and outcome.deleted == 0
    job = services.jobs.jobs.get("compliance.retention")
    assert job is not None and not job.per_process
