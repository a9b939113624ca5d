"""Every data-changing API route that succeeds appends to the tenant's audit chain.

The routes and valid request bodies come from the route walker and the matrix's registry
(tests/test_matrix.py), so a new mutating route is covered without being listed here.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select

from kanvaro.audit.models import AuditChainHead, AuditLog
from tests.test_matrix import _api_routes, _call, world  # noqa: F401 - `world` is a fixture

MUTATING = [
    info
    for info in _api_routes("require", "authenticated")
    if set(info.methods) & {"POST", "PATCH", "PUT", "DELETE"}
    and not info.path.startswith(("/api/v1/auth/", "/api/v1/audit/"))
]
# Deletions last, so that the updates find their objects.
MUTATING.sort(key=lambda info: "DELETE" in info.methods)


async def _head(services, tenant_id: str) -> int:
    await services.audit.drain()  # entries are sequenced after commit
    async with services.db.session(tenant_id=uuid.UUID(tenant_id)) as session:
        head = await session.get(AuditChainHead, tenant_id, populate_existing=True)
        return head.sequence_number if head else 0


async def test_every_successful_change_is_audited(world):  # noqa: F811
    assert len(MUTATING) >= 10
    succeeded, silent = [], []
    for info in MUTATING:
        before = await _head(world.services, world.a.id)
        r = await _call(world, info, world.a.admin.headers)
        if r.status_code >= 300:
            continue
        succeeded.append(info.label)
        after = await _head(world.services, world.a.id)
        async with world.services.db.session(tenant_id=uuid.UUID(world.a.id)) as session:
            actions = (
                (
                    await session.execute(
                        select(AuditLog.action).where(
                            AuditLog.chain_id == world.a.id, AuditLog.sequence_number > before
                        )
                    )
                )
                .scalars()
                .all()
            )
        if after <= before or not any(a.startswith("api:") for a in actions):
            silent.append(info.label)
    assert silent == [], f"changes without an audit entry: {silent}"
    # the bulk of the mutating routes really ran (not refused for a bad sample)
    assert len(succeeded) >= len(MUTATING) // 2, f"only {succeeded} succeeded"
