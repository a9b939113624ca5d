"""The compliance API: a person's export and erasure under ``/api/v1/users/{userId}``, and
``/api/v1/compliance/...`` (requests, registers, legal holds, reports, retention policies).

Reading needs ``compliance:read``, changing ``compliance:manage``; the export is one's own
or, with ``user:manage``, anyone's of the tenant (the rule of the session endpoints); erasure
needs both ``user:manage`` and ``compliance:manage``.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from kanvaro.audit import sequencer
from kanvaro.audit.hashing import timestamp
from kanvaro.audit.service import chain_for
from kanvaro.compliance import erasure, export, policies, requests
from kanvaro.compliance.models import (
    ComplianceReport,
    DataBreach,
    DataSubjectRequest,
    LegalHold,
    RetentionPolicy,
)
from kanvaro.compliance.reports import render
from kanvaro.compliance.reports import service as reports
from kanvaro.compliance.schemas import (
    ActivityCreate,
    ActivityUpdate,
    BreachCreate,
    EraseBody,
    HoldCreate,
    ReportCreate,
    RequestCreate,
    RequestStatus,
    RequestUpdate,
    RetentionCreate,
    RetentionUpdate,
)
from kanvaro.deps import Ctx, own_or, require
from kanvaro.errors import Conflict
from kanvaro.http_helpers import IfMatch, set_etag
from kanvaro.identity.sessions import service as sessions
from kanvaro.schemas import page_of, paginate
from kanvaro.security.permissions import Permission as P

people = APIRouter(prefix="/api/v1/users", tags=["compliance"])
router = APIRouter(prefix="/api/v1/compliance", tags=["compliance"])
Reader = Annotated[Ctx, require(P.COMPLIANCE_READ)]
Manager = Annotated[Ctx, require(P.COMPLIANCE_MANAGE)]
Limit = Annotated[int, Query(ge=1, le=200)]


async def _page(ctx: Ctx, stmt: Any, model: Any, cursor: str | None, limit: int, out: Any) -> Any:
    rows = (await ctx.db.execute(paginate(stmt, model, cursor, limit))).scalars().all()
    return page_of(list(rows), limit, out)


# --- a person's data -------------------------------------------------------------------------


@people.get(
    "/{user_id}/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/json": {}, "application/zip": {}}}},
)
async def export_person(
    user_id: uuid.UUID,
    ctx: Annotated[Ctx, own_or(P.USER_MANAGE)],
    format: Annotated[Literal["json", "zip"], Query()] = "json",
) -> StreamingResponse:
    """Everything about the person, streamed (GDPR arts. 15, 20); audited before it is sent."""
    who = await sessions.subject(ctx, user_id, change=False)
    # The export lists the person's audit entries: those committed before this request get
    # their place in the chain first (the stream reads in a session of its own, later).
    await sequencer.settle(ctx.db, chain_for(who.tenant_id))
    await ctx.record(
        "api:user:export",
        category="user_activity",
        resource_type="user",
        resource_id=who.user_id,
        changes={"format": format, "own": who.own},
    )
    services, tenant = ctx.services, who.tenant_id
    stamp = timestamp(services.clock.now())
    if format == "zip":
        body = export.zip_chunks(services.db, tenant, who.user_id, stamp)
        media = "application/zip"
    else:
        body = export.json_chunks(services.db, tenant, who.user_id, stamp)
        media = "application/json"
    name = f"personal-data-{who.user_id}.{format}"
    return StreamingResponse(
        body,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@people.post("/{user_id}/erase")
async def erase_person(
    user_id: uuid.UUID,
    body: EraseBody,
    ctx: Annotated[Ctx, require(P.USER_MANAGE, P.COMPLIANCE_MANAGE)],
) -> dict[str, Any]:
    """Anonymise the person with a tombstone; the organisation's records stay (GDPR art. 17)."""
    who = await sessions.subject(ctx, user_id, change=True)
    return await erasure.erase_user(
        ctx, who.user_id, confirm_email=body.confirm_email, request_id=body.request_id
    )


