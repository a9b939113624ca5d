"""``/t/{slug}/admin/audit``: the organization's audit log, an entry, the chain's verification
and its latest signed checkpoint (``audit:read``, as ``/api/v1/audit/...``).

The list takes the API's filters (actor, action, category, resource, time range) through the
API's own filter (``log_routes._filtered``) after the same settling of pending entries, shown
newest first a page at a time. The badge runs what ``GET /api/v1/audit/verify`` runs, and says
which range of entries it covered; the checkpoint is the one ``/checkpoints/latest`` returns.
Signing a checkpoint now is ``POST /api/v1/audit/checkpoints`` (``settings:update``).
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select

from kanvaro.audit import checkpoints, log_routes, sequencer
from kanvaro.audit import routes as audit_routes
from kanvaro.audit import service as audit
from kanvaro.audit.models import CATEGORIES, AuditLog
from kanvaro.deps import Ctx, require
from kanvaro.errors import NotFound, ProblemError
from kanvaro.identity.models import User
from kanvaro.schemas import UtcDatetime
from kanvaro.security.permissions import Permission as P
from kanvaro.web.console.admin.common import Problem, Slug, attempt, page, problem_of, redirect
from kanvaro.web.console.people import by_email, picker
from kanvaro.web.console.routing import console_router
from kanvaro.web.console.templating import NOTICES
from kanvaro.web.console.tenant import page_tenant

router = console_router()
Reader = Annotated[Ctx, require(P.AUDIT_READ)]
Signer = Annotated[Ctx, require(P.SETTINGS_UPDATE)]
PAGE = 50
_WHEN = TypeAdapter(UtcDatetime)

NOTICES.update({"checkpoint-signed": "A checkpoint of the chain's head was signed."})


def _filters(query: Any) -> tuple[dict[str, Any], dict[str, str], Problem | None]:
    """The query's filters for the API's filter, the values to show again, and what was
    refused (named like the API's query parameters)."""
    shown = {
        k: (query.get(k) or "").strip()[:100]
        for k in ("actorId", "action", "category", "resourceType", "resourceId", "from", "to")
    }
    errors: list[dict[str, str]] = []
    filters: dict[str, Any] = {
        "action": shown["action"] or None,
        "resource_type": shown["resourceType"][:50] or None,
        "resource_id": shown["resourceId"][:64] or None,
        "category": None,
        "actor_id": None,
        "start": None,
        "end": None,
    }
    if shown["category"]:
        if shown["category"] in CATEGORIES:
            filters["category"] = shown["category"]
        else:
            errors.append({"field": "category", "message": "not a category"})
    if shown["actorId"]:
        try:
            filters["actor_id"] = uuid.UUID(shown["actorId"])
        except ValueError:
            errors.append({"field": "actorId", "message": "not a person's id"})
    for name, key in (("from", "start"), ("to", "end")):
        value = shown[name]
        if not value:
            continue
        # <input type="datetime-local"> sends no offset: the form says the times are UTC.
        text = value if value.endswith("Z") or "+" in value[10:] else f"{value}Z"
        if len(text) == 17:  # YYYY-MM-DDTHH:MMZ
            text = text[:-1] + ":00Z"
        try:
            filters[key] = _WHEN.validate_python(text)
        except ValidationError:
            errors.append({"field": name, "message": "not a date and time (YYYY-MM-DDTHH:MM)"})
    problem = None
    if errors:
        problem = Problem(
            422,
            "Some filters are invalid: " + ", ".join(e["field"] for e in errors) + ".",
            {e["field"]: e["message"] for e in errors},
        )
    return filters, shown, problem


async def _people(ctx: Ctx, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    rows = await ctx.db.execute(select(User.id, User.email).where(User.id.in_(ids)))
    return dict(rows.all())


async def verification(ctx: Ctx) -> dict[str, Any]:
    """What ``GET /api/v1/audit/verify`` answers for the caller's own chain."""
    return await audit_routes.verify(ctx, tenant=None)


async def latest_checkpoint(ctx: Ctx) -> dict[str, Any] | None:
    row = await checkpoints.latest(ctx.db, audit.chain_for(ctx.tenant_id))
    return checkpoints.checkpoint_out(row) if row is not None else None


@router.get("/t/{slug}/admin/audit")
async def audit_page(slug: Slug, ctx: Reader, request: Request) -> Response:
    tenant = await page_tenant(ctx, slug)
    filters, shown, problem = _filters(request.query_params)
    # Anyone past the actor list is named by address (a deactivated person's entries too).
    shown["actorEmail"] = (request.query_params.get("actorEmail") or "").strip()[:254]
    if shown["actorEmail"] and problem is None:
        try:
            filters["actor_id"] = await by_email(
                ctx, shown["actorEmail"], field="actorEmail", active_only=False
            )
        except ProblemError as exc:
            problem = problem_of(exc)
    before = request.query_params.get("before") or ""
    before_seq = int(before) if before.isdigit() and len(before) <= 18 else None
    chain_id = audit.chain_for(ctx.tenant_id)
    await sequencer.settle(ctx.db, chain_id)
    rows: list[AuditLog] = []
    if problem is None:
        stmt = log_routes._filtered(ctx, filters)
        if before_seq is not None:
            stmt = stmt.where(AuditLog.sequence_number < before_seq)
        stmt = stmt.order_by(AuditLog.sequence_number.desc()).limit(PAGE + 1)
        rows = list((await ctx.db.execute(stmt)).scalars().all())
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    people = await _people(ctx, {r.actor_id for r in rows if r.actor_id})
    report = await verification(ctx)
    checkpoint = await latest_checkpoint(ctx)
    actors = await picker(ctx)
    next_query = None
    if more and rows:
        kept = {k: v for k, v in shown.items() if v}
        next_query = {**kept, "before": str(rows[-1].sequence_number)}
    return page(
        request,
        "admin/audit.html",
        ctx,
        status=problem.status if problem else 200,
        tenant=tenant,
        entries=[log_routes.entry_out(r) for r in rows],
        people={str(k): v for k, v in people.items()},
        actors=actors,
        categories=CATEGORIES,
        filters=shown,
        problem=problem,
        report=report,
        checkpoint=checkpoint,
        next_query=next_query,
    )


@router.get("/t/{slug}/admin/audit/entries/{entry_id}")
async def audit_entry(slug: Slug, entry_id: uuid.UUID, ctx: Reader, request: Request) -> Response:
    tenant = await page_tenant(ctx, slug)
    row = (
        await ctx.db.execute(
            select(AuditLog).where(
                AuditLog.id == entry_id, AuditLog.chain_id == audit.chain_for(ctx.tenant_id)
            )
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFound("No such audit entry.")
    entry = log_routes.entry_out(row)
    people = await _people(ctx, {row.actor_id} if row.actor_id else set())
    return page(
        request,
        "admin/audit_entry.html",
        ctx,
        tenant=tenant,
        entry=entry,
        actor=people.get(row.actor_id) if row.actor_id else None,
        changes=json.dumps(entry["changes"], indent=2, sort_keys=True, ensure_ascii=False),
    )


@router.post("/t/{slug}/admin/audit/checkpoint")
async def sign_checkpoint(slug: Slug, ctx: Signer, request: Request) -> Response:
    await page_tenant(ctx, slug)
    try:
        await attempt(ctx, audit_routes.issue_checkpoint(ctx, tenant=None))
    except ProblemError as exc:
        problem = problem_of(exc)
        return page(
            request,
            "error.html",
            ctx,
            status=problem.status,
            title="No checkpoint was signed",
            detail=problem.detail,
            errors=[],
        )
    return redirect(slug, "/admin/audit", "checkpoint-signed")
