"""``/api/v1/admin/rate-limits``: rules, IP lists, violations and blocks.

A tenant admin (``settings:update``) manages his tenant's; a super admin without
``X-Tenant-ID`` the instance's (and sees the rules from configuration, read-only)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from kanvaro.deps import Ctx, require
from kanvaro.ratelimit import actions
from kanvaro.ratelimit.schemas import (
    BlockIn,
    IpEntryIn,
    IpEntryOut,
    RuleIn,
    RuleOut,
    RulePatch,
    ViolationOut,
)
from kanvaro.security.permissions import Permission as P

router = APIRouter(prefix="/api/v1/admin/rate-limits", tags=["rate limits"])
Admin = Annotated[Ctx, require(P.SETTINGS_UPDATE)]
Limit = Annotated[int, Query(ge=1, le=500)]


@router.get("/rules", response_model=list[RuleOut], response_model_by_alias=True)
async def list_rules(ctx: Admin) -> list[dict[str, Any]]:
    return await actions.list_rules(ctx)


@router.post("/rules", status_code=201, response_model=RuleOut, response_model_by_alias=True)
async def create_rule(body: RuleIn, ctx: Admin) -> dict[str, Any]:
    return await actions.create_rule(ctx, body)


@router.patch("/rules/{rule_id}", response_model=RuleOut, response_model_by_alias=True)
async def update_rule(rule_id: uuid.UUID, body: RulePatch, ctx: Admin) -> dict[str, Any]:
    return await actions.update_rule(ctx, rule_id, body)


@router.delete("/rules/{rule_id}", status_code=204)
async def delete_rule(rule_id: uuid.UUID, ctx: Admin) -> Response:
    await actions.delete_rule(ctx, rule_id)
    return Response(status_code=204)


@router.get("/ip-lists", response_model=list[IpEntryOut], response_model_by_alias=True)
async def list_ip_entries(ctx: Admin) -> list[dict[str, Any]]:
    return await actions.list_ip_entries(ctx)


@router.post("/ip-lists", status_code=201, response_model=IpEntryOut, response_model_by_alias=True)
async def add_ip_entry(body: IpEntryIn, ctx: Admin) -> dict[str, Any]:
    return await actions.add_ip_entry(ctx, body)


@router.delete("/ip-lists/{entry_id}", status_code=204)
async def remove_ip_entry(entry_id: uuid.UUID, ctx: Admin) -> Response:
    await actions.remove_ip_entry(ctx, entry_id)
    return Response(status_code=204)


@router.get("/violations", response_model=list[ViolationOut], response_model_by_alias=True)
async def list_violations(ctx: Admin, limit: Limit = 100) -> list[dict[str, Any]]:
    return await actions.list_violations(ctx, limit=limit)


@router.get("/blocks", response_model=list[ViolationOut], response_model_by_alias=True)
async def list_blocks(
    ctx: Admin,
    include: Annotated[
        str | None, Query(pattern="^(lifted|expired)$", description="`expired`: past ones too.")
    ] = None,
    limit: Limit = 100,
) -> list[dict[str, Any]]:
    return await actions.list_violations(
        ctx, blocks_only=True, active_only=include is None, limit=limit
    )


@router.post("/blocks", status_code=201, response_model=ViolationOut, response_model_by_alias=True)
async def block(body: BlockIn, ctx: Admin) -> dict[str, Any]:
    return await actions.block(ctx, body)


@router.delete("/blocks/{block_id}", response_model=ViolationOut, response_model_by_alias=True)
async def lift(block_id: uuid.UUID, ctx: Admin) -> dict[str, Any]:
    return await actions.lift(ctx, block_id)