# --- data subject requests -------------------------------------------------------------------


@router.get("/requests")
async def list_requests(
    ctx: Reader,
    cursor: str | None = None,
    limit: Limit = 50,
    status: RequestStatus | None = None,
) -> Any:
    stmt = select(DataSubjectRequest)
    if status is not None:
        stmt = stmt.where(DataSubjectRequest.status == status)
    now = ctx.services.clock.now()
    return await _page(
        ctx, stmt, DataSubjectRequest, cursor, limit, lambda r: requests.request_out(r, now)
    )


@router.post("/requests", status_code=201)
async def post_request(body: RequestCreate, response: Response, ctx: Manager) -> dict[str, Any]:
    row = await requests.create_request(ctx, body)
    set_etag(response, row.version)
    return requests.request_out(row, ctx.services.clock.now())


@router.get("/requests/{request_id}")
async def get_request(request_id: uuid.UUID, response: Response, ctx: Reader) -> dict[str, Any]:
    row = await requests.get_request(ctx, request_id)
    set_etag(response, row.version)
    return requests.request_out(row, ctx.services.clock.now())


@router.patch("/requests/{request_id}")
async def patch_request(
    request_id: uuid.UUID,
    body: RequestUpdate,
    response: Response,
    ctx: Manager,
    if_match: IfMatch = None,
) -> dict[str, Any]:
    row = await requests.update_request(ctx, request_id, body, if_match)
    set_etag(response, row.version)
    return requests.request_out(row, ctx.services.clock.now())


# --- the register of processing activities -------------------------------------------------


@router.get("/processing-activities")
async def list_activities(ctx: Reader) -> dict[str, Any]:
    """The whole register (it is short); the seed's defaults on first use."""
    return {"items": [requests.row_out(a) for a in await requests.activities(ctx)]}


@router.post("/processing-activities", status_code=201)
async def post_activity(body: ActivityCreate, response: Response, ctx: Manager) -> dict[str, Any]:
    row = await requests.create_activity(ctx, body)
    set_etag(response, row.version)
    return requests.row_out(row)


@router.patch("/processing-activities/{activity_id}")
async def patch_activity(
    activity_id: uuid.UUID,
    body: ActivityUpdate,
    response: Response,
    ctx: Manager,
    if_match: IfMatch = None,
) -> dict[str, Any]:
    row = await requests.update_activity(ctx, activity_id, body, if_match)
    set_etag(response, row.version)
    return requests.row_out(row)


@router.delete("/processing-activities/{activity_id}", status_code=204)
async def delete_activity(activity_id: uuid.UUID, ctx: Manager) -> Response:
    await requests.delete_activity(ctx, activity_id)
    return Response(status_code=204)


# --- legal holds and breaches ----------------------------------------------------------------


@router.get("/legal-holds")
async def list_holds(ctx: Reader, cursor: str | None = None, limit: Limit = 50) -> Any:
    return await _page(ctx, select(LegalHold), LegalHold, cursor, limit, requests.row_out)


@router.post("/legal-holds", status_code=201)
async def post_hold(body: HoldCreate, ctx: Manager) -> dict[str, Any]:
    return requests.row_out(await requests.place_hold(ctx, body))


@router.get("/legal-holds/{hold_id}")
async def get_hold(hold_id: uuid.UUID, ctx: Reader) -> dict[str, Any]:
    return requests.row_out(await requests.get_hold(ctx, hold_id))


@router.post("/legal-holds/{hold_id}/release")
async def release_hold(hold_id: uuid.UUID, ctx: Manager) -> dict[str, Any]:
    return requests.row_out(await requests.release_hold(ctx, hold_id))


@router.get("/breaches")
async def list_breaches(ctx: Reader, cursor: str | None = None, limit: Limit = 50) -> Any:
    return await _page(ctx, select(DataBreach), DataBreach, cursor, limit, requests.row_out)


