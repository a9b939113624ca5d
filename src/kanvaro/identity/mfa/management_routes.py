"""Seed 004's MFA management under ``/api/v1/users/{userId}/mfa``: list one's methods, remove
one, and the administrator's reset. Who may reach whose is decided in ``management``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Response

from kanvaro.deps import Ctx, own_or, require
from kanvaro.identity.mfa import management
from kanvaro.schemas import OutModel
from kanvaro.security.permissions import Permission as P

router = APIRouter(prefix="/api/v1/users", tags=["mfa"])
# An enrollment-only session reaches its own methods (the action refuses anyone else's).
Owner = Annotated[Ctx, own_or(P.USER_MANAGE, enrollment=True)]


class MfaMethodOut(OutModel):
    id: uuid.UUID
    method: str
    name: str | None
    created_at: datetime
    last_used_at: datetime | None
    verified: bool


class MfaOverviewOut(OutModel):
    methods: list[MfaMethodOut]
    backup_codes_remaining: int
    mfa_enabled: bool
    required: bool  # the tenant's MFA policy requires a second factor of this user


class MfaResetOut(OutModel):
    user_id: uuid.UUID
    methods_removed: list[str]
    backup_codes_removed: int
    sessions_ended: int
    devices_untrusted: int


@router.get("/{user_id}/mfa", response_model=MfaOverviewOut, response_model_by_alias=True)
async def get_mfa(user_id: uuid.UUID, ctx: Owner) -> dict[str, Any]:
    """The user's second factors (never a secret) and how many backup codes are left."""
    return await management.overview(ctx, user_id)


# ``:uuid``: so that ``.../mfa/reset`` and ``.../mfa/regenerate-backup-codes`` never match
# this route (an OPTIONS or a wrong method there would otherwise answer this route's Allow).
@router.delete("/{user_id}/mfa/{method_id:uuid}", status_code=204)
async def remove_method(user_id: uuid.UUID, method_id: uuid.UUID, ctx: Owner) -> Response:
    """Remove a method (needs a recent sign-in). The last one the policy accepts while it
    requires MFA: 409."""
    await management.remove_method(ctx, user_id, method_id)
    return Response(status_code=204)


@router.post("/{user_id}/mfa/reset", response_model=MfaResetOut, response_model_by_alias=True)
async def reset_mfa(
    user_id: uuid.UUID, ctx: Annotated[Ctx, require(P.USER_MANAGE)]
) -> dict[str, Any]:
    """An administrator resets another user's MFA (needs a recent sign-in): every method and
    backup code goes, his sessions end, his devices lose their trust, he is mailed, and his
    next sign-in starts a new enrollment grace period."""
    return await management.reset(ctx, user_id)
