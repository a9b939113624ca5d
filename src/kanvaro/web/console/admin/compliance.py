"""``/t/{slug}/admin/compliance``: reports, retention policies and data subject requests.

Reading needs ``compliance:read`` and changing ``compliance:manage``, as on
``/api/v1/compliance``; the forms run the API routes' actions (``reports.request_report``,
``policies.create_policy`` / ``update_policy``, ``requests.create_request`` /
``update_request``). A report is generated in the background once it is asked for: the list
shows its progress (``admin-reports.js`` follows it through the API and reloads the page when it
is done; without JavaScript a refresh does) and, once completed, its downloads, which are the
API's (JSON, HTML, PDF).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, get_args

from fastapi import Request
from fastapi.responses import Response

from kanvaro.compliance import policies as retention
from kanvaro.compliance import requests as dsr
from kanvaro.compliance import routes as compliance_routes
from kanvaro.compliance.reports import service as reports
from kanvaro.compliance.schemas import (
    Regulation,
    ReportCreate,
    ReportType,
    RequestCreate,
    RequestStatus,
    RequestType,
    RequestUpdate,
    ResourceType,
    RetentionCreate,
    RetentionUpdate,
)
from kanvaro.deps import Ctx, require
from kanvaro.errors import ProblemError
from kanvaro.security.permissions import Permission as P
from kanvaro.web.console import register_asset
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
from kanvaro.web.console.people import chosen, emails_of, picker
from kanvaro.web.console.routing import console_router
from kanvaro.web.console.templating import NOTICES
from kanvaro.web.console.tenant import page_tenant

router = console_router()
register_asset("admin-reports.js")
Reader = Annotated[Ctx, require(P.COMPLIANCE_READ)]
Manager = Annotated[Ctx, require(P.COMPLIANCE_MANAGE)]

NOTICES.update(
    {
        "report-requested": "Report asked for: it is being generated; its progress is below.",
        "retention-created": "Retention policy created.",
        "retention-saved": "Retention policy saved.",
        "request-created": "Data subject request recorded.",
        "request-saved": "Request updated.",
    }
)


async def _page(
    request: Request,
    ctx: Ctx,
    slug: str,
    *,
    problem: Problem | None = None,
    sent: dict[str, Any] | None = None,
) -> Response:
    tenant = await page_tenant(ctx, slug)
    report_list = await compliance_routes.list_reports(ctx, cursor=None, limit=50)
    policy_list = await compliance_routes.list_policies(ctx, cursor=None, limit=50)
    request_list = await compliance_routes.list_requests(ctx, cursor=None, limit=50, status=None)
    people = await picker(ctx)
    names = await emails_of(ctx, [q["subjectUserId"] for q in request_list["items"]])
    return page(
        request,
        "admin/compliance.html",
        ctx,
        status=problem.status if problem else 200,
        tenant=tenant,
        reports=sorted(report_list["items"], key=lambda r: r["createdAt"], reverse=True),
        policies=policy_list["items"],
        requests=request_list["items"],
        people=people,
        names=names,
        report_types=get_args(ReportType),
        resource_types=get_args(ResourceType),
        regulations=get_args(Regulation),
        request_types=get_args(RequestType),
        request_statuses=get_args(RequestStatus),
        problem=problem,
        sent=sent or {},
    )


@router.get("/t/{slug}/admin/compliance")
async def compliance_page(slug: Slug, ctx: Reader, request: Request) -> Response:
    return await _page(request, ctx, slug)


@router.post("/t/{slug}/admin/compliance/reports")
async def generate_report(slug: Slug, ctx: Manager, request: Request) -> Response:
    await page_tenant(ctx, slug)
    form = fields(await request.form(), "reportType", "periodStart", "periodEnd")
    try:
        body = parse(ReportCreate, form)
        await attempt(
            ctx,
            reports.request_report(ctx, body.report_type, body.period_start, body.period_end),
        )
    except ProblemError as exc:
        return await _page(request, ctx, slug, problem=problem_of(exc, "report"), sent=form)
    return redirect(slug, "/admin/compliance", "report-requested")


def _retention_body(form: Any) -> dict[str, Any]:
    text = fields(form, "retentionDays", "archiveAfterDays", "regulation")
    return {
        "retentionDays": integer(text["retentionDays"]),
        "archiveAfterDays": integer(text["archiveAfterDays"]),
        "autoDelete": checked(form, "autoDelete"),
        "regulation": text["regulation"] or None,
    }


@router.post("/t/{slug}/admin/compliance/retention")
async def create_retention(slug: Slug, ctx: Manager, request: Request) -> Response:
    await page_tenant(ctx, slug)
    form = await request.form()
    body = {**_retention_body(form), "resourceType": str(form.get("resourceType") or "")}
    try:
        await attempt(ctx, retention.create_policy(ctx, parse(RetentionCreate, body)))
    except ProblemError as exc:
        return await _page(request, ctx, slug, problem=problem_of(exc, "retention"), sent=body)
    return redirect(slug, "/admin/compliance", "retention-created")


@router.post("/t/{slug}/admin/compliance/retention/{policy_id}")
async def update_retention(
    slug: Slug, policy_id: uuid.UUID, ctx: Manager, request: Request
) -> Response:
    await page_tenant(ctx, slug)
    form = await request.form()
    body = {**_retention_body(form), "version": integer(str(form.get("version") or ""))}
    try:
        data = parse(RetentionUpdate, body)
        await attempt(ctx, retention.update_policy(ctx, policy_id, data, None))
    except ProblemError as exc:
        return await _page(request, ctx, slug, problem=problem_of(exc, str(policy_id)))
    return redirect(slug, "/admin/compliance", "retention-saved")


@router.post("/t/{slug}/admin/compliance/requests")
async def create_request(slug: Slug, ctx: Manager, request: Request) -> Response:
    await page_tenant(ctx, slug)
    form = fields(await request.form(), "requestType", "subjectUserId", "subjectUserEmail", "notes")
    try:
        # A former member's erasure is asked for too: any person, active or not.
        subject = await chosen(ctx, form, "subjectUserId", active_only=False)
        body = {
            "requestType": form["requestType"],
            "subjectUserId": subject,
            "notes": form["notes"],
        }
        await attempt(ctx, dsr.create_request(ctx, parse(RequestCreate, body)))
    except ProblemError as exc:
        return await _page(request, ctx, slug, problem=problem_of(exc, "request"), sent=form)
    return redirect(slug, "/admin/compliance", "request-created")


@router.post("/t/{slug}/admin/compliance/requests/{request_id}")
async def update_request(
    slug: Slug, request_id: uuid.UUID, ctx: Manager, request: Request
) -> Response:
    await page_tenant(ctx, slug)
    form = fields(await request.form(), "status", "notes", "version")
    body = {"status": form["status"], "notes": form["notes"], "version": integer(form["version"])}
    try:
        data = parse(RequestUpdate, body)
        await attempt(ctx, dsr.update_request(ctx, request_id, data, None))
    except ProblemError as exc:
        return await _page(request, ctx, slug, problem=problem_of(exc, str(request_id)))
    return redirect(slug, "/admin/compliance", "request-saved")