@router.post("/breaches", status_code=201)
async def post_breach(body: BreachCreate, ctx: Manager) -> dict[str, Any]:
    return requests.row_out(await requests.record_breach(ctx, body))


@router.get("/breaches/{breach_id}")
async def get_breach(breach_id: uuid.UUID, ctx: Reader) -> dict[str, Any]:
    return requests.row_out(await requests.get_breach(ctx, breach_id))


# --- reports ---------------------------------------------------------------------------------


@router.post("/reports", status_code=202)
async def post_report(body: ReportCreate, ctx: Manager, response: Response) -> dict[str, Any]:
    """Ask for a report: stored ``pending`` and generated in the background from the live
    system, with the chain's verification and a signed checkpoint; ``GET`` the ``Location``
    to follow its ``progress`` until it is ``completed`` or ``failed``."""
    row = await reports.request_report(ctx, body.report_type, body.period_start, body.period_end)
    response.headers["Location"] = f"/api/v1/compliance/reports/{row.id}"
    return reports.report_out(row)


@router.get("/reports")
async def list_reports(ctx: Reader, cursor: str | None = None, limit: Limit = 50) -> Any:
    return await _page(
        ctx,
        select(ComplianceReport),
        ComplianceReport,
        cursor,
        limit,
        lambda r: reports.report_out(r, with_data=False),
    )


@router.get("/reports/{report_id}")
async def get_report(report_id: uuid.UUID, ctx: Reader) -> dict[str, Any]:
    return reports.report_out(await reports.get_report(ctx, report_id))


@router.get(
    "/reports/{report_id}/download",
    response_class=Response,
    responses={200: {"content": {"application/json": {}, "text/html": {}, "application/pdf": {}}}},
)
async def download_report(
    report_id: uuid.UUID,
    ctx: Reader,
    format: Annotated[Literal["json", "html", "pdf"], Query()] = "json",
) -> Response:
    row = await reports.get_report(ctx, report_id)
    if row.status != "completed" or not row.report_data:
        raise Conflict(f"This report is {row.status}: there is nothing to download.")
    name = f"{row.report_type}-report-{row.period_start}-{row.period_end}.{format}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if format == "pdf":
        body = await render.pdf(row.report_data)
        return Response(body, media_type="application/pdf", headers=headers)
    if format == "html":
        document = render.html(row.report_data)
        return Response(document, media_type="text/html; charset=utf-8", headers=headers)
    return Response(
        reports.canonical_bytes(row.report_data), media_type="application/json", headers=headers
    )


# --- retention policies ----------------------------------------------------------------------


@router.get("/retention-policies")
async def list_policies(ctx: Reader, cursor: str | None = None, limit: Limit = 50) -> Any:
    return await _page(
        ctx, select(RetentionPolicy), RetentionPolicy, cursor, limit, requests.row_out
    )


@router.post("/retention-policies", status_code=201)
async def post_policy(body: RetentionCreate, response: Response, ctx: Manager) -> dict[str, Any]:
    row = await policies.create_policy(ctx, body)
    set_etag(response, row.version)
    return requests.row_out(row)


@router.get("/retention-policies/{policy_id}")
async def get_policy(policy_id: uuid.UUID, response: Response, ctx: Reader) -> dict[str, Any]:
    row = await policies.get_policy(ctx, policy_id)
    set_etag(response, row.version)
    return requests.row_out(row)


@router.patch("/retention-policies/{policy_id}")
async def patch_policy(
    policy_id: uuid.UUID,
    body: RetentionUpdate,
    response: Response,
    ctx: Manager,
    if_match: IfMatch = None,
) -> dict[str, Any]:
    row = await policies.update_policy(ctx, policy_id, body, if_match)
    set_etag(response, row.version)
    return requests.row_out(row)


@router.delete("/retention-policies/{policy_id}", status_code=204)
async def delete_policy(policy_id: uuid.UUID, ctx: Manager) -> Response:
    await policies.delete_policy(ctx, policy_id)
    return Response(status_code=204)
