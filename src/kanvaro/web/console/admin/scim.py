"""``/t/{slug}/admin/scim``: the organization's SCIM tokens (``user:manage``, as
``/api/v1/admin/scim/tokens``): the list, a new token, rotating and revoking one.

A new or rotated token is shown once, on the answer to the form that made it (a page that is
never stored, and never in an address); afterwards only its hint is shown — the server keeps
nothing but its hash.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Request
from fastapi.responses import Response

from kanvaro.deps import Ctx, require
from kanvaro.errors import ProblemError
from kanvaro.identity.scim import admin_routes, tokens
from kanvaro.identity.scim.schemas import ScimTokenCreate
from kanvaro.security.permissions import Permission as P
from kanvaro.web.console.admin.common import (
    Problem,
    Slug,
    attempt,
    page,
    parse,
    problem_of,
    redirect,
)
from kanvaro.web.console.forms import fields
from kanvaro.web.console.routing import console_router
from kanvaro.web.console.templating import NOTICES
from kanvaro.web.console.tenant import page_tenant

router = console_router()
Admin = Annotated[Ctx, require(P.USER_MANAGE)]

NOTICES.update({"scim-revoked": "Token revoked: it stops working at once."})


async def _page(
    request: Request,
    ctx: Ctx,
    slug: str,
    *,
    problem: Problem | None = None,
    issued: dict[str, Any] | None = None,
) -> Response:
    tenant = await page_tenant(ctx, slug)
    return page(
        request,
        "admin/scim.html",
        ctx,
        status=problem.status if problem else (201 if issued else 200),
        tenant=tenant,
        tokens=await admin_routes.list_tokens(ctx),
        issued=issued,
        problem=problem,
    )


@router.get("/t/{slug}/admin/scim")
async def scim_page(slug: Slug, ctx: Admin, request: Request) -> Response:
    return await _page(request, ctx, slug)


@router.post("/t/{slug}/admin/scim/tokens")
async def create_token(slug: Slug, ctx: Admin, request: Request) -> Response:
    await page_tenant(ctx, slug)
    form = fields(await request.form(), "name")
    try:
        body = parse(ScimTokenCreate, form)
        row, token = await attempt(ctx, tokens.create_token(ctx, body.name))
    except ProblemError as exc:
        return await _page(request, ctx, slug, problem=problem_of(exc))
    return await _page(request, ctx, slug, issued={"name": row.name, "token": token})


@router.post("/t/{slug}/admin/scim/tokens/{token_id}/rotate")
async def rotate_token(slug: Slug, token_id: uuid.UUID, ctx: Admin, request: Request) -> Response:
    await page_tenant(ctx, slug)
    try:
        row, token = await attempt(ctx, tokens.rotate_token(ctx, token_id))
    except ProblemError as exc:
        return await _page(request, ctx, slug, problem=problem_of(exc))
    return await _page(request, ctx, slug, issued={"name": row.name, "token": token})


@router.post("/t/{slug}/admin/scim/tokens/{token_id}/revoke")
async def revoke_token(slug: Slug, token_id: uuid.UUID, ctx: Admin, request: Request) -> Response:
    await page_tenant(ctx, slug)
    try:
        await attempt(ctx, tokens.revoke_token(ctx, token_id))
    except ProblemError as exc:
        return await _page(request, ctx, slug, problem=problem_of(exc))
    return redirect(slug, "/admin/scim", "scim-revoked")
