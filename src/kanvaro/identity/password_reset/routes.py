"""``/api/v1/auth/password-reset``: ask for a reset link; set a new password with it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.deps import audit_context, public_db, services_of
from kanvaro.identity.password_reset import service
from kanvaro.identity.password_reset.schemas import (
    PasswordResetConfirmIn,
    PasswordResetIn,
    ResetAcceptedOut,
)

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
PublicDb = Annotated[AsyncSession, public_db()]


@router.post("/password-reset", status_code=202, response_model=ResetAcceptedOut)
async def request_reset(body: PasswordResetIn, request: Request, db: PublicDb) -> ResetAcceptedOut:
    """Mail a reset link to the account's address. The answer is the same for every address,
    known or not, and so is its timing."""
    await service.request_reset(
        services_of(request), email=body.email, tenant=body.tenant, context=audit_context(request)
    )
    return ResetAcceptedOut(
        detail="If this address has an account, a message with a reset link is on its way."
    )


@router.post("/password-reset/confirm", status_code=204)
async def confirm_reset(body: PasswordResetConfirmIn, request: Request, db: PublicDb) -> Response:
    """Set a new password with a reset link's token: the token is spent and every session of
    the account ends."""
    await service.confirm_reset(
        services_of(request),
        db,
        token=body.token,
        new_password=body.new_password,
        context=audit_context(request),
    )
    return Response(status_code=204)
