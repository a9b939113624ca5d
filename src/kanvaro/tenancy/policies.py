"""Tenant policies as actions (the password policy for now): read, and change with an audit
entry holding before and after. Stored in ``Tenant.settings["passwordPolicy"]``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kanvaro.acting import Acting
from kanvaro.audit import service as audit
from kanvaro.errors import Unprocessable
from kanvaro.security.passwords import PasswordPolicy
from kanvaro.tenancy.models import Tenant
from kanvaro.tenancy.service import password_policy


async def _tenant(ctx: Acting, *, lock: bool = False) -> Tenant:
    # populate_existing: the dependency loaded this row before the lock was taken; reuse its
    # stale copy and two concurrent changes would overwrite each other.
    tenant = await ctx.db.get(Tenant, ctx.tenant_id, with_for_update=lock, populate_existing=True)
    assert tenant is not None  # the principal's tenant exists, or authentication failed
    return tenant


async def current_password_policy(ctx: Acting) -> PasswordPolicy:
    return password_policy(await _tenant(ctx))


async def change_password_policy(ctx: Acting, changes: Mapping[str, Any]) -> PasswordPolicy:
    """Merge ``changes`` (camelCase policy fields) into the tenant's policy."""
    tenant = await _tenant(ctx, lock=True)
    before = password_policy(tenant).to_json()
    try:
        policy = PasswordPolicy.from_settings({**before, **changes})
    except ValueError as exc:
        raise Unprocessable(
            str(exc).capitalize() + ".",
            errors=[{"field": "minLength", "in": "body", "message": str(exc)}],
        ) from None
    # A new dict, so the JSON column sees the change.
    tenant.settings = {**(tenant.settings or {}), "passwordPolicy": policy.to_json()}
    await ctx.db.flush()
    await ctx.record(
        "api:password_policy:update",
        category="system",
        resource_type="tenant",
        resource_id=ctx.tenant_id,
        changes=audit.diff(before, policy.to_json()),
    )
    return policy
