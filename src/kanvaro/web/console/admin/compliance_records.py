"""``/t/{slug}/admin/compliance/...``: the register of processing activities (GDPR art. 30),
legal holds, and the breach register (GDPR art. 33(5)).

Reading needs ``compliance:read`` and changing ``compliance:manage``, as on
``/api/v1/compliance``; the forms run the API routes' actions (``requests.create_activity``,
``update_activity``, ``delete_activity``, ``place_hold``, ``release_hold``,
``record_breach``), so a change is refused, stored and audited exactly as through the API.
Times on the forms are UTC: ``<input type="datetime-local">`` sends no offset of its own.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any, get_args

from fastapi import Request
from fastapi.responses import Response

from kanvaro.compliance import requests as records
from kanvaro.compliance import routes as compliance_routes
from kanvaro.compliance.schemas import (
    ActivityCreate,
    ActivityUpdate,
    BreachCreate,
    HoldCreate,
    LegalBasis,
    ResourceType,
    Severity,
)
from kanvaro.deps import Ctx, require
from kanvaro.errors import ProblemError
from kanvaro.security.permissions import Permission as P
from kanvaro.web.console.admin.common import (
    Problem,
    Slug,
    attempt,
    integer,
    page,
    parse,
    problem_of,
    redirect,
)
from kanvaro.web.console.forms import fields
from kanvaro.web.console.people import chosen, emails_of, picker
from kanvaro.web.console.routing import console_router
from kanvaro.web.console.templating import NOTICES
from kanvaro.web.console.tenant import page_tenant

router = console_router()
Reader = Annotated[Ctx, require(P.COMPLIANCE_READ)]
Manager = Annotated[Ctx, require(P.COMPLIANCE_MANAGE)]
LIST_LIMIT = 50

ACTIVITIES = "/admin/compliance/processing-activities"
HOLDS = "/admin/compliance/legal-holds"
BREACHES = "/admin/compliance/breaches"
HOLD_SCOPES = (*get_args(ResourceType), "users")

NOTICES.update(
    {
        "activity-created": "Processing activity added to the register.",
        "activity-saved": "Processing activity saved.",
        "activity-deleted": "Processing activity removed from the register.",
        "hold-placed": "Legal hold placed: the data it covers is kept from erasure and retention.",
        "hold-released": "Legal hold released.",
        "breach-recorded": "Breach recorded in the register.",
    }
)

_LOCAL_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2})?")


def _instant(value: str) -> str | None:
    """A form's date and time as the API's instant: ``datetime-local`` text is UTC (the form
    says so); other text goes to the schema as it is, which names the field; empty is absent."""
    if not value:
        return None
    if _LOCAL_TIME.fullmatch(value):
        return f"{value}Z" if len(value) > 16 else f"{value}:00Z"
    return value


def _folded(problem: Problem) -> Problem:
    """A message about part of a field (``dataTypes.3``, one branch of a union) is shown at
    the field."""
    for name, message in list(problem.fields.items()):
        problem.fields.setdefault(name.split(".", 1)[0], message)
    return problem


# --- the register of processing activities -------------------------------------------------


def _activity_form(form: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The API body, and the text as typed (to show again after a refusal). Data types are
    one a line (or separated by commas)."""
    text = fields(form, "purpose", "legalBasis", "dataTypes", "retentionPeriod", "recipients")
    types = [t.strip() for t in re.split(r"[\n,]", text["dataTypes"]) if t.strip()]
    body = {
        "purpose": text["purpose"],
        "legalBasis": text["legalBasis"],
        "dataTypes": types,
        "retentionPeriod": text["retentionPeriod"],
        "recipients": text["recipients"],
    }
    return body, text


async def _activities_page(
    request: Request,
    ctx: Ctx,
    slug: str,
    *,
    problem: Problem | None = None,
    sent: dict[str, str] | None = None,
) -> Response:
    tenant = await page_tenant(ctx, slug)
    listed = await compliance_routes.list_activities(ctx)
    return page(
        request,
        "admin/compliance_activities.html",
        ctx,
        status=problem.status if problem else 200,
        tenant=tenant,
        activities=listed["items"],
        legal_bases=get_args(LegalBasis),
        problem=problem,
        sent=sent or {},
    )


