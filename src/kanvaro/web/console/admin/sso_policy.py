"""``/t/{slug}/admin/sso/policy`` and ``/t/{slug}/admin/sso/domains``: the organization's SSO
policy and the email domains it proves by DNS (``settings:update``, as ``/api/v1/sso``).

The policy page edits ``PUT /api/v1/sso/policy`` field by field: the allowed email domains
(one a line), linking existing local accounts, "SSO required" and its break-glass admins
(chosen among the people holding the admin role, and whoever the policy names already). The
verified domains are shown, never sent: they are read-only, derived from the domains page.
Every field of the form is sent, so a box left unticked means "off".

The domains page lists the claimed domains with their state and the TXT record to publish,
claims a new one, checks one now ("Verify now": the API's ``POST .../verify``, whose finding
is shown in words; a failed check keeps the domain unverified and records why, as the API
does) and gives one up.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy import and_, or_, select

from kanvaro.deps import Ctx, require
from kanvaro.errors import ProblemError
from kanvaro.identity.models import User
from kanvaro.identity.sso import domains, policy
from kanvaro.identity.sso import routes as sso_routes
from kanvaro.identity.sso.models import DOMAIN_VERIFIED
from kanvaro.identity.sso.schemas import DomainIn, SsoPolicyIn
from kanvaro.security.permissions import BuiltinRole
from kanvaro.security.permissions import Permission as P
from kanvaro.tenancy.models import Role
from kanvaro.web.console.admin.common import (
    Problem,
    Slug,
    attempt,
    checked,
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
Admin = Annotated[Ctx, require(P.SETTINGS_UPDATE)]

NOTICES.update(
    {
        "sso-policy-saved": "SSO policy saved; it applies from the next sign-in.",
        "sso-domain-added": "Domain claimed: publish its TXT record, then verify it.",
        "sso-domain-removed": "Domain given up: discovery no longer routes it here.",
    }
)


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.replace(",", "\n").splitlines() if line.strip()]


def _fields_of(problem: Problem) -> Problem:
    """A list's item errors (``breakGlassUserIds.0``) shown next to the list's own field."""
    merged: dict[str, str] = {}
    for name, message in problem.fields.items():
        merged.setdefault(name.split(".", 1)[0], message)
    problem.fields = merged
    return problem


def _policy_body(form: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "allowedDomains": _lines(str(form.get("allowedDomains") or "")),
        "linkExistingAccounts": checked(form, "linkExistingAccounts"),
        "requireSso": checked(form, "requireSso"),
        "breakGlassUserIds": [
            str(v).strip()
            for v in form.getlist("breakGlassUserIds")  # type: ignore[attr-defined]
            if str(v).strip()
        ],
    }


async def _break_glass_choices(ctx: Ctx, chosen: list[str]) -> list[dict[str, str]]:
    """Who may be named a break-glass admin on the page: the active people holding the admin
    role, and whoever the policy (or the refused form) names already."""
    ids = []
    for value in chosen:
        try:
            ids.append(uuid.UUID(value))
        except ValueError:
            continue
    admin_role = select(Role.id).where(
        Role.is_system.is_(True), Role.name == BuiltinRole.ADMIN.value
    )
    rows = await ctx.db.execute(
        select(User)
        .where(
            User.tenant_id == ctx.tenant_id,
            User.is_super_admin.is_(False),
            or_(User.id.in_(ids), and_(User.is_active.is_(True), User.role_id.in_(admin_role))),
        )
        .order_by(User.email)
    )
    return [
        {
            "id": str(user.id),
            "label": f"{user.first_name} {user.last_name} <{user.email}>".strip(),
            "active": "yes" if user.is_active else "",
        }
        for user in rows.scalars()
    ]


async def _policy_page(
    request: Request,
    ctx: Ctx,
    slug: str,
    *,
    problem: Problem | None = None,
    sent: dict[str, Any] | None = None,
) -> Response:
    tenant = await page_tenant(ctx, slug)
    current = (await policy.current(ctx)).to_json()
    shown = {**current, **(sent or {})}
    return page(
        request,
        "admin/sso_policy.html",
        ctx,
        status=problem.status if problem else 200,
        tenant=tenant,
        policy=shown,
        verified=current["verifiedDomains"],
        people=await _break_glass_choices(ctx, list(shown["breakGlassUserIds"])),
        problem=problem,
    )


@router.get("/t/{slug}/admin/sso/policy")
async def sso_policy_page(slug: Slug, ctx: Admin, request: Request) -> Response:
    return await _policy_page(request, ctx, slug)


@router.post("/t/{slug}/admin/sso/policy")
async def save_sso_policy(slug: Slug, ctx: Admin, request: Request) -> Response:
    await page_tenant(ctx, slug)
    body = _policy_body(await request.form())
    try:
        await attempt(ctx, policy.change(ctx, parse(SsoPolicyIn, body)))
    except ProblemError as exc:
        return await _policy_page(
            request, ctx, slug, problem=_fields_of(problem_of(exc, "policy")), sent=body
        )
    return redirect(slug, "/admin/sso/policy", "sso-policy-saved")


# --- the domains ---------------------------------------------------------------------------------


async def _domains_page(
    request: Request,
    ctx: Ctx,
    slug: str,
    *,
    problem: Problem | None = None,
    sent: dict[str, str] | None = None,
    checked_domain: dict[str, Any] | None = None,
) -> Response:
    tenant = await page_tenant(ctx, slug)
    listed = await sso_routes.list_domains(ctx)
    # After a claim: the record to publish, on top (the address names which domain; only one
    # of this tenant's own is ever shown).
    wanted = request.query_params.get("added") if problem is None else None
    added = next((d for d in listed if wanted and str(d["id"]) == wanted), None)
    return page(
        request,
        "admin/sso_domains.html",
        ctx,
        status=problem.status if problem else 200,
        tenant=tenant,
        domains=listed,
        added=added,
        checked_domain=checked_domain,
        verified_status=DOMAIN_VERIFIED,
        problem=problem,
        sent=sent or {},
    )


@router.get("/t/{slug}/admin/sso/domains")
async def sso_domains_page(slug: Slug, ctx: Admin, request: Request) -> Response:
    return await _domains_page(request, ctx, slug)


@router.post("/t/{slug}/admin/sso/domains")
async def add_sso_domain(slug: Slug, ctx: Admin, request: Request) -> Response:
    await page_tenant(ctx, slug)
    text = fields(await request.form(), "domain")
    try:
        row = await attempt(ctx, domains.add(ctx, parse(DomainIn, text).domain))
    except ProblemError as exc:
        return await _domains_page(request, ctx, slug, problem=problem_of(exc, "add"), sent=text)
    return redirect(slug, f"/admin/sso/domains?added={row.id}", "sso-domain-added")


@router.post("/t/{slug}/admin/sso/domains/{domain_id}/verify")
async def verify_sso_domain(
    slug: Slug, domain_id: uuid.UUID, ctx: Admin, request: Request
) -> Response:
    await page_tenant(ctx, slug)
    try:
        row = await attempt(ctx, domains.verify(ctx, domain_id))
    except ProblemError as exc:
        return await _domains_page(request, ctx, slug, problem=problem_of(exc))
    return await _domains_page(request, ctx, slug, checked_domain=sso_routes.domain_out(row))


@router.post("/t/{slug}/admin/sso/domains/{domain_id}/delete")
async def remove_sso_domain(
    slug: Slug, domain_id: uuid.UUID, ctx: Admin, request: Request
) -> Response:
    await page_tenant(ctx, slug)
    try:
        await attempt(ctx, domains.remove(ctx, domain_id))
    except ProblemError as exc:
        return await _domains_page(request, ctx, slug, problem=problem_of(exc))
    return redirect(slug, "/admin/sso/domains", "sso-domain-removed")
