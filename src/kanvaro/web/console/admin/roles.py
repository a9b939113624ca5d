"""``/t/{slug}/admin/roles``: the built-in roles (read-only) and the custom-role editor.

Reading needs ``role:read`` and changing ``role:manage``, as on ``/api/v1/roles``; the editor
runs ``role_service`` (the no-escalation rule included: nobody grants a permission he does
not hold), so a refusal reads on the page as the API words it.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Annotated, Any

from fastapi import Request
from fastapi.responses import Response

from kanvaro.deps import Ctx, require
from kanvaro.errors import ProblemError
from kanvaro.security.permissions import Permission as P
from kanvaro.tenancy import role_routes, role_service
from kanvaro.tenancy.schemas import RoleCreate, RoleUpdate
from kanvaro.web.console.admin.common import (
    Problem,
    Slug,
    attempt,
    checked,
    integer,
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

Reader = Annotated[Ctx, require(P.ROLE_READ)]
Manager = Annotated[Ctx, require(P.ROLE_MANAGE)]

NOTICES.update(
    {
        "role-created": "Role created.",
        "role-saved": "Role saved.",
        "role-deleted": "Role deleted.",
    }
)


def permission_groups() -> list[tuple[str, list[str]]]:
    """Every permission, grouped by the area it names (``task:read`` → ``task``)."""
    groups: dict[str, list[str]] = defaultdict(list)
    for p in P:
        groups[p.value.split(":", 1)[0]].append(p.value)
    return sorted((area, sorted(names)) for area, names in groups.items())


def _role_form(form: Any) -> dict[str, Any]:
    text = fields(form, "name", "description")
    return {
        "name": text["name"],
        "description": text["description"],
        "permissions": [str(v) for v in form.getlist("permissions")],
        "projectScoped": checked(form, "projectScoped"),
    }


def _editor(
    request: Request,
    ctx: Ctx,
    tenant: Any,
    *,
    role: Any = None,
    values: dict[str, Any] | None = None,
    problem: Problem | None = None,
) -> Response:
    if values is None:
        values = (
            {
                "name": role.name,
                "description": role.description,
                "permissions": role.permissions,
                "projectScoped": role.project_scoped,
            }
            if role is not None
            else {"name": "", "description": "", "permissions": [], "projectScoped": True}
        )
    return page(
        request,
        "admin/role.html",
        ctx,
        status=problem.status if problem else 200,
        tenant=tenant,
        role=role,
        values=values,
        groups=permission_groups(),
        problem=problem,
        editable=ctx.me().has(P.ROLE_MANAGE.value) and (role is None or not role.is_system),
    )


@router.get("/t/{slug}/admin/roles")
async def roles_page(slug: Slug, ctx: Reader, request: Request) -> Response:
    tenant = await page_tenant(ctx, slug)
    listed = await role_routes.list_roles(ctx, cursor=None, limit=200, system=None)
    roles = sorted(listed["items"], key=lambda r: (not r.is_system, r.name.lower()))
    return page(request, "admin/roles.html", ctx, tenant=tenant, roles=roles)


@router.get("/t/{slug}/admin/roles/new")
async def new_role_page(slug: Slug, ctx: Manager, request: Request) -> Response:
    return _editor(request, ctx, await page_tenant(ctx, slug))


@router.post("/t/{slug}/admin/roles/new")
async def create_role(slug: Slug, ctx: Manager, request: Request) -> Response:
    tenant = await page_tenant(ctx, slug)
    values = _role_form(await request.form())
    try:
        role = await attempt(ctx, role_service.create_role(ctx, parse(RoleCreate, values)))
    except ProblemError as exc:
        return _editor(request, ctx, tenant, values=values, problem=problem_of(exc))
    return redirect(slug, f"/admin/roles/{role.id}", "role-created")


@router.get("/t/{slug}/admin/roles/{role_id}")
async def role_page(slug: Slug, role_id: uuid.UUID, ctx: Reader, request: Request) -> Response:
    tenant = await page_tenant(ctx, slug)
    role = await role_routes.get_role(role_id, Response(), ctx)
    return _editor(request, ctx, tenant, role=role)


@router.post("/t/{slug}/admin/roles/{role_id}")
async def update_role(slug: Slug, role_id: uuid.UUID, ctx: Manager, request: Request) -> Response:
    tenant = await page_tenant(ctx, slug)
    row = await role_routes._role(ctx, role_id)
    form = await request.form()
    values = _role_form(form)
    body = {**values, "version": integer(str(form.get("version") or ""))}
    try:
        await attempt(ctx, role_service.update_role(ctx, row, parse(RoleUpdate, body), None))
    except ProblemError as exc:
        current = role_routes.role_out(await role_routes._role(ctx, role_id))
        return _editor(request, ctx, tenant, role=current, values=values, problem=problem_of(exc))
    return redirect(slug, f"/admin/roles/{role_id}", "role-saved")


@router.post("/t/{slug}/admin/roles/{role_id}/delete")
async def delete_role(slug: Slug, role_id: uuid.UUID, ctx: Manager, request: Request) -> Response:
    tenant = await page_tenant(ctx, slug)
    row = await role_routes._role(ctx, role_id)
    try:
        await attempt(ctx, role_service.delete_role(ctx, row))
    except ProblemError as exc:
        current = role_routes.role_out(await role_routes._role(ctx, role_id))
        return _editor(request, ctx, tenant, role=current, problem=problem_of(exc))
    return redirect(slug, "/admin/roles", "role-deleted")
