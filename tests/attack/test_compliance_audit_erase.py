"""The audit log's one erase path (migration 0014) cannot be bent into tampering: an UPDATE
that touches a header column, keeps a salt, leaves content, or clears a legacy entry (hashed
over its content) is refused by the database, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from kanvaro.audit import service as audit
from kanvaro.audit.keys import load_trusted
from kanvaro.audit.verify import verify_chain
from kanvaro.compliance import audit_content

REFUSED = [
    "UPDATE audit_logs SET action = 'x:y:z', changes = 'null', ip_address = NULL, "
    "user_agent = NULL, content_salt = NULL WHERE chain_id = :chain",
    "UPDATE audit_logs SET changes = 'null', ip_address = NULL, user_agent = NULL "
    "WHERE chain_id = :chain",  # the salt stays: a guess could be tested
    "UPDATE audit_logs SET content_salt = NULL WHERE chain_id = :chain",  # content stays
    "UPDATE audit_logs SET changes = '{\"forged\": true}', content_salt = NULL, "
    "ip_address = NULL, user_agent = NULL WHERE chain_id = :chain",
    "UPDATE audit_logs SET content_digest = NULL WHERE chain_id = :chain",
]


async def _chain(services, entries: int = 2) -> uuid.UUID:
    tenant_id = uuid.uuid4()
    for i in range(entries):
        async with services.db.session(tenant_id=tenant_id) as session:
            await audit.record(
                session, action="test:erase:check", category="system", tenant_id=tenant_id,
                changes={"n": i, "email": "someone@example.com"},
            )  # fmt: skip
    await services.audit.drain()
    return tenant_id


@pytest.mark.parametrize("statement", REFUSED)
async def test_every_other_update_is_refused(services, statement):
    tenant_id = await _chain(services, 1)
    with pytest.raises(DBAPIError, match="append-only"):
        async with services.db.session(tenant_id=tenant_id) as session:
            await session.execute(text(statement), {"chain": str(tenant_id)})


async def test_the_erase_path_keeps_the_chain_verifiable(services):
    tenant_id = await _chain(services, 3)
    async with services.db.session(tenant_id=tenant_id) as session:
        ids = list(
            (
                await session.execute(
                    text("SELECT id FROM audit_logs WHERE chain_id = :c ORDER BY sequence_number"),
                    {"c": str(tenant_id)},
                )
            ).scalars()
        )
        ids = [uuid.UUID(str(i)) for i in ids]
        assert await audit_content.erase(session, ids[:2]) == 2
        assert await audit_content.erase(session, ids[:2]) == 0  # once only
    async with services.db.session(tenant_id=tenant_id) as session:
        report = await verify_chain(
            session, str(tenant_id), await load_trusted(session, services.master_key)
        )
    assert report.ok and report.erased == 2 and report.entries == 3


async def test_deleting_an_entry_is_still_refused(services):
    tenant_id = await _chain(services, 1)
    with pytest.raises(DBAPIError, match="append-only"):
        async with services.db.session(tenant_id=tenant_id) as session:
            await session.execute(
                text("DELETE FROM audit_logs WHERE chain_id = :c"), {"c": str(tenant_id)}
            )
