"""``/api/v1/tenant/settings``: tenant policies (the password policy for now).

Stored in ``Tenant.settings["passwordPolicy"]``; every change is audited with its before and
after values. Reading needs only a signed-in member (the sign-up and password pages show the
rules); changing needs ``settings:update``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from kanvaro.audit import service as audit
from kanvaro.deps import Ctx, authenticated, require
from kanvaro.errors import Unprocessable
from kanvaro.security.passwords import PasswordPolicy
from kanvaro.security.permissions import Permission as P
from kanvaro.tenancy.models import Tenant
from kanvaro.tenancy.schemas import PasswordPolicyIn, PasswordPolicyOut
from kanvaro.tenancy.service import password_policy

router = APIRouter(prefix="/api/v1/tenant/settings", tags=["tenant settings"])


async def _tenant(ctx: Ctx, *, lock: bool = False) -> Tenant:
    # populate_existing: the dependency loaded this row before the lock was taken; reuse its
    # stale copy and two concurrent changes would overwrite each other.
    tenant = await ctx.db.get(Tenant, ctx.tenant_id, with_for_update=lock, populate_existing=True)
    assert tenant is not None  # the principal's tenant exists, or authentication failed
    return tenant


@router.get("/password-policy", response_model=PasswordPolicyOut, response_model_by_alias=True)
async def get_password_policy(ctx: Annotated[Ctx, authenticated()]) -> PasswordPolicyOut:
    return PasswordPolicyOut.of(password_policy(await _tenant(ctx)))


@router.patch("/password-policy", response_model=PasswordPolicyOut, response_model_by_alias=True)
async def patch_password_policy(
    body: PasswordPolicyIn, ctx: Annotated[Ctx, require(P.SETTINGS_UPDATE)]
) -> PasswordPolicyOut:
    tenant = await _tenant(ctx, lock=True)
    before = password_policy(tenant).to_json()
    merged = {**before, **body.model_dump(by_alias=True, exclude_unset=True)}
    try:
        policy = PasswordPolicy.from_settings(merged)
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
    return PasswordPolicyOut.of(policy)