async def _activity_page(
    request: Request,
    ctx: Ctx,
    slug: str,
    activity_id: uuid.UUID,
    *,
    problem: Problem | None = None,
    sent: dict[str, str] | None = None,
) -> Response:
    tenant = await page_tenant(ctx, slug)
    activity = records.row_out(await records._activity(ctx, activity_id))
    values = {
        "purpose": activity["purpose"],
        "legalBasis": activity["legalBasis"],
        "dataTypes": "\n".join(activity["dataTypes"]),
        "retentionPeriod": activity["retentionPeriod"],
        "recipients": activity["recipients"],
    }
    return page(
        request,
        "admin/compliance_activity.html",
        ctx,
        status=problem.status if problem else 200,
        tenant=tenant,
        activity=activity,
        values={**values, **(sent or {})},
        names=await emails_of(ctx, [activity["createdBy"], activity["updatedBy"]]),
        legal_bases=get_args(LegalBasis),
        problem=problem,
    )


@router.get("/t/{slug}/admin/compliance/processing-activities")
async def activities_page(slug: Slug, ctx: Reader, request: Request) -> Response:
    return await _activities_page(request, ctx, slug)


@router.post("/t/{slug}/admin/compliance/processing-activities")
async def create_activity(slug: Slug, ctx: Manager, request: Request) -> Response:
    await page_tenant(ctx, slug)
    body, text = _activity_form(await request.form())
    try:
        await attempt(ctx, records.create_activity(ctx, parse(ActivityCreate, body)))
    except ProblemError as exc:
        problem = _folded(problem_of(exc, "activity"))
        return await _activities_page(request, ctx, slug, problem=problem, sent=text)
    return redirect(slug, ACTIVITIES, "activity-created")


@router.get("/t/{slug}/admin/compliance/processing-activities/{activity_id}")
async def activity_page(
    slug: Slug, activity_id: uuid.UUID, ctx: Reader, request: Request
) -> Response:
    return await _activity_page(request, ctx, slug, activity_id)


@router.post("/t/{slug}/admin/compliance/processing-activities/{activity_id}")
async def update_activity(
    slug: Slug, activity_id: uuid.UUID, ctx: Manager, request: Request
) -> Response:
    await page_tenant(ctx, slug)
    form = await request.form()
    body, text = _activity_form(form)
    body["version"] = integer(str(form.get("version") or ""))
    try:
        data = parse(ActivityUpdate, body)
        await attempt(ctx, records.update_activity(ctx, activity_id, data, None))
    except ProblemError as exc:
        problem = _folded(problem_of(exc))
        return await _activity_page(request, ctx, slug, activity_id, problem=problem, sent=text)
    return redirect(slug, f"{ACTIVITIES}/{activity_id}", "activity-saved")


@router.post("/t/{slug}/admin/compliance/processing-activities/{activity_id}/delete")
async def delete_activity(
    slug: Slug, activity_id: uuid.UUID, ctx: Manager, request: Request
) -> Response:
    await page_tenant(ctx, slug)
    try:
        await attempt(ctx, records.delete_activity(ctx, activity_id))
    except ProblemError as exc:
        return await _activity_page(request, ctx, slug, activity_id, problem=problem_of(exc))
    return redirect(slug, ACTIVITIES, "activity-deleted")


# --- legal holds -----------------------------------------------------------------------------


async def _holds_page(
    request: Request,
    ctx: Ctx,
    slug: str,
    *,
    cursor: str | None = None,
    problem: Problem | None = None,
    sent: dict[str, str] | None = None,
) -> Response:
    tenant = await page_tenant(ctx, slug)
    listed = await compliance_routes.list_holds(ctx, cursor=cursor, limit=LIST_LIMIT)
    holds = listed["items"]
    people = await picker(ctx)
    names = await emails_of(ctx, [h["userId"] for h in holds])
    return page(
        request,
        "admin/compliance_holds.html",
        ctx,
        status=problem.status if problem else 200,
        tenant=tenant,
        active=[h for h in holds if h["releasedAt"] is None],
        released=[h for h in holds if h["releasedAt"] is not None],
        next_cursor=listed["nextCursor"],
        people=people,
        names=names,
        scopes=HOLD_SCOPES,
        problem=problem,
        sent=sent or {},
    )


async def _hold_page(
    request: Request,
    ctx: Ctx,
    slug: str,
    hold_id: uuid.UUID,
    *,
    problem: Problem | None = None,
) -> Response:
    tenant = await page_tenant(ctx, slug)
    hold = records.row_out(await records.get_hold(ctx, hold_id))
    return page(
        request,
        "admin/compliance_hold.html",
        ctx,
        status=problem.status if problem else 200,
        tenant=tenant,
        hold=hold,
        names=await emails_of(ctx, [hold["userId"], hold["createdBy"], hold["releasedBy"]]),
        problem=problem,
    )


