"""PostgreSQL row-level security on ``encryption_keys``: a tenant's transaction sees its own
keys and the instance's, never another tenant's, and cannot write instance keys."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from kanvaro.services import Services
from tests.crypto.conftest import add_user


async def test_tenant_transaction_sees_only_its_keys(
    services: Services, tenant, other_tenant
) -> None:
    if services.db.dialect != "postgresql":
        pytest.skip("PostgreSQL only (RLS)")
    mine = await add_user(services, tenant.id, "+14155554001")
    theirs = await add_user(services, other_tenant.id, "+14155554002")
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as session:
        owners = set(
            (await session.execute(text("SELECT owner_id FROM encryption_keys"))).scalars()
        )
        assert str(mine) in owners and str(theirs) not in owners
        hit = await session.execute(
            text("UPDATE encryption_keys SET state = 'destroyed' WHERE owner_id = :o"),
            {"o": str(theirs)},
        )
        assert hit.rowcount == 0
    with pytest.raises(Exception, match="row-level security"):
        async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as session:
            await session.execute(
                text(
                    "INSERT INTO encryption_keys (id, key_identifier, algorithm, scope, owner_id,"
                    " version, state, is_active, created_at) VALUES (:id, 'local:instance',"
                    " 'AES-256-GCM', 'instance', 'instance', 999, 'active', true, now())"
                ),
                {"id": uuid.uuid4()},
            )
