"""``/t/{slug}/admin/scim``: the organization's SCIM tokens (``user:manage``, as
``/api/v1/admin/scim/tokens``): the list, a new token, rotating and revoking one; and the
SCIM group -> role mapping (``PUT /api/v1/admin/scim/role-mappings``): one row per mapping,
in order (the first that names one of a person's groups gives his role), a row left empty
drops out, a few empty rows add new ones.

A new or rotated token is shown once, on the answer to the form that made it (a page that is
never stored, and never in an address); afterwards only its hint is shown — the server keeps
nothing but its hash.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy import select

from kanvaro.deps import Ctx, require
from kanvaro.errors import ProblemError
from kanvaro.identity.scim import admin_routes, roles, tokens
from kanvaro.identity.scim.schemas import RoleMappings, ScimTokenCreate
from kanvaro.security.permissions import Permission as P
from kanvaro.tenancy.models import Role
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

NOTICES.update(
    {
        "scim-revoked": "Token revoked: it stops working at once.",
        "scim-mappings-saved": "Role mapping saved; SCIM-managed people have their new roles.",
    }
)
EMPTY_ROWS = 3  # blank rows under the mapping, for new ones


async def _page(
    request: Request,
    ctx: Ctx,
    slug: str,
    *,
    problem: Problem | None = None,
    issued: dict[str, Any] | None = None,
    rows: list[dict[str, str]] | None = None,
) -> Response:
    tenant = await page_tenant(ctx, slug)
    if rows is None:
        rows = (await admin_routes.get_role_mappings(ctx))["mappings"]
    return page(
        request,
        "admin/scim.html",
        ctx,
        status=problem.status if problem else (201 if issued else 200),
        tenant=tenant,
        tokens=await admin_routes.list_tokens(ctx),
        issued=issued,
        problem=problem,
        mappings=[*rows, *({"group": "", "role": ""} for _ in range(EMPTY_ROWS))],
        roles=list((await ctx.db.execute(select(Role.name).order_by(Role.name))).scalars()),
        default_role=roles.DEFAULT_ROLE,
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


def _mapping_rows(form: Any) -> list[dict[str, str]]:
    """The form's rows in order (``group`` and ``role`` side by side); an empty row drops."""
    groups = [str(v).strip() for v in form.getlist("group")]
    names = [str(v).strip() for v in form.getlist("role")]
    names += [""] * (len(groups) - len(names))
    return [{"group": g, "role": r} for g, r in zip(groups, names, strict=False) if g or r]


@router.post("/t/{slug}/admin/scim/role-mappings")
async def save_role_mappings(slug: Slug, ctx: Admin, request: Request) -> Response:
    await page_tenant(ctx, slug)
    rows = _mapping_rows(await request.form())
    try:
        body = parse(RoleMappings, {"mappings": rows})
        await attempt(ctx, roles.replace_mappings(ctx, [(m.group, m.role) for m in body.mappings]))
    except ProblemError as exc:
        return await _page(request, ctx, slug, problem=problem_of(exc, "mappings"), rows=rows)
    return redirect(slug, "/admin/scim", "scim-mappings-saved")
