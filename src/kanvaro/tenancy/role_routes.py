"""``/api/v1/roles``: the tenant's built-in and custom roles (read role:read, write role:manage)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy import select

from kanvaro.deps import Ctx, require
from kanvaro.http_helpers import IfMatch, set_etag
from kanvaro.resources import get_or_404
from kanvaro.schemas import Page, QueryBool, page_of, paginate
from kanvaro.security.permissions import Permission as P
from kanvaro.tenancy import role_service
from kanvaro.tenancy.models import Role
from kanvaro.tenancy.schemas import RoleCreate, RoleOut, RoleUpdate

router = APIRouter(prefix="/api/v1/roles", tags=["roles"])


def role_out(role: Role) -> RoleOut:
    return RoleOut(
        id=role.id,
        name=role.name,
        description=role.description,
        permissions=sorted(role_service.role_permissions(role)),
        project_scoped=role.project_scoped,
        is_system=role.is_system,
        created_at=role.created_at,
        updated_at=role.updated_at,
        version=role.version,
    )


async def _role(ctx: Ctx, role_id: uuid.UUID) -> Role:
    return await get_or_404(ctx.db, select(Role).where(Role.id == role_id), "role")


@router.get("", response_model=Page[RoleOut], response_model_by_alias=True)
async def list_roles(
    ctx: Annotated[Ctx, require(P.ROLE_READ)],
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    system: Annotated[QueryBool | None, Query(alias="isSystem")] = None,
) -> dict[str, Any]:
    stmt = select(Role)
    if system is not None:
        stmt = stmt.where(Role.is_system.is_(system))
    rows = (await ctx.db.execute(paginate(stmt, Role, cursor, limit))).scalars().all()
    return page_of(list(rows), limit, role_out)


@router.post("", status_code=201, response_model=RoleOut, response_model_by_alias=True)
async def post_role(
    body: RoleCreate, response: Response, ctx: Annotated[Ctx, require(P.ROLE_MANAGE)]
) -> RoleOut:
    role = await role_service.create_role(ctx, body)
    set_etag(response, role.version)
    response.headers["Location"] = f"/api/v1/roles/{role.id}"
    return role_out(role)


@router.get("/{role_id}", response_model=RoleOut, response_model_by_alias=True)
async def get_role(
    role_id: uuid.UUID, response: Response, ctx: Annotated[Ctx, require(P.ROLE_READ)]
) -> RoleOut:
    role = await _role(ctx, role_id)
    set_etag(response, role.version)
    return role_out(role)


@router.patch("/{role_id}", response_model=RoleOut, response_model_by_alias=True)
async def patch_role(
    role_id: uuid.UUID,
    body: RoleUpdate,
    response: Response,
    ctx: Annotated[Ctx, require(P.ROLE_MANAGE)],
    if_match: IfMatch = None,
) -> RoleOut:
    role = await role_service.update_role(ctx, await _role(ctx, role_id), body, if_match)
    set_etag(response, role.version)
    return role_out(role)


@router.delete("/{role_id}", status_code=204)
async def delete_role(role_id: uuid.UUID, ctx: Annotated[Ctx, require(P.ROLE_MANAGE)]) -> Response:
    await role_service.delete_role(ctx, await _role(ctx, role_id))
    return Response(status_code=204)
