"""Seed 004's session and device endpoints under ``/api/v1/users/{userId}``.

Everyone reaches his own; ``user:manage`` reaches every user of the tenant (``own_or``); who
may act on whose is decided in ``service.subject``.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response

from kanvaro.deps import Ctx, own_or
from kanvaro.identity.sessions import service
from kanvaro.identity.sessions.schemas import (
    DEVICE_ID_PATTERN,
    DeviceOut,
    DeviceTrustIn,
    SessionOut,
)
from kanvaro.schemas import Page
from kanvaro.security.permissions import Permission as P

router = APIRouter(prefix="/api/v1/users", tags=["sessions"])
Owner = Annotated[Ctx, own_or(P.USER_MANAGE)]
DeviceId = Annotated[
    str,
    Path(
        pattern=DEVICE_ID_PATTERN,
        description="The device's id as the device list shows it (64 hex digits).",
    ),
]
Limit = Annotated[int, Query(ge=1, le=200)]


@router.get("/{user_id}/sessions", response_model=Page[SessionOut], response_model_by_alias=True)
async def list_sessions(
    user_id: uuid.UUID,
    ctx: Owner,
    include: Annotated[
        Literal["ended"] | None,
        Query(description="`ended`: ended sessions too (the history), not only open ones."),
    ] = None,
    cursor: str | None = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    return await service.list_sessions(
        ctx, user_id, include_ended=include == "ended", cursor=cursor, limit=limit
    )


@router.delete("/{user_id}/sessions/{session_id}", status_code=204)
async def revoke_session(user_id: uuid.UUID, session_id: uuid.UUID, ctx: Owner) -> Response:
    await service.revoke_session(ctx, user_id, session_id)
    return Response(status_code=204)


@router.delete("/{user_id}/sessions", status_code=204)
async def revoke_all_sessions(user_id: uuid.UUID, ctx: Owner) -> Response:
    """Log out everywhere: the caller's own session too, when these are his."""
    await service.revoke_all_sessions(ctx, user_id)
    return Response(status_code=204)


@router.get("/{user_id}/devices", response_model=Page[DeviceOut], response_model_by_alias=True)
async def list_devices(
    user_id: uuid.UUID, ctx: Owner, cursor: str | None = None, limit: Limit = 50
) -> dict[str, Any]:
    return await service.list_devices(ctx, user_id, cursor=cursor, limit=limit)


@router.post(
    "/{user_id}/devices/{device_id}/trust",
    response_model=DeviceOut,
    response_model_by_alias=True,
)
async def trust_device(
    user_id: uuid.UUID, device_id: DeviceId, ctx: Owner, body: DeviceTrustIn | None = None
) -> DeviceOut:
    name = body.device_name if body is not None else None
    return await service.trust_device(ctx, user_id, device_id, name=name)


@router.delete("/{user_id}/devices/{device_id}", status_code=204)
async def remove_device(user_id: uuid.UUID, device_id: DeviceId, ctx: Owner) -> Response:
    """Forget the device (and its trust) and end every session signed in from it."""
    await service.remove_device(ctx, user_id, device_id)
    return Response(status_code=204)
