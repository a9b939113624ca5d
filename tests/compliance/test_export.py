"""GDPR export (issue 14.1): everything about a person as JSON and as a zip, by himself and
by an admin, audited, streamed, never a secret."""

from __future__ import annotations

import io
import json
import uuid
import zipfile

from sqlalchemy import select

from kanvaro.audit.models import AuditLog
from tests.compliance.conftest import PHONE, TOTP_CANARY, footprint


async def _audit_actions(services, tenant_id: str, user_id: str) -> list[str]:
    await services.audit.drain()
    async with services.db.session(tenant_id=uuid.UUID(tenant_id)) as db:
        rows = await db.execute(
            select(AuditLog.action).where(
                AuditLog.chain_id == tenant_id, AuditLog.resource_id == user_id
            )
        )
        return list(rows.scalars())


async def test_a_person_exports_everything_about_himself_as_json(services, client, tenant):
    fp = await footprint(services, client, tenant)
    r = await client.get(f"/api/v1/users/{fp.person.id}/export", headers=fp.person.headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert "attachment" in r.headers["content-disposition"]
    assert TOTP_CANARY not in r.text and "$argon2" not in r.text  # no secret, no hash
    data = r.json()
    assert data["profile"]["email"] == fp.person.email
    assert data["profile"]["phone"] == PHONE
    assert data["profile"]["role"]["name"] == "project_manager"
    assert [p["id"] for p in data["projectsCreated"]] == [fp.ids["project"]]
    assert [t["id"] for t in data["tasksCreated"]] == [fp.ids["task"]]
    assert [t["id"] for t in data["tasksAssigned"]] == [fp.ids["task"]]
    assert [c["id"] for c in data["comments"]] == [fp.ids["comment"]]
    assert [t["id"] for t in data["timeEntries"]] == [fp.ids["time"]]
    assert [i["id"] for i in data["invoicesCreated"]] == [fp.ids["invoice"]]
    assert data["sessions"] and "accessTokenHash" not in data["sessions"][0]
    assert data["devices"]
    assert [m["methodType"] for m in data["mfaMethods"]] == ["totp"]
    assert not any(k in data["mfaMethods"][0] for k in ("secret", "secretEncrypted", "publicKey"))
    actions = {e["action"] for e in data["auditEntries"]}
    assert {"api:project:create", "api:task:create", "api:invoice:create"} <= actions
    assert r.text.count(PHONE) == 1  # the profile, nowhere else
    assert "api:user:export" in await _audit_actions(services, tenant.id, fp.person.id)


async def test_an_admin_exports_a_member_as_a_zip(services, client, tenant):
    fp = await footprint(services, client, tenant)
    r = await client.get(
        f"/api/v1/users/{fp.person.id}/export?format=zip", headers=tenant.admin.headers
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    names = set(archive.namelist())
    assert {"profile.json", "README.txt", "timeEntries.jsonl", "auditEntries.jsonl"} <= names
    profile = json.loads(archive.read("profile.json"))
    assert profile["profile"]["id"] == fp.person.id
    times = [json.loads(line) for line in archive.read("timeEntries.jsonl").splitlines()]
    assert [t["id"] for t in times] == [fp.ids["time"]]
    assert all(TOTP_CANARY.encode() not in archive.read(n) for n in names)
    entries = await _audit_actions(services, tenant.id, fp.person.id)
    assert "api:user:export" in entries


async def test_a_member_cannot_export_someone_else_and_another_tenant_sees_nobody(
    services, client, tenant, other_tenant
):
    fp = await footprint(services, client, tenant)
    viewer = await tenant.member("viewer")
    r = await client.get(f"/api/v1/users/{fp.person.id}/export", headers=viewer.headers)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    r = await client.get(f"/api/v1/users/{fp.person.id}/export", headers=other_tenant.admin.headers)
    assert r.status_code == 404
    r = await client.get(
        f"/api/v1/users/{fp.person.id}/export?format=xml", headers=fp.person.headers
    )
    assert r.status_code == 422 and "format" in r.text


async def test_a_large_export_streams_in_chunks(services, client, tenant):
    """Hundreds of time entries: the body arrives in many chunks, not one buffer."""
    from datetime import date, timedelta

    from kanvaro.work.models import TimeEntry

    fp = await footprint(services, client, tenant)
    tenant_id = uuid.UUID(tenant.id)
    async with services.db.session(tenant_id=tenant_id) as db:
        for i in range(1200):
            db.add(
                TimeEntry(
                    project_id=uuid.UUID(fp.ids["project"]),
                    user_id=uuid.UUID(fp.person.id),
                    entry_date=date.today() - timedelta(days=i % 300),
                    hours=1,
                    description=f"entry {i}",
                )
            )
    # httpx's ASGI transport buffers a body, so the stream is read where the route gets it.
    from kanvaro.compliance import export

    chunks = []
    async for chunk in export.json_chunks(services.db, tenant_id, uuid.UUID(fp.person.id), "t"):
        chunks.append(chunk)
    assert len(chunks) > 1200 and max(len(c) for c in chunks) < 4096  # a row at a time
    assert len(json.loads(b"".join(chunks))["timeEntries"]) == 1201
    zipped = [
        c async for c in export.zip_chunks(services.db, tenant_id, uuid.UUID(fp.person.id), "t")
    ]
    assert len(zipped) > 5
    assert (
        len(zipfile.ZipFile(io.BytesIO(b"".join(zipped))).read("timeEntries.jsonl").splitlines())
        == 1201
    )
