"""``/api/v1/users/{userId}/ssn``: the person's own SSN, or anyone's with ``user:manage`` and a
recent sign-in (identity/ssn.py)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Response
from pydantic import Field

from kanvaro.deps import Ctx, own_or
from kanvaro.identity import ssn as service
from kanvaro.schemas import ApiModel, OutModel
from kanvaro.security.permissions import Permission as P

router = APIRouter(prefix="/api/v1/users", tags=["users"])
Owner = Annotated[Ctx, own_or(P.USER_MANAGE)]


class SsnIn(ApiModel):
    # Digits, spaces and dashes of a national identifier (US SSN "123-45-6789" and others).
    ssn: str | None = Field(min_length=4, max_length=32, pattern=r"^[0-9A-Za-z][0-9A-Za-z -]*$")


class SsnOut(OutModel):
    ssn: str | None


@router.get("/{user_id}/ssn", response_model=SsnOut, response_model_by_alias=True)
async def get_ssn(user_id: uuid.UUID, response: Response, ctx: Owner) -> SsnOut:
    response.headers["Cache-Control"] = "no-store"
    return SsnOut(ssn=await service.read_ssn(ctx, user_id))


@router.put("/{user_id}/ssn", status_code=204)
async def put_ssn(user_id: uuid.UUID, body: SsnIn, ctx: Owner) -> Response:
    await service.set_ssn(ctx, user_id, body.ssn)
    return Response(status_code=204)
