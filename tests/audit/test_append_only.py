"""The audit table is append-only: UPDATE and DELETE raise (triggers), on SQLite and
PostgreSQL; on PostgreSQL the application can also run as a role without those grants."""

from __future__ import annotations

import secrets
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from kanvaro.audit import service as audit
from kanvaro.audit.keys import TrustedKeys
from kanvaro.audit.verify import verify_chain
from kanvaro.db import Database
from tests.conftest import PG_ADMIN_URL


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_logs SET action = 'x:y:z' WHERE chain_id = :chain",
        "DELETE FROM audit_logs WHERE chain_id = :chain",
        "UPDATE audit_checkpoints SET tree_size = 1 WHERE chain_id = :chain",
    ],
)
async def test_update_and_delete_raise(throwaway, statement):
    tenant_id = await throwaway.chain(2)
    with pytest.raises(DBAPIError, match="append-only"):
        async with throwaway.db.session(tenant_id=tenant_id) as session:
            if "checkpoints" in statement:  # make sure there is a row to refuse
                await session.execute(
                    text(
                        "INSERT INTO audit_checkpoints (id, chain_id, tenant_id, tree_size, "
                        "root_hash, key_id, signed_note, created_at) VALUES (:id, :chain, "
                        ":tid, 2, :root, 'abcd1234', 'note', CURRENT_TIMESTAMP)"
                    ),
                    {
                        "id": _uuid(throwaway),
                        "chain": str(tenant_id),
                        "tid": _uuid(throwaway, tenant_id),
                        "root": "0" * 64,
                    },
                )
            await session.execute(text(statement), {"chain": str(tenant_id)})
    async with throwaway.db.session(tenant_id=tenant_id) as session:
        assert (await verify_chain(session, str(tenant_id), TrustedKeys([]))).entries == 2


def _uuid(throwaway, value=None):
    value = value or uuid.uuid4()
    return str(value) if throwaway.dialect == "postgresql" else value.hex


async def test_truncate_raises_on_postgresql(throwaway):
    if throwaway.dialect != "postgresql":
        pytest.skip("SQLite has no TRUNCATE")
    await throwaway.chain(1)
    with pytest.raises(DBAPIError, match="append-only"):
        async with throwaway.db.session(all_tenants=True) as session:
            await session.execute(text("TRUNCATE audit_logs"))


async def test_an_application_role_without_update_or_delete_grants(throwaway):
    """Documented in docs/security-model.md: GRANT SELECT, INSERT only on the audit tables."""
    if throwaway.dialect != "postgresql":
        pytest.skip("PostgreSQL roles and grants")
    owner = make_url(throwaway.url)
    role, password = f"kv_audit_{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    admin = create_async_engine(make_url(PG_ADMIN_URL), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.exec_driver_sql(
            f"CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD '{password}'"
        )
    await admin.dispose()
    owner_engine = create_async_engine(owner, isolation_level="AUTOCOMMIT")
    async with owner_engine.connect() as conn:
        for statement in (
            f"GRANT CONNECT ON DATABASE {owner.database} TO {role}",
            f"GRANT USAGE ON SCHEMA public TO {role}",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
            f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}",  # audit_pending order
            "REVOKE UPDATE, DELETE, TRUNCATE ON audit_logs, audit_checkpoints, "
            f"audit_checkpoint_cosignatures, audit_merkle_nodes FROM {role}",
        ):
            await conn.exec_driver_sql(statement)
    await owner_engine.dispose()
    app_db = Database(owner.set(username=role, password=password).render_as_string(False))
    try:
        tenant_id = uuid.uuid4()
        for _ in range(2):  # the application still appends (and advances the chain head)
            async with app_db.session(tenant_id=tenant_id) as session:
                await audit.record(
                    session, action="test:role:check", category="system", tenant_id=tenant_id
                )
        async with app_db.session(tenant_id=tenant_id) as session:
            report = await verify_chain(session, str(tenant_id), TrustedKeys([]))
        assert report.ok and report.entries == 2
        for statement in (
            "UPDATE audit_logs SET action = 'x:y:z' WHERE chain_id = :chain",
            "DELETE FROM audit_logs WHERE chain_id = :chain",
        ):
            with pytest.raises(DBAPIError, match="permission denied"):
                async with app_db.session(tenant_id=tenant_id) as session:
                    await session.execute(text(statement), {"chain": str(tenant_id)})
    finally:
        await app_db.dispose()  # the role goes with the cluster, like the suite's own roles
