"""``/api/v1/tenant/settings``: tenant policies (password, session, MFA).

Stored in ``Tenant.settings["passwordPolicy"]``; every change is audited with its before and
after values. Reading needs only a signed-in member (the sign-up and password pages show the
rules); changing needs ``settings:update``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from kanvaro.deps import Ctx, authenticated, require
from kanvaro.security.permissions import Permission as P
from kanvaro.tenancy import policies
from kanvaro.tenancy.schemas import (
    MfaPolicyIn,
    MfaPolicyOut,
    PasswordPolicyIn,
    PasswordPolicyOut,
    SessionPolicyIn,
    SessionPolicyOut,
)

router = APIRouter(prefix="/api/v1/tenant/settings", tags=["tenant settings"])


@router.get("/password-policy", response_model=PasswordPolicyOut, response_model_by_alias=True)
async def get_password_policy(ctx: Annotated[Ctx, authenticated()]) -> PasswordPolicyOut:
    return PasswordPolicyOut.of(await policies.current_password_policy(ctx))


@router.patch("/password-policy", response_model=PasswordPolicyOut, response_model_by_alias=True)
async def patch_password_policy(
    body: PasswordPolicyIn, ctx: Annotated[Ctx, require(P.SETTINGS_UPDATE)]
) -> PasswordPolicyOut:
    changes = body.model_dump(by_alias=True, exclude_unset=True)
    return PasswordPolicyOut.of(await policies.change_password_policy(ctx, changes))


@router.get("/session-policy", response_model=SessionPolicyOut, response_model_by_alias=True)
async def get_session_policy(ctx: Annotated[Ctx, authenticated()]) -> dict[str, object]:
    """The session policy in force: timeouts, rotation, single device, step-up, risk."""
    return (await policies.current_session_policy(ctx)).to_json()


@router.patch("/session-policy", response_model=SessionPolicyOut, response_model_by_alias=True)
async def patch_session_policy(
    body: SessionPolicyIn, ctx: Annotated[Ctx, require(P.SETTINGS_UPDATE)]
) -> dict[str, object]:
    changes = body.model_dump(by_alias=True, exclude_unset=True)
    return (await policies.change_session_policy(ctx, changes)).to_json()


@router.get("/mfa-policy", response_model=MfaPolicyOut, response_model_by_alias=True)
async def get_mfa_policy(ctx: Annotated[Ctx, authenticated()]) -> dict[str, object]:
    """The MFA policy in force: who must use MFA, the methods allowed, the enrollment grace."""
    return (await policies.current_mfa_policy(ctx)).to_json()


@router.patch("/mfa-policy", response_model=MfaPolicyOut, response_model_by_alias=True)
async def patch_mfa_policy(
    body: MfaPolicyIn, ctx: Annotated[Ctx, require(P.SETTINGS_UPDATE)]
) -> dict[str, object]:
    """Change the MFA policy; it applies from each user's next sign-in."""
    changes = body.model_dump(by_alias=True, exclude_unset=True)
    return (await policies.change_mfa_policy(ctx, changes)).to_json()
