"""``/api/v1/admin/scim``: the tenant admin's side of SCIM — tokens (create shows the token
once, list, rotate, revoke) and the group-to-role mapping. ``user:manage`` at the route; the
actions also require that the caller could assign the ``admin`` role (``tokens.py``)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Response

from kanvaro.deps import Ctx, require
from kanvaro.identity.scim import roles, tokens
from kanvaro.identity.scim.models import ScimToken
from kanvaro.identity.scim.schemas import (
    RoleMappings,
    RoleMappingsOut,
    ScimTokenCreate,
    ScimTokenIssued,
    ScimTokenOut,
)
from kanvaro.security.permissions import Permission as P

router = APIRouter(prefix="/api/v1/admin/scim", tags=["scim"])
Admin = Annotated[Ctx, require(P.USER_MANAGE)]


def _out(row: ScimToken) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "hint": row.hint,
        "created_at": row.created_at,
        "rotated_at": row.rotated_at,
        "last_used_at": row.last_used_at,
        "revoked_at": row.revoked_at,
        "is_active": row.revoked_at is None,
    }


@router.post(
    "/tokens", status_code=201, response_model=ScimTokenIssued, response_model_by_alias=True
)
async def create_token(body: ScimTokenCreate, ctx: Admin) -> dict[str, Any]:
    """A new SCIM token; the answer's ``token`` is shown this once (only its hash is kept)."""
    row, token = await tokens.create_token(ctx, body.name)
    return {**_out(row), "token": token}


@router.get("/tokens", response_model=list[ScimTokenOut], response_model_by_alias=True)
async def list_tokens(ctx: Admin) -> list[dict[str, Any]]:
    return [_out(row) for row in await tokens.list_tokens(ctx)]


@router.post(
    "/tokens/{token_id}/rotate", response_model=ScimTokenIssued, response_model_by_alias=True
)
async def rotate_token(token_id: uuid.UUID, ctx: Admin) -> dict[str, Any]:
    """A new secret for the token; the old one stops working at once."""
    row, token = await tokens.rotate_token(ctx, token_id)
    return {**_out(row), "token": token}


@router.delete("/tokens/{token_id}", status_code=204)
async def revoke_token(token_id: uuid.UUID, ctx: Admin) -> Response:
    await tokens.revoke_token(ctx, token_id)
    return Response(status_code=204)


@router.get("/role-mappings", response_model=RoleMappingsOut, response_model_by_alias=True)
async def get_role_mappings(ctx: Admin) -> dict[str, Any]:
    current = await roles.mappings(ctx)
    return {
        "mappings": [{"group": m.group_name, "role": name} for m, name in current],
        "default_role": roles.DEFAULT_ROLE,
    }


@router.put("/role-mappings", response_model=RoleMappingsOut, response_model_by_alias=True)
async def put_role_mappings(body: RoleMappings, ctx: Admin) -> dict[str, Any]:
    """Replace the mapping (first match wins) and give SCIM-managed people their new role."""
    after = await roles.replace_mappings(ctx, [(m.group, m.role) for m in body.mappings])
    return {
        "mappings": [{"group": g, "role": r} for g, r in after],
        "default_role": roles.DEFAULT_ROLE,
    }