@router.get("/t/{slug}/admin/compliance/legal-holds")
async def holds_page(
    slug: Slug, ctx: Reader, request: Request, cursor: str | None = None
) -> Response:
    return await _holds_page(request, ctx, slug, cursor=cursor)


@router.post("/t/{slug}/admin/compliance/legal-holds")
async def place_hold(slug: Slug, ctx: Manager, request: Request) -> Response:
    await page_tenant(ctx, slug)
    text = fields(await request.form(), "userId", "userEmail", "resourceType", "reason")
    try:
        # A hold may cover a former member: any person, active or not.
        body = {
            "userId": await chosen(ctx, text, "userId", active_only=False) or None,
            "resourceType": text["resourceType"] or None,
            "reason": text["reason"],
        }
        row = await attempt(ctx, records.place_hold(ctx, parse(HoldCreate, body)))
    except ProblemError as exc:
        problem = _folded(problem_of(exc, "hold"))
        return await _holds_page(request, ctx, slug, problem=problem, sent=text)
    return redirect(slug, f"{HOLDS}/{row.id}", "hold-placed")


@router.get("/t/{slug}/admin/compliance/legal-holds/{hold_id}")
async def hold_page(slug: Slug, hold_id: uuid.UUID, ctx: Reader, request: Request) -> Response:
    return await _hold_page(request, ctx, slug, hold_id)


@router.post("/t/{slug}/admin/compliance/legal-holds/{hold_id}/release")
async def release_hold(slug: Slug, hold_id: uuid.UUID, ctx: Manager, request: Request) -> Response:
    await page_tenant(ctx, slug)
    try:
        await attempt(ctx, records.release_hold(ctx, hold_id))
    except ProblemError as exc:
        return await _hold_page(request, ctx, slug, hold_id, problem=problem_of(exc))
    return redirect(slug, f"{HOLDS}/{hold_id}", "hold-released")


# --- the breach register ---------------------------------------------------------------------


async def _breaches_page(
    request: Request,
    ctx: Ctx,
    slug: str,
    *,
    cursor: str | None = None,
    problem: Problem | None = None,
    sent: dict[str, str] | None = None,
) -> Response:
    tenant = await page_tenant(ctx, slug)
    listed = await compliance_routes.list_breaches(ctx, cursor=cursor, limit=LIST_LIMIT)
    return page(
        request,
        "admin/compliance_breaches.html",
        ctx,
        status=problem.status if problem else 200,
        tenant=tenant,
        breaches=listed["items"],
        next_cursor=listed["nextCursor"],
        severities=get_args(Severity),
        problem=problem,
        sent=sent or {},
    )


@router.get("/t/{slug}/admin/compliance/breaches")
async def breaches_page(
    slug: Slug, ctx: Reader, request: Request, cursor: str | None = None
) -> Response:
    return await _breaches_page(request, ctx, slug, cursor=cursor)


@router.post("/t/{slug}/admin/compliance/breaches")
async def record_breach(slug: Slug, ctx: Manager, request: Request) -> Response:
    await page_tenant(ctx, slug)
    text = fields(
        await request.form(),
        "detectedAt",
        "description",
        "severity",
        "affectedSubjects",
        "reportedToAuthorityAt",
        "subjectsNotifiedAt",
    )
    values = {
        "detectedAt": _instant(text["detectedAt"]),
        "description": text["description"],
        "severity": text["severity"] or None,
        "affectedSubjects": integer(text["affectedSubjects"]),
        "reportedToAuthorityAt": _instant(text["reportedToAuthorityAt"]),
        "subjectsNotifiedAt": _instant(text["subjectsNotifiedAt"]),
    }
    # A field left empty is left out: required ones say so, the others take the API's
    # defaults (severity medium, none affected, not notified).
    body = {k: v for k, v in values.items() if v is not None}
    try:
        row = await attempt(ctx, records.record_breach(ctx, parse(BreachCreate, body)))
    except ProblemError as exc:
        problem = _folded(problem_of(exc, "breach"))
        return await _breaches_page(request, ctx, slug, problem=problem, sent=text)
    return redirect(slug, f"{BREACHES}/{row.id}", "breach-recorded")


@router.get("/t/{slug}/admin/compliance/breaches/{breach_id}")
async def breach_page(slug: Slug, breach_id: uuid.UUID, ctx: Reader, request: Request) -> Response:
    tenant = await page_tenant(ctx, slug)
    breach = records.row_out(await records.get_breach(ctx, breach_id))
    return page(
        request,
        "admin/compliance_breach.html",
        ctx,
        tenant=tenant,
        breach=breach,
        names=await emails_of(ctx, [breach["createdBy"]]),
    )
