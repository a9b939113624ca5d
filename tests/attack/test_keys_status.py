"""Issue 7 point 6: ``GET /api/v1/admin/keys/status`` shows a tenant admin his tenant only.

Before the fix a tenant admin saw the running rotation's instance-wide row counts (every
tenant's encrypted values); and a tenant role granted ``system:admin`` would have been enough
for the instance view. Instance figures are the super admin's.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from kanvaro.crypto.models import EncryptionKey
from kanvaro.crypto.rotation import reencrypt, start_rotation
from tests.audit.conftest import super_admin  # noqa: F401 - the instance's super admin
from tests.crypto.conftest import add_user

FIGURES = {"totalRows", "doneRows", "reencryptedRows", "unreadableRows", "percent"}


async def test_a_tenant_admin_sees_only_his_tenants_figures(
    services,
    client,
    tenant,
    other_tenant,
    super_admin,  # noqa: F811
):
    await add_user(services, tenant.id, "+14155550101")
    for n in range(3):
        await add_user(services, other_tenant.id, f"+1415555020{n}")
    async with services.db.session(all_tenants=True) as session:
        await start_rotation(session)
        own = (
            await session.execute(
                select(func.count()).where(EncryptionKey.tenant_id == uuid.UUID(tenant.id))
            )
        ).scalar_one()
    try:
        r = await client.get("/api/v1/admin/keys/status", headers=tenant.admin.headers)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["scope"] == "tenant"
        assert not FIGURES & set(body["rotation"]), body["rotation"]
        assert sum(k["count"] for k in body["keys"]) == own

        r = await client.get("/api/v1/admin/keys/status", headers=super_admin.headers)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["scope"] == "instance" and set(body["rotation"]) >= FIGURES
    finally:
        await reencrypt(services.db, services.keyring)
