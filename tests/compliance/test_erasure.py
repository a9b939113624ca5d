"""GDPR erasure (issue 14.2 and 14.7): the person becomes a tombstone, his access and keys
go, the organisation's records stay attributed to the tombstone, the chain still verifies,
and a legal hold refuses it."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from kanvaro.audit.keys import load_trusted
from kanvaro.audit.models import AuditLog
from kanvaro.audit.verify import verify_chain
from kanvaro.crypto.models import EncryptionKey, KeyShredding
from kanvaro.identity.mfa.models import MfaMethod
from kanvaro.identity.models import User, UserSession
from kanvaro.work.models import Invoice, Project, Task, TimeEntry
from tests.compliance.conftest import PHONE, TOTP_CANARY, footprint

PROBLEM = "application/problem+json"


async def _erase(client, tenant, person_id: str, email: str, **extra):
    return await client.post(
        f"/api/v1/users/{person_id}/erase",
        headers=tenant.admin.headers,
        json={"confirmEmail": email, **extra},
    )


async def test_erasure_keeps_the_organisations_records_and_the_chain_verifiable(
    services, client, tenant
):
    fp = await footprint(services, client, tenant)
    person, tenant_id = uuid.UUID(fp.person.id), uuid.UUID(tenant.id)
    r = await _erase(client, tenant, fp.person.id, fp.person.email.upper())
    assert r.status_code == 200, r.text
    summary = r.json()
    tombstone = summary["tombstone"]
    assert tombstone.startswith("erased-") and len(tombstone) == 39
    assert summary["sessionsEnded"] >= 1 and summary["mfaMethods"] == 1
    assert summary["auditEntriesErased"] >= 3 and summary["destroyedKeys"] >= 1

    # The person is gone: his token no longer works, his password no longer signs in.
    r = await client.get("/api/v1/auth/me", headers=fp.person.headers)
    assert r.status_code == 401
    r = await client.post(
        "/api/v1/auth/login",
        json={"email": fp.person.email, "password": fp.person.password, "tenant": tenant.slug},
    )
    assert r.status_code == 401

    await services.audit.drain()
    async with services.db.session(tenant_id=tenant_id) as db:
        user = await db.get(User, person)
        assert user.email == f"{tombstone}@erased.invalid" and user.last_name == tombstone
        assert user.first_name == "Erased" and user.password_hash is None
        assert user.phone is None and user.phone_encrypted is None and not user.is_active
        sessions = list(
            (await db.execute(select(UserSession).where(UserSession.user_id == person))).scalars()
        )
        assert sessions and all(not s.is_active and s.ip_address is None for s in sessions)
        assert (
            await db.execute(select(MfaMethod).where(MfaMethod.user_id == person))
        ).first() is None
        # The organisation's records stay, attributed to the tombstone's account.
        invoice = await db.get(Invoice, uuid.UUID(fp.ids["invoice"]))
        assert invoice.number == fp.ids["invoiceNumber"] and invoice.total_minor == 10000
        assert invoice.created_by == person
        assert (await db.get(Project, uuid.UUID(fp.ids["project"]))).created_by == person
        assert (await db.get(Task, uuid.UUID(fp.ids["task"]))) is not None
        assert (await db.get(TimeEntry, uuid.UUID(fp.ids["time"]))).user_id == person
        # The key lineage is shredded: no wrapped material left, the intent done.
        keys = list(
            (
                await db.execute(select(EncryptionKey).where(EncryptionKey.owner_id == str(person)))
            ).scalars()
        )
        assert keys and all(k.wrapped_key is None and k.state == "destroyed" for k in keys)
        shred = (
            await db.execute(select(KeyShredding).where(KeyShredding.owner_id == str(person)))
        ).scalar_one()
        assert shred.state == "done"
        # Entries about the person lost their content; the financial one kept it.
        rows = list(
            (
                await db.execute(
                    select(AuditLog).where(
                        AuditLog.chain_id == tenant.id, AuditLog.actor_id == person
                    )
                )
            ).scalars()
        )
        erased = {r.action for r in rows if r.content_salt is None}
        kept = {r.action for r in rows if r.content_salt is not None}
        assert {"api:project:create", "auth:login:success"} <= erased
        assert "api:invoice:create" in kept
        assert all(r.ip_address is None for r in rows if r.content_salt is None)
        trusted = await load_trusted(db, services.master_key)
        report = await verify_chain(db, tenant.id, trusted)
        assert report.ok, report.to_dict()
        assert report.erased >= summary["auditEntriesErased"]
        # Nothing personal is left in any entry's content about him.
        text = " ".join(str(r.changes) for r in rows)
        assert fp.person.email not in text and PHONE not in text and TOTP_CANARY not in text
        entry = (
            await db.execute(select(AuditLog).where(AuditLog.action == "api:user:erase",
                                                    AuditLog.resource_id == str(person)))
        ).scalar_one()  # fmt: skip
        assert entry.changes["tombstone"] == tombstone and fp.person.email not in str(entry.changes)

    # A second erasure is refused; the export now shows the tombstone only.
    r = await _erase(client, tenant, fp.person.id, f"{tombstone}@erased.invalid")
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM
    r = await client.get(f"/api/v1/users/{fp.person.id}/export", headers=tenant.admin.headers)
    assert r.status_code == 200 and fp.person.email not in r.text
    assert r.json()["profile"]["erasedAs"] == tombstone


async def test_two_erasures_get_two_tombstones(services, client, tenant):
    a = await tenant.member("team_member")
    b = await tenant.member("team_member")
    ra = await _erase(client, tenant, a.id, a.email)
    rb = await _erase(client, tenant, b.id, b.email)
    assert ra.status_code == rb.status_code == 200
    assert ra.json()["tombstone"] != rb.json()["tombstone"]


async def test_a_legal_hold_blocks_erasure_with_a_clear_problem(services, client, tenant):
    person = await tenant.member("team_member")
    r = await client.post(
        "/api/v1/compliance/legal-holds",
        headers=tenant.admin.headers,
        json={"userId": person.id, "reason": "Litigation 2026-17"},
    )
    assert r.status_code == 201, r.text
    hold = r.json()["id"]
    r = await _erase(client, tenant, person.id, person.email)
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM
    problem = r.json()
    assert problem["type"].endswith("legal-hold") and problem["legalHolds"] == [hold]
    r = await client.get("/api/v1/auth/me", headers=person.headers)
    assert r.status_code == 200  # nothing happened
    # A tenant-wide hold blocks too; released, the erasure goes through.
    r = await client.post(
        f"/api/v1/compliance/legal-holds/{hold}/release", headers=tenant.admin.headers
    )
    assert r.status_code == 200 and r.json()["releasedAt"]
    r = await client.post(
        "/api/v1/compliance/legal-holds",
        headers=tenant.admin.headers,
        json={"reason": "Audit of the whole tenant"},
    )
    wide = r.json()["id"]
    r = await _erase(client, tenant, person.id, person.email)
    assert r.status_code == 409 and r.json()["legalHolds"] == [wide]
    await client.post(
        f"/api/v1/compliance/legal-holds/{wide}/release", headers=tenant.admin.headers
    )
    r = await _erase(client, tenant, person.id, person.email)
    assert r.status_code == 200, r.text


async def test_erasure_refuses_a_wrong_confirmation_oneself_and_other_tenants(
    services, client, tenant, other_tenant
):
    person = await tenant.member("team_member")
    r = await _erase(client, tenant, person.id, "someone@else.example")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "confirmEmail"
    r = await _erase(client, tenant, tenant.admin.id, tenant.admin.email)
    assert r.status_code == 409
    r = await client.post(
        f"/api/v1/users/{person.id}/erase",
        headers=other_tenant.admin.headers,
        json={"confirmEmail": person.email},
    )
    assert r.status_code == 404
    manager = await tenant.member("project_manager")
    r = await client.post(
        f"/api/v1/users/{person.id}/erase",
        headers=manager.headers,
        json={"confirmEmail": person.email},
    )
    assert r.status_code == 403
    r = await client.get("/api/v1/auth/me", headers=person.headers)
    assert r.status_code == 200


async def test_an_erasure_request_is_completed_by_the_erasure(services, client, tenant):
    person = await tenant.member("team_member")
    r = await client.post(
        "/api/v1/compliance/requests",
        headers=tenant.admin.headers,
        json={"requestType": "erasure", "subjectUserId": person.id},
    )
    assert r.status_code == 201, r.text
    request = r.json()
    r = await _erase(client, tenant, person.id, person.email, requestId=request["id"])
    assert r.status_code == 200, r.text
    r = await client.get(
        f"/api/v1/compliance/requests/{request['id']}", headers=tenant.admin.headers
    )
    done = r.json()
    assert done["status"] == "completed" and done["handledBy"] == tenant.admin.id
    assert done["completedAt"] and not done["overdue"]


async def test_erasure_removes_the_scim_record_and_scim_answers_404(services, client, tenant):
    from kanvaro.identity.scim.models import ScimGroupMember, ScimUser
    from tests.identity.scim.conftest import GROUP_SCHEMA, ScimClient, new_token, user_body

    scim = ScimClient(client, *await new_token(tenant), tenant)
    body = user_body(externalId="okta-00u1canary", displayName="Barbara Canary Jensen")
    email = body["userName"]
    r = await scim.post("/Users", body)
    assert r.status_code == 201, r.text
    person = r.json()["id"]
    r = await scim.post(
        "/Groups",
        {"schemas": [GROUP_SCHEMA], "displayName": "Canary team", "members": [{"value": person}]},
    )
    assert r.status_code == 201, r.text

    r = await _erase(client, tenant, person, email)
    assert r.status_code == 200, r.text
    tombstone = r.json()["tombstone"]
    assert r.json()["scimProvisioned"] is True

    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as db:
        row = await db.get(ScimUser, uuid.UUID(person), populate_existing=True)
        stored = repr({c.key: getattr(row, c.key) for c in ScimUser.__table__.columns})
        members = (
            await db.execute(
                select(ScimGroupMember).where(ScimGroupMember.user_id == uuid.UUID(person))
            )
        ).all()
    for personal in (email.lower(), email.split("@")[0], "okta-00u1canary", "Canary", "Jensen"):
        assert personal.lower() not in stored.lower(), stored
    assert row.user_name == row.user_name_key == tombstone and row.deleted_at is not None
    assert row.external_id is None and row.display_name is None and members == []

    # RFC 7644 §3.6: a deleted resource is not found, and no filter finds it either.
    r = await scim.get(f"/Users/{person}")
    assert r.status_code == 404, r.text
    for attribute, value in (("userName", email), ("externalId", "okta-00u1canary")):
        r = await scim.get("/Users", filter=f'{attribute} eq "{value}"')
        assert r.status_code == 200 and r.json()["totalResults"] == 0, r.text
    r = await scim.get("/Users", count=1000)
    assert person not in {u["id"] for u in r.json()["Resources"]}
    # The IdP provisioning the same person again gets a new account, not the tombstone.
    r = await scim.post("/Users", user_body(email, externalId="okta-00u1canary"))
    assert r.status_code == 201, r.text
    assert r.json()["id"] != person

    # Someone SCIM never provisioned is gone from SCIM as well.
    local = await tenant.member("team_member")
    assert (await scim.get(f"/Users/{local.id}")).status_code == 200
    r = await _erase(client, tenant, local.id, local.email)
    assert r.status_code == 200 and r.json()["scimProvisioned"] is False
    assert (await scim.get(f"/Users/{local.id}")).status_code == 404
