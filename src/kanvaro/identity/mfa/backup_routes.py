"""``POST /api/v1/users/{userId}/mfa/regenerate-backup-codes`` (seed 004): a new set of backup
codes for one's own account, shown once; the old set stops working."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter

from kanvaro.deps import Ctx, own_or
from kanvaro.identity.mfa import backup_codes
from kanvaro.schemas import OutModel
from kanvaro.security.permissions import Permission as P

router = APIRouter(prefix="/api/v1/users", tags=["mfa"])
# One's own only (anyone else's is 404 in the action); own_or keeps the route in the matrix.
Owner = Annotated[Ctx, own_or(P.USER_MANAGE)]


class BackupCodesOut(OutModel):
    backup_codes: list[str]


@router.post(
    "/{user_id}/mfa/regenerate-backup-codes",
    response_model=BackupCodesOut,
    response_model_by_alias=True,
)
async def regenerate_backup_codes(user_id: uuid.UUID, ctx: Owner) -> dict[str, list[str]]:
    """A new set of backup codes (the policy's count, 10 by default), shown this once; every
    code of the old set stops working. Needs a recent sign-in (`POST /api/v1/auth/reauth`)
    and a second factor the codes stand in for. Another user's: 404. (Like every API answer,
    `Cache-Control: no-store`.)"""
    return {"backupCodes": await backup_codes.regenerate(ctx, user_id)}
